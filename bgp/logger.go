package bgp

import (
	"context"
	"log/slog"
	"strings"
	"unicode"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// slogAdapter sends GoBGP's own log lines to slog. GoBGP logs every peer
// transition and operation at Info; those go to Debug here (the Speaker
// logs the state changes that matter itself). Keys are made camelCase.
type slogAdapter struct{ l *slog.Logger }

var _ gobgplog.Logger = slogAdapter{}

func (a slogAdapter) log(level slog.Level, msg string, fields gobgplog.Fields) {
	ctx := context.Background()
	if !a.l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(fields))
	for k, v := range fields {
		if k == gobgplog.FieldFacility {
			continue
		}
		attrs = append(attrs, slog.Any(camelKey(k), v))
	}
	a.l.LogAttrs(ctx, level, msg, attrs...)
}

func (a slogAdapter) Panic(msg string, f gobgplog.Fields) {
	a.log(slog.LevelError, msg, f)
	panic("gobgp: " + msg)
}

// Fatal logs at error level and does not exit: a library must not end the
// daemon; GoBGP returns an error to the caller after its Fatal calls.
func (a slogAdapter) Fatal(msg string, f gobgplog.Fields) { a.log(slog.LevelError, msg, f) }
func (a slogAdapter) Error(msg string, f gobgplog.Fields) { a.log(slog.LevelError, msg, f) }
func (a slogAdapter) Warn(msg string, f gobgplog.Fields)  { a.log(slog.LevelWarn, msg, f) }
func (a slogAdapter) Info(msg string, f gobgplog.Fields)  { a.log(slog.LevelDebug, msg, f) }
func (a slogAdapter) Debug(msg string, f gobgplog.Fields) { a.log(slog.LevelDebug, msg, f) }

// SetLevel is ignored: the slog handler decides.
func (a slogAdapter) SetLevel(gobgplog.LogLevel) {}

// GetLevel tells GoBGP whether to bother building debug messages.
func (a slogAdapter) GetLevel() gobgplog.LogLevel {
	if a.l.Enabled(context.Background(), slog.LevelDebug) {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}

// camelKey turns GoBGP's "Topic", "Remote Addr", "Err" into "topic",
// "remoteAddr", "err".
func camelKey(k string) string {
	switch k {
	case "Err", "Error", "error":
		return "err"
	}
	var b strings.Builder
	up := false
	for i, r := range k {
		switch {
		case r == ' ' || r == '_' || r == '-':
			up = true
		case i == 0:
			b.WriteRune(unicode.ToLower(r))
		case up:
			b.WriteRune(unicode.ToUpper(r))
			up = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
