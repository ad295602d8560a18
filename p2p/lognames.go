package p2p

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// PeerNames wraps h so that every attribute whose value is the peer ID of a
// member of fed (a string, a fmt.Stringer such as peer.ID, or a slice of
// them) gains a sibling attribute KEY_name with the member's federation
// name (KEY_names for a slice). Log lines then
// name peers as operators know them without every call site looking them
// up; the ID stays in its own attribute for scripts. An ID fed does not
// list is named "not enrolled".
func PeerNames(h slog.Handler, fed *Federation) slog.Handler {
	if fed == nil {
		return h
	}
	return &namingHandler{h: h, fed: fed}
}

type namingHandler struct {
	h   slog.Handler
	fed *Federation
}

func (n *namingHandler) Enabled(ctx context.Context, l slog.Level) bool { return n.h.Enabled(ctx, l) }

func (n *namingHandler) Handle(ctx context.Context, r slog.Record) error {
	var extra []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		if na, ok := n.nameAttr(a); ok {
			extra = append(extra, na)
		}
		return true
	})
	if len(extra) > 0 {
		r = r.Clone()
		r.AddAttrs(extra...)
	}
	return n.h.Handle(ctx, r)
}

func (n *namingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := append([]slog.Attr(nil), attrs...)
	for _, a := range attrs {
		if na, ok := n.nameAttr(a); ok {
			out = append(out, na)
		}
	}
	return &namingHandler{h: n.h.WithAttrs(out), fed: n.fed}
}

func (n *namingHandler) WithGroup(name string) slog.Handler {
	return &namingHandler{h: n.h.WithGroup(name), fed: n.fed}
}

// name returns the member name of s if s looks like a peer ID of fed.
func (n *namingHandler) name(s string) (string, bool) {
	// Ed25519 peer IDs start 12D3KooW, RSA/legacy ones Qm; skip everything
	// else without decoding.
	if !strings.HasPrefix(s, "12D3KooW") && !strings.HasPrefix(s, "Qm") {
		return "", false
	}
	id, err := peer.Decode(s)
	if err != nil {
		return "", false
	}
	if m, ok := n.fed.Lookup(id); ok {
		return m.Name, true
	}
	return "not enrolled", true
}

func (n *namingHandler) nameAttr(a slog.Attr) (slog.Attr, bool) {
	if strings.HasSuffix(a.Key, "_name") || strings.HasSuffix(a.Key, "_names") {
		return slog.Attr{}, false
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if nm, ok := n.name(v.String()); ok {
			return slog.String(a.Key+"_name", nm), true
		}
	case slog.KindAny:
		x := v.Any()
		if s, ok := x.(fmt.Stringer); ok {
			if nm, ok := n.name(s.String()); ok {
				return slog.String(a.Key+"_name", nm), true
			}
			return slog.Attr{}, false
		}
		rv := reflect.ValueOf(x)
		if rv.Kind() == reflect.String { // e.g. raft.ServerAddress
			if nm, ok := n.name(rv.String()); ok {
				return slog.String(a.Key+"_name", nm), true
			}
			return slog.Attr{}, false
		}
		if rv.Kind() != reflect.Slice || rv.Len() == 0 {
			return slog.Attr{}, false
		}
		names := make([]string, 0, rv.Len())
		for i := range rv.Len() {
			e := rv.Index(i).Interface()
			var s string
			switch e := e.(type) {
			case string:
				s = e
			case fmt.Stringer:
				s = e.String()
			default:
				if rv.Index(i).Kind() != reflect.String {
					return slog.Attr{}, false
				}
				s = rv.Index(i).String()
			}
			nm, ok := n.name(s)
			if !ok {
				return slog.Attr{}, false
			}
			names = append(names, nm)
		}
		return slog.Any(a.Key+"_names", names), true
	}
	return slog.Attr{}, false
}

// NewLogger returns the processes' logger: text or JSON lines (format
// "json") on w from level up, with every enrolled peer ID attribute
// carrying the member's name (PeerNames; fed nil: none).
func NewLogger(w io.Writer, level slog.Level, format string, fed *Federation) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	if fed != nil {
		h = PeerNames(h, fed)
	}
	return slog.New(h)
}
