package acl

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// StampPrefix starts the first line of every policy Apply writes.
const StampPrefix = "// netd-applied "

// Stamp puts the stamp line (the sha256 of body) in front of body.
func Stamp(body []byte) []byte {
	out := make([]byte, 0, len(body)+len(StampPrefix)+80)
	out = append(out, StampPrefix...)
	out = append(out, digest(body)...)
	out = append(out, "\n"...)
	return append(out, body...)
}

// Unstamp splits a policy into its body and the digest its stamp line
// records ("" and the whole document if it has no stamp).
func Unstamp(doc []byte) (body []byte, stamp string) {
	if !bytes.HasPrefix(doc, []byte(StampPrefix)) {
		return doc, ""
	}
	line, rest, _ := bytes.Cut(doc, []byte("\n"))
	return rest, strings.TrimSpace(string(line[len(StampPrefix):]))
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}
