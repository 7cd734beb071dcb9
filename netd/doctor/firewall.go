package doctor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// Ruleset is the live firewall, from every source that answered.
type Ruleset struct {
	Rules []FWRule
	// Sources says what was read ("iptables-nft-save: 12 rules"), Errors
	// what could not be.
	Sources []string
	Errors  []string
}

// FWRule is one iptables or nftables rule, reduced to what the checks
// look at.
type FWRule struct {
	Source string // "iptables-nft", "iptables-legacy" or "nft"
	Table  string // "filter", "nat", ...; for nft "ip filter"
	Chain  string
	Text   string // the rule as its tool prints it
	// InIface is the -i / iifname match, negated with InNeg.
	InIface string
	InNeg   bool
	// OutIface is the -o / oifname match, negated with OutNeg.
	OutIface string
	OutNeg   bool
	// Src is the -s / ip saddr match (invalid if none).
	Src     netip.Prefix
	Verdict string // "DROP", "ACCEPT", "RETURN", "MARK", "JUMP chain", ...
	// MarkWrite are the packet-mark bits the rule changes, MarkRead the
	// bits it matches on.
	MarkWrite, MarkRead uint32
}

// Owner says whose rule it is, by its chain or table name: "tailscale"
// (ts-*), "calico" (cali-*, table calico), "kube-proxy" (KUBE-*, table
// kube-proxy) or "other".
func (r FWRule) Owner() string {
	t := r.Table
	if i := strings.LastIndexByte(t, ' '); i >= 0 {
		t = t[i+1:]
	}
	switch {
	case strings.HasPrefix(r.Chain, "ts-"):
		return "tailscale"
	case strings.HasPrefix(r.Chain, "cali-") || t == "calico":
		return "calico"
	case strings.HasPrefix(r.Chain, "KUBE-") || t == "kube-proxy":
		return "kube-proxy"
	}
	return "other"
}

// Runner runs a command and returns its standard output.
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)

// ExecRunner runs commands with os/exec.
func ExecRunner(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// CommandFirewall reads the firewall with iptables-nft-save,
// iptables-legacy-save (or iptables-save where neither exists) and `nft -j
// list ruleset`; a tool that is missing or fails is noted in Errors.
type CommandFirewall struct {
	Run Runner
	// LookPath finds a command (exec.LookPath if nil).
	LookPath func(string) (string, error)
}

// Rules implements Firewall.
func (c CommandFirewall) Rules(ctx context.Context) (*Ruleset, error) {
	run, look := c.Run, c.LookPath
	if run == nil {
		run = ExecRunner
	}
	if look == nil {
		look = exec.LookPath
	}
	rs := &Ruleset{}
	saves := []struct{ cmd, source string }{{"iptables-nft-save", "iptables-nft"}, {"iptables-legacy-save", "iptables-legacy"}}
	if _, err := look("iptables-nft-save"); err != nil {
		if _, err := look("iptables-legacy-save"); err != nil {
			saves = []struct{ cmd, source string }{{"iptables-save", "iptables"}}
		}
	}
	found := 0
	for _, s := range saves {
		if _, err := look(s.cmd); err != nil {
			continue
		}
		found++
		out, err := run(ctx, s.cmd)
		if err != nil {
			rs.Errors = append(rs.Errors, err.Error())
			continue
		}
		rules := ParseIptablesSave(s.source, out)
		rs.Rules = append(rs.Rules, rules...)
		rs.Sources = append(rs.Sources, fmt.Sprintf("%s: %d rules", s.cmd, len(rules)))
	}
	if found == 0 {
		rs.Errors = append(rs.Errors, "no iptables-save on PATH (Debian: apt install iptables)")
	}
	if _, err := look("nft"); err != nil {
		rs.Errors = append(rs.Errors, "no nft on PATH (Debian: apt install nftables)")
	} else if out, err := run(ctx, "nft", "-j", "list", "ruleset"); err != nil {
		rs.Errors = append(rs.Errors, err.Error())
	} else if rules, err := ParseNftJSON(out); err != nil {
		rs.Errors = append(rs.Errors, err.Error())
	} else {
		rs.Rules = append(rs.Rules, rules...)
		rs.Sources = append(rs.Sources, fmt.Sprintf("nft -j list ruleset: %d rules", len(rules)))
	}
	if len(rs.Sources) == 0 {
		return rs, errors.New("no firewall dump could be read: " + strings.Join(rs.Errors, "; "))
	}
	return rs, nil
}

// ParseIptablesSave parses iptables-save output.
func ParseIptablesSave(source string, b []byte) []FWRule {
	var out []FWRule
	table := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			continue
		case !strings.HasPrefix(line, "-A "):
			continue
		}
		out = append(out, parseIptablesRule(source, table, line))
	}
	return out
}

func parseIptablesRule(source, table, line string) FWRule {
	r := FWRule{Source: source, Table: table, Text: line}
	f := splitArgs(line)
	neg := false
	target := ""
	for i := 0; i < len(f); i++ {
		arg := func() string {
			if i+1 < len(f) {
				i++
				return f[i]
			}
			return ""
		}
		switch f[i] {
		case "!":
			neg = true
			continue
		case "-A":
			r.Chain = arg()
		case "-i", "--in-interface":
			r.InIface, r.InNeg = arg(), neg
		case "-o", "--out-interface":
			r.OutIface, r.OutNeg = arg(), neg
		case "-s", "--source":
			s := arg()
			if !strings.Contains(s, "/") {
				s += "/32"
			}
			r.Src, _ = netip.ParsePrefix(s)
		case "-j", "-g":
			target = arg()
			r.Verdict = target
			if f[i-1] == "-g" || !isBuiltinTarget(target) {
				r.Verdict = "JUMP " + target
			}
		case "--mark": // negated or not, the match reads the bits
			_, m := valueMask(arg())
			r.MarkRead |= m
		case "--set-xmark", "--set-mark":
			v, m := valueMask(arg())
			if target == "MARK" {
				r.MarkWrite |= m | v
			}
		case "--or-mark", "--xor-mark":
			v, _ := valueMask(arg())
			if target == "MARK" {
				r.MarkWrite |= v
			}
		case "--and-mark":
			v, _ := valueMask(arg())
			if target == "MARK" {
				r.MarkWrite |= ^v
			}
		case "--restore-mark":
			if target == "CONNMARK" {
				r.MarkWrite |= 0xffffffff
			}
		case "--nfmask", "--mask":
			if target == "CONNMARK" {
				_, m := valueMask(arg())
				r.MarkWrite &= m
			}
		}
		neg = false
	}
	return r
}

func isBuiltinTarget(t string) bool {
	switch t {
	case "ACCEPT", "DROP", "RETURN", "REJECT", "MARK", "CONNMARK", "MASQUERADE", "SNAT", "DNAT", "LOG", "NOTRACK", "CT", "TCPMSS", "REDIRECT", "QUEUE", "NFQUEUE":
		return true
	}
	return false
}

// splitArgs splits an iptables-save line, keeping "double quoted" words
// (comments) whole.
func splitArgs(s string) []string {
	var out []string
	var b strings.Builder
	quoted, in := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && quoted && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == '"':
			quoted, in = !quoted, true
		case c == ' ' && !quoted:
			if in {
				out = append(out, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, b.String())
	}
	return out
}

// valueMask parses "0x4000/0x4000" or "0x4000" (mask all ones).
func valueMask(s string) (v, m uint32) {
	vs, ms, ok := strings.Cut(s, "/")
	v = parseU32(vs)
	if !ok {
		return v, 0xffffffff
	}
	return v, parseU32(ms)
}

func parseU32(s string) uint32 {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}
