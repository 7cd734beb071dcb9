package chaos

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/ducksnest/netd/policy/desired"
)

// policyFiles are the versions of the lab's policy file the reload faults
// write: the original, a valid change, a broken one.
type policyFiles struct {
	path        string
	good        []byte
	goodDigest  string
	validChange []byte // nil if the policy has no maxPrefixes to change
	validDigest string
	changed     bool // the valid change is the current file
	holdTime    time.Duration
	peer        *desired.Peer // an external peer on a node's LAN, if any
	nodeASN     int
}

var (
	maxPrefixesRe = regexp.MustCompile(`(?m)^(\s*maxPrefixes:\s*)(\d+)`)
	asnRe         = regexp.MustCompile(`(?m)^(\s*asn:\s*)\d+`)
)

func loadPolicyFiles(path string, compile func(string, []byte) (*desired.State, error)) (*policyFiles, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the lab's policy: %w", err)
	}
	st, err := compile(path, b)
	if err != nil {
		return nil, fmt.Errorf("the lab's policy: %w", err)
	}
	pf := &policyFiles{path: path, good: b, goodDigest: st.Digest, holdTime: 9 * time.Second}
	for _, n := range st.Nodes {
		pf.holdTime, pf.nodeASN = n.BGP.Timers.HoldTime, int(n.BGP.ASN)
		if !n.LANAddr.IsValid() {
			continue
		}
		for _, p := range n.BGP.Peers {
			if p.Kind == desired.PeerExternal && pf.peer == nil {
				pf.peer = &p
			}
		}
	}
	if m := maxPrefixesRe.FindSubmatchIndex(b); m != nil {
		// maxPrefixes: N -> N+1, a change every netd applies without
		// touching a route.
		v, err := strconv.Atoi(string(b[m[4]:m[5]]))
		if err != nil {
			return nil, fmt.Errorf("the policy's maxPrefixes: %w", err)
		}
		c := append(append(append([]byte{}, b[:m[4]]...), fmt.Sprint(v+1)...), b[m[5]:]...)
		cst, err := compile(path, c)
		if err != nil {
			return nil, fmt.Errorf("the valid policy change: %w", err)
		}
		pf.validChange, pf.validDigest = c, cst.Digest
	}
	return pf, nil
}

// current returns the file the lab runs now and its digest.
func (pf *policyFiles) current() ([]byte, string) {
	if pf.changed {
		return pf.validChange, pf.validDigest
	}
	return pf.good, pf.goodDigest
}

// toggle writes the valid change (or the original back) and returns the
// digest every netd must reach.
func (pf *policyFiles) toggle() (string, error) {
	pf.changed = !pf.changed
	b, d := pf.current()
	return d, writeAtomic(pf.path, b)
}

// writeBroken writes a policy that does not compile (an ASN that is not a
// number, or, without one, text that is not YAML).
func (pf *policyFiles) writeBroken() error {
	cur, _ := pf.current()
	broken := asnRe.ReplaceAll(cur, []byte("${1}banana"))
	if string(broken) == string(cur) {
		broken = append(append([]byte{}, cur...), "\n  broken: [not yaml\n"...)
	}
	return writeAtomic(pf.path, broken)
}

// writeCurrent writes the current good file back.
func (pf *policyFiles) writeCurrent() error {
	b, _ := pf.current()
	return writeAtomic(pf.path, b)
}

// restore writes the original file back (at the end of a run).
func (pf *policyFiles) restore() {
	pf.changed = false
	_ = writeAtomic(pf.path, pf.good)
}

// writeAtomic replaces path as an editor or git checkout would.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".chaos"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing policy: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing policy: %w", err)
	}
	return nil
}
