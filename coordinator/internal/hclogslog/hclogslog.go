// Package hclogslog adapts an slog.Logger to the hclog.Logger that
// hashicorp/raft and its stores take. Each hclog call becomes one slog
// record at the matching level, with hclog's key/value pairs as slog
// attributes and the logger's name as "component", so a Raft line carries
// one level (slog's), not slog's level around hclog's "[WARN]" prefix.
package hclogslog

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// New returns an hclog.Logger writing to l (slog.Default() if nil) at
// level and above; name becomes the "component" attribute.
func New(l *slog.Logger, name string, level hclog.Level) hclog.Logger {
	if l == nil {
		l = slog.Default()
	}
	a := &adapter{l: l, name: name, lvl: new(atomic.Int32)}
	a.lvl.Store(int32(level))
	return a
}

type adapter struct {
	l       *slog.Logger
	name    string
	implied []any
	lvl     *atomic.Int32
}

var _ hclog.Logger = (*adapter)(nil)

// slogLevel maps hclog's levels onto slog's; Trace is below Debug.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (a *adapter) enabled(l hclog.Level) bool {
	if l == hclog.Off || hclog.Level(a.lvl.Load()) == hclog.Off {
		return false
	}
	return l >= hclog.Level(a.lvl.Load()) && a.l.Enabled(context.Background(), slogLevel(l))
}

func (a *adapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	if !a.enabled(level) {
		return
	}
	attrs := make([]any, 0, 2+len(a.implied)+len(args))
	if a.name != "" {
		attrs = append(attrs, "component", a.name)
	}
	attrs = append(attrs, a.implied...)
	attrs = append(attrs, args...)
	if len(attrs)%2 == 1 {
		// hclog puts a lone trailing value under EXTRA_VALUE_AT_END.
		attrs = append(attrs[:len(attrs)-1], "extra", attrs[len(attrs)-1])
	}
	a.l.Log(context.Background(), slogLevel(level), msg, attrs...)
}

func (a *adapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *adapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *adapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *adapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *adapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *adapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *adapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *adapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *adapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *adapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *adapter) ImpliedArgs() []any { return append([]any(nil), a.implied...) }

func (a *adapter) With(args ...any) hclog.Logger {
	b := *a
	b.implied = append(append([]any(nil), a.implied...), args...)
	return &b
}

func (a *adapter) Name() string { return a.name }

func (a *adapter) Named(name string) hclog.Logger {
	b := *a
	if b.name != "" {
		b.name += "." + name
	} else {
		b.name = name
	}
	return &b
}

func (a *adapter) ResetNamed(name string) hclog.Logger {
	b := *a
	b.name = name
	return &b
}

func (a *adapter) SetLevel(level hclog.Level) { a.lvl.Store(int32(level)) }
func (a *adapter) GetLevel() hclog.Level      { return hclog.Level(a.lvl.Load()) }

func (a *adapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer whose lines become records; a line's
// "[LEVEL]" prefix, as libraries write them, sets the record's level
// (and is removed), otherwise the level is Info (or opts.ForceLevel).
func (a *adapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	w := &writer{a: a}
	if opts != nil {
		w.force = opts.ForceLevel
	}
	return w
}

type writer struct {
	a     *adapter
	force hclog.Level
}

func (w *writer) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		level, msg := splitLevel(line)
		if w.force != hclog.NoLevel {
			level = w.force
		}
		w.a.Log(level, msg)
	}
	return len(p), nil
}

// splitLevel removes a leading "[TRACE]", "[DEBUG]", "[INFO]", "[WARN]" or
// "[ERROR]" (and the space after it) and returns the level it names.
func splitLevel(line string) (hclog.Level, string) {
	for _, p := range []struct {
		s string
		l hclog.Level
	}{{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info}, {"[WARN]", hclog.Warn}, {"[ERR]", hclog.Error}, {"[ERROR]", hclog.Error}} {
		if rest, ok := strings.CutPrefix(line, p.s); ok {
			return p.l, strings.TrimSpace(rest)
		}
	}
	return hclog.Info, line
}
