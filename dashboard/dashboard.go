// Package dashboard serves the read-only web page of a coordinator replica:
// the federation, its Raft replicas and leader, the members, the round in
// flight and its SecAgg+ stage, the accuracy and loss curve (SVG drawn on
// the server), the ledger with a download link per committed model, and the
// workers' refusals. The
// page is one html/template with inline CSS and SVG: no scripts, no build
// step, no external assets, so it works offline. It refreshes itself with
// a meta refresh. Everything comes from the replicated state (refusals
// included: the driver commits them with each stage) and Raft, so a
// follower's page shows what the leader's does.
package dashboard

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/metrics"
	"github.com/sovereign-fl/sovereign/model/safetensors"
	"github.com/sovereign-fl/sovereign/svgplot"
)

// Replica is one Raft replica as this replica sees it.
type Replica struct {
	Name, ID, State string
	Term            uint64
	CommitIndex     uint64
	AppliedIndex    uint64
	Leader          string // the leader this replica knows ("" none)
	Err             string
}

// Worker is an enrolled worker of the federation file.
type Worker struct {
	Name string
	ID   coordinator.WorkerID
}

// Source is what the page is built from. State is required; nil functions
// leave their part empty. The functions are called on the request's
// goroutine.
type Source struct {
	// Federation is the federation's name; Self this replica's name.
	Federation, Self string
	// Rounds is the configured number of rounds.
	Rounds int
	// State returns the replicated coordinator state.
	State func() coordinator.State
	// Stage returns what this replica says the round is doing (the
	// driver's stage on the leader, the replicated one on a follower).
	Stage func() string
	// Replicas returns every replica of the Raft configuration, this one
	// first (each asked within a short timeout).
	Replicas func(ctx context.Context) []Replica
	// Leader returns the leader's name ("" when none is known).
	Leader func() string
	// Workers are the federation file's workers.
	Workers func() []Worker
	// Online returns the workers connected to this replica.
	Online func() []coordinator.WorkerID
	// Refusals returns the refusals workers answered (the replicated
	// State.Refusals in the coordinator).
	Refusals func() []metrics.Refusal
	// Model returns the model committed in a round as a safetensors file
	// with its provenance (ErrNoModel if the ledger holds none for it);
	// nil leaves the download links out.
	Model func(round uint64) (*safetensors.File, error)
	// Name maps a peer ID to its member name (the ID itself if unknown).
	Name func(id string) string
	// Token, if set, is the bearer token every request must carry
	// (Authorization: Bearer TOKEN, or ?token=TOKEN for a browser).
	Token string
	// Refresh is the page's refresh interval (default 2 s).
	Refresh time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Handler serves the page at / (GET and HEAD only).
type Handler struct {
	src Source

	mu   sync.Mutex
	seen map[coordinator.WorkerID]time.Time
}

// New returns the dashboard handler of src.
func New(src Source) *Handler {
	if src.Refresh <= 0 {
		src.Refresh = 2 * time.Second
	}
	if src.Now == nil {
		src.Now = time.Now
	}
	return &Handler{src: src, seen: map[coordinator.WorkerID]time.Time{}}
}

// Track records the workers online now as seen; call it periodically so
// that "last seen" does not depend on page views. It returns at once.
func (h *Handler) Track() {
	if h.src.Online == nil {
		return
	}
	now := h.src.Now()
	h.mu.Lock()
	for _, w := range h.src.Online() {
		h.seen[w] = now
	}
	h.mu.Unlock()
}

// Run calls Track every interval until ctx ends.
func (h *Handler) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		h.Track()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *Handler) authorized(r *http.Request) bool {
	if h.src.Token == "" {
		return true
	}
	got := ""
	if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
		got = strings.TrimPrefix(a, "Bearer ")
	} else {
		got = r.URL.Query().Get("token")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(h.src.Token)) == 1
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the dashboard is read-only", http.StatusMethodNotAllowed)
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sovereign dashboard"`)
		http.Error(w, "unauthorized: a bearer token is required (Authorization header or ?token=)", http.StatusUnauthorized)
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/model/"); ok && h.src.Model != nil {
		h.serveModel(w, r, rest)
		return
	}
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	p := h.Page(r.Context())
	if tok := r.URL.Query().Get("token"); tok != "" {
		// A browser that came with ?token= follows the links with it.
		for i := range p.Ledger {
			if p.Ledger[i].Download != "" {
				p.Ledger[i].Download += "?token=" + url.QueryEscape(tok)
			}
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	if err := page.Execute(w, p); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// serveModel answers /model/ROUND.safetensors with the committed model of
// that round, as `sovereign export` would write it.
func (h *Handler) serveModel(w http.ResponseWriter, r *http.Request, rest string) {
	num, ok := strings.CutSuffix(rest, ".safetensors")
	round, err := strconv.ParseUint(num, 10, 64)
	if !ok || err != nil {
		http.Error(w, fmt.Sprintf("%q: want /model/ROUND.safetensors", r.URL.Path), http.StatusNotFound)
		return
	}
	f, err := h.src.Model(round)
	if errors.Is(err, ErrNoModel) {
		http.Error(w, fmt.Sprintf("round %d: %v", round, err), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("round %d: %v", round, err), http.StatusInternalServerError)
		return
	}
	name := fmt.Sprintf("model-round-%d.safetensors", round)
	b, err := safetensors.Encode(f, name)
	if err != nil {
		http.Error(w, fmt.Sprintf("round %d: %v", round, err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}

// Member is a worker's row.
type Member struct {
	Name, ID     string
	Online       bool
	LastSeen     string
	RoundsJoined int
	Refusals     int
	LastRefusal  string
}

// LedgerRow is one ledger entry.
type LedgerRow struct {
	Round        uint64
	ModelHash    string
	Contributors []string
	Epsilon      float64
	// Download is the link to the round's model as safetensors ("" when
	// the source serves no models).
	Download string
}

// ErrNoModel is Source.Model's error for a round without a committed model.
var ErrNoModel = errors.New("no model committed in that round")

// RefusalRow is one refusal.
type RefusalRow struct {
	Worker, Reason, Label, Time string
	Round                       uint64
}

// InFlight is the round in flight.
type InFlight struct {
	Round                                  uint64
	Stage                                  string
	Sampled, Advertised, Shared, Survivors int
	Epsilon                                float64
}

// Page is the data the template renders.
type Page struct {
	Federation, Self, Leader, Stage string
	Generated                       string
	RefreshSeconds                  int
	Round                           uint64
	Rounds, Committed, Failed       int
	Replicas                        []Replica
	Members                         []Member
	Current                         *InFlight
	Accuracy, Loss                  template.HTML
	HasCurve                        bool
	LastAccuracy, LastLoss          float64
	Ledger                          []LedgerRow
	Refusals                        []RefusalRow
	Epsilon                         float64
	LedgerLength                    int
}

// maxLedgerRows is how many ledger entries the page lists (newest first).
const maxLedgerRows = 20

// Page builds the page data.
func (h *Handler) Page(ctx context.Context) Page {
	s := h.src
	h.Track()
	st := s.State()
	name := func(id string) string {
		if s.Name != nil {
			return s.Name(id)
		}
		return id
	}
	_, committed, failed := metrics.Counts(st)
	p := Page{Federation: s.Federation, Self: s.Self, Round: st.Round, Rounds: s.Rounds,
		Committed: int(committed), Failed: int(failed), RefreshSeconds: max(1, int(s.Refresh/time.Second)),
		Generated: s.Now().UTC().Format("2006-01-02 15:04:05 UTC")}
	if s.Stage != nil {
		p.Stage = s.Stage()
	}
	if s.Leader != nil {
		p.Leader = s.Leader()
	}
	if s.Replicas != nil {
		p.Replicas = s.Replicas(ctx)
	}
	if h := st.Head(); h != nil {
		p.Epsilon = h.Epsilon
	}
	if c := st.Current; c != nil {
		p.Current = &InFlight{Round: c.Round, Stage: metrics.StageName(c.Next), Sampled: len(c.Announce.Sampled),
			Advertised: len(c.Advertised), Shared: len(c.Shared), Survivors: len(c.Survivors), Epsilon: c.Announce.Epsilon}
	}
	// Members.
	var refusals []metrics.Refusal
	if s.Refusals != nil {
		refusals = s.Refusals()
	}
	var online []coordinator.WorkerID
	if s.Online != nil {
		online = s.Online()
	}
	joined := map[coordinator.WorkerID]int{}
	for _, e := range st.Ledger {
		for _, w := range e.Participants {
			joined[w]++
		}
	}
	if s.Workers != nil {
		h.mu.Lock()
		for _, w := range s.Workers() {
			m := Member{Name: w.Name, ID: string(w.ID), Online: slices.Contains(online, w.ID), RoundsJoined: joined[w.ID], LastSeen: "never"}
			if t, ok := h.seen[w.ID]; ok {
				if m.Online {
					m.LastSeen = "now"
				} else {
					m.LastSeen = t.UTC().Format("15:04:05 UTC")
				}
			}
			for _, r := range refusals {
				if r.Worker == w.ID {
					m.Refusals++
					m.LastRefusal = r.Label
				}
			}
			p.Members = append(p.Members, m)
		}
		h.mu.Unlock()
	}
	for i := len(refusals) - 1; i >= 0 && len(p.Refusals) < 20; i-- {
		r := refusals[i]
		p.Refusals = append(p.Refusals, RefusalRow{Worker: name(string(r.Worker)), Round: r.Round, Reason: r.Reason, Label: r.Label,
			Time: r.Time.UTC().Format("15:04:05")})
	}
	// Curve.
	var xs, acc, loss []float64
	for _, m := range st.Metrics {
		xs, acc, loss = append(xs, float64(m.Round)), append(acc, m.Accuracy), append(loss, m.Loss)
	}
	if len(xs) > 0 {
		p.HasCurve = true
		p.LastAccuracy, p.LastLoss = acc[len(acc)-1], loss[len(loss)-1]
		p.Accuracy = template.HTML(svgplot.String(svgplot.Chart{ID: "accuracy-curve", Title: "Federated accuracy", XLabel: "round", YLabel: "accuracy", YMin: 0, YMax: 1, Width: 480, Height: 260},
			svgplot.Series{Name: "accuracy", X: xs, Y: acc}))
		p.Loss = template.HTML(svgplot.String(svgplot.Chart{ID: "loss-curve", Title: "Federated loss", XLabel: "round", YLabel: "cross-entropy loss", Width: 480, Height: 260},
			svgplot.Series{Name: "loss", X: xs, Y: loss, Color: "#d62728"}))
	}
	// Ledger, newest first.
	p.LedgerLength = len(st.Ledger)
	for i := len(st.Ledger) - 1; i >= 0 && len(p.Ledger) < maxLedgerRows; i-- {
		e := st.Ledger[i]
		row := LedgerRow{Round: e.Round, ModelHash: e.ModelHash.String(), Epsilon: e.Epsilon}
		if s.Model != nil {
			row.Download = fmt.Sprintf("model/%d.safetensors", e.Round)
		}
		for _, w := range e.Participants {
			row.Contributors = append(row.Contributors, name(string(w)))
		}
		p.Ledger = append(p.Ledger, row)
	}
	return p
}

//go:embed page.html.tmpl
var pageText string

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12] + "…"
		}
		return s
	},
	"pct":  func(v float64) string { return fmtFloat(100*v, 1) + "%" },
	"f4":   func(v float64) string { return fmtFloat(v, 4) },
	"join": strings.Join,
}).Parse(pageText))
