package doctor

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

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
