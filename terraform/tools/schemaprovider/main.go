// Command schemaprovider is a Terraform provider that serves only a schema.
//
// The project machines cannot download Terraform providers, and
// `terraform validate` and `terraform test` with mock_provider need nothing
// of a provider but its schema (and its config validation). This binary,
// installed as terraform-provider-aws or terraform-provider-tailscale and
// wired in with a dev_overrides CLI configuration, serves the embedded schema
// named by its file name and refuses every call that would need the real
// provider (plan, apply, read, import), so a check that reaches the cloud by
// mistake fails loudly instead of passing.
//
//	terraform-provider-aws                 serve schemas/aws.json.gz
//	terraform-provider-tailscale           serve schemas/tailscale.json
//	schemaprovider extract -in F -out F DIR...
//	                                       write the part of a full
//	                                       `terraform providers schema -json`
//	                                       that the .tf files in DIRs use
//
// Every RPC is appended to $SCHEMAPROVIDER_CALL_LOG when that is set, so a
// check can prove which calls Terraform made.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6/tf6server"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "extract" {
		if err := runExtract(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "schemaprovider extract:", err)
			os.Exit(1)
		}
		return
	}
	name := strings.TrimPrefix(filepath.Base(os.Args[0]), "terraform-provider-")
	name, _, _ = strings.Cut(name, "_") // terraform-provider-aws_v6.0.0
	src, ok := providers[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "schemaprovider: no schema for %q: install this binary as terraform-provider-{aws,tailscale}\n", name)
		os.Exit(2)
	}
	p, err := newProvider(name, src.load, os.Getenv("SCHEMAPROVIDER_CALL_LOG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "schemaprovider:", err)
		os.Exit(1)
	}
	if err := tf6server.Serve(src.address, func() tfprotov6.ProviderServer { return p }); err != nil {
		fmt.Fprintln(os.Stderr, "schemaprovider:", err)
		os.Exit(1)
	}
}
