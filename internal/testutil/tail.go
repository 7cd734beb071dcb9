package testutil

import (
	"os"
	"strings"
)

// Tail returns the last n lines of s (without a trailing newline).
func Tail(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-n):], "\n")
}

// TailFile returns the last n lines of the file at path, or the error
// reading it as text (it is meant for failure messages).
func TailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return Tail(string(b), n)
}
