package doctor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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

// ParseNftJSON parses `nft -j list ruleset`. Expressions iptables-nft
// stores as xtables matches or targets ("xt") carry no values in the JSON;
// iptables-nft-save shows those rules.
func ParseNftJSON(b []byte) ([]FWRule, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("decoding nft -j output: %w", err)
	}
	var out []FWRule
	for _, obj := range doc.Nftables {
		raw, ok := obj["rule"]
		if !ok {
			continue
		}
		var rule struct {
			Family string            `json:"family"`
			Table  string            `json:"table"`
			Chain  string            `json:"chain"`
			Expr   []json.RawMessage `json:"expr"`
		}
		if err := json.Unmarshal(raw, &rule); err != nil {
			return nil, fmt.Errorf("decoding nft rule: %w", err)
		}
		r := FWRule{Source: "nft", Table: rule.Family + " " + rule.Table, Chain: rule.Chain}
		var words []string
		for _, e := range rule.Expr {
			words = append(words, nftExpr(&r, e))
		}
		r.Text = fmt.Sprintf("nft %s %s %s: %s", rule.Family, rule.Table, rule.Chain, strings.Join(strings.Fields(strings.Join(words, " ")), " "))
		out = append(out, r)
	}
	return out, nil
}

// nftExpr folds one expression into r and returns it in words.
func nftExpr(r *FWRule, raw json.RawMessage) string {
	var e map[string]json.RawMessage
	if json.Unmarshal(raw, &e) != nil {
		return "?"
	}
	for k, v := range e {
		switch k {
		case "match":
			var m struct {
				Op    string          `json:"op"`
				Left  json.RawMessage `json:"left"`
				Right json.RawMessage `json:"right"`
			}
			if json.Unmarshal(v, &m) != nil {
				return "?"
			}
			left := nftValue(m.Left)
			right := nftValue(m.Right)
			switch left {
			case "meta iifname":
				r.InIface, r.InNeg = right, m.Op == "!="
			case "meta oifname":
				r.OutIface, r.OutNeg = right, m.Op == "!="
			case "ip saddr":
				p, err := netip.ParsePrefix(right)
				if err != nil {
					p, err = netip.ParsePrefix(right + "/32")
				}
				if err == nil && m.Op != "!=" {
					r.Src = p
				}
			}
			r.MarkRead |= markBits(m.Left, false)
			return fmt.Sprintf("%s %s %s", left, m.Op, right)
		case "mangle":
			var m struct {
				Key   json.RawMessage `json:"key"`
				Value json.RawMessage `json:"value"`
			}
			if json.Unmarshal(v, &m) != nil {
				return "?"
			}
			if nftValue(m.Key) == "meta mark" {
				r.MarkWrite |= markBits(m.Value, true)
				if r.Verdict == "" {
					r.Verdict = "MARK"
				}
			}
			return fmt.Sprintf("%s set %s", nftValue(m.Key), nftValue(m.Value))
		case "accept", "drop", "return":
			r.Verdict = strings.ToUpper(k)
			return k
		case "jump", "goto":
			var t struct {
				Target string `json:"target"`
			}
			_ = json.Unmarshal(v, &t)
			r.Verdict = "JUMP " + t.Target
			return k + " " + t.Target
		case "counter":
			return ""
		case "xt":
			var t struct {
				Type string `json:"type"`
				Name string `json:"name"`
			}
			_ = json.Unmarshal(v, &t)
			if t.Type == "target" {
				r.Verdict = t.Name
			}
			return fmt.Sprintf("xt %s %s", t.Type, t.Name)
		default:
			return k
		}
	}
	return ""
}

// nftValue renders an nft JSON value in nft's words.
func nftValue(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n uint64
	if json.Unmarshal(raw, &n) == nil {
		return fmt.Sprintf("0x%x", n)
	}
	var o map[string]json.RawMessage
	if json.Unmarshal(raw, &o) != nil {
		return string(raw)
	}
	for k, v := range o {
		switch k {
		case "meta":
			var m struct {
				Key string `json:"key"`
			}
			_ = json.Unmarshal(v, &m)
			return "meta " + m.Key
		case "payload":
			var p struct {
				Protocol string `json:"protocol"`
				Field    string `json:"field"`
			}
			_ = json.Unmarshal(v, &p)
			return p.Protocol + " " + p.Field
		case "prefix":
			var p struct {
				Addr string `json:"addr"`
				Len  int    `json:"len"`
			}
			_ = json.Unmarshal(v, &p)
			return fmt.Sprintf("%s/%d", p.Addr, p.Len)
		case "&", "|", "^":
			var args []json.RawMessage
			_ = json.Unmarshal(v, &args)
			var parts []string
			for _, a := range args {
				parts = append(parts, nftValue(a))
			}
			return "(" + strings.Join(parts, " "+k+" ") + ")"
		}
	}
	if m, ok := o["meta"]; ok {
		return string(m)
	}
	return string(raw)
}

// markBits returns the mark bits an nft value reads (write false: a match's
// left side) or writes (write true: a "meta mark set" value).
func markBits(raw json.RawMessage, write bool) uint32 {
	if nftValue(raw) == "meta mark" {
		if write {
			return 0
		}
		return 0xffffffff
	}
	var n uint64
	if json.Unmarshal(raw, &n) == nil {
		if write {
			return 0xffffffff // the whole mark is replaced
		}
		return 0
	}
	var o map[string][]json.RawMessage
	if json.Unmarshal(raw, &o) != nil {
		return 0
	}
	for op, args := range o {
		if len(args) != 2 {
			continue
		}
		var c uint64
		constant := json.Unmarshal(args[1], &c) == nil
		inner := markBits(args[0], write)
		switch {
		case !constant:
		case op == "&" && write:
			return inner | ^uint32(c)
		case op == "&":
			if nftValue(args[0]) == "meta mark" {
				return uint32(c)
			}
			return inner & uint32(c)
		case write: // | and ^ change the constant's bits
			return inner | uint32(c)
		default:
			return inner
		}
	}
	return 0
}
