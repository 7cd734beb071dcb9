// Package examples embeds the example policy files, so that the netd
// binary can build a lab from the ducksnest example without the source tree.
package examples

import _ "embed"

// Ducksnest is examples/ducksnest/policy.yaml.
//
//go:embed ducksnest/policy.yaml
var Ducksnest []byte
