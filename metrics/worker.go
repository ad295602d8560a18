package metrics

import (
	"io/fs"
	"math"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sovereign-fl/sovereign/wire"
	"github.com/sovereign-fl/sovereign/worker"
)

// WorkerSource is what the worker metrics read at scrape time; nil fields
// leave their metrics out.
type WorkerSource struct {
	// Epsilon returns the ε the worker has spent (its store's record).
	Epsilon func() (float64, error)
	// OwnEpsilon returns the ε of the worker's own accountant (q = 1,
	// worker.OwnEpsilonOf).
	OwnEpsilon func() (float64, error)
	// OwnEpsilonByStudy returns that ε per study ("" = the default
	// study; worker.OwnEpsilonByStudy).
	OwnEpsilonByStudy func() (map[string]float64, error)
	// Budget is the policy's max_epsilon (+Inf when unset).
	Budget float64
	// StoreDir is the worker's badger folder, whose files are summed.
	StoreDir string
	// Bandwidth returns the libp2p bytes received and sent.
	Bandwidth Bandwidth
}

// Worker is the Prometheus instrumentation of a worker; it implements
// worker.Observer (pass it with worker.WithObserver).
type Worker struct {
	reg      *prometheus.Registry
	joined   prometheus.Counter
	refused  *prometheus.CounterVec
	training prometheus.Histogram
	redials  *prometheus.CounterVec
}

var _ worker.Observer = (*Worker)(nil)

// NewWorker registers the worker metrics on a new registry.
func NewWorker(src WorkerSource) *Worker {
	w := &Worker{reg: newRegistry()}
	w.joined = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "worker_rounds_joined_total",
		Help: "Rounds this worker accepted (answered stage 0 for the first time)."})
	w.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "worker_rounds_refused_total",
		Help: "Refusals this worker gave, by reason (policy conditions, stale rounds, equivocation)."}, []string{"reason"})
	w.training = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "worker_training_seconds",
		Help: "Duration of each local training (model.Train).", Buckets: prometheus.ExponentialBuckets(0.005, 2, 16)})
	w.redials = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "worker_redials_total",
		Help: "Dials of a coordinator after a lost connection or a failed dial, by coordinator name."}, []string{"coordinator"})
	for _, r := range RefusalReasons {
		w.refused.WithLabelValues(r)
	}
	w.reg.MustRegister(w.joined, w.refused, w.training, w.redials)
	if src.Epsilon != nil {
		w.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "worker_epsilon_spent",
			Help: "Total ε this worker has spent in committed rounds (NaN if its store cannot be read)."}, func() float64 {
			e, err := src.Epsilon()
			if err != nil {
				return math.NaN()
			}
			return e
		}))
		if src.OwnEpsilon != nil {
			w.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "worker_epsilon_own",
				Help: "ε of this worker's own accountant: the rounds it sent a noised masked input in, at sampling rate q = 1 (NaN if its store cannot be read)."}, func() float64 {
				e, err := src.OwnEpsilon()
				if err != nil {
					return math.NaN()
				}
				return e
			}))
		}
		if src.OwnEpsilonByStudy != nil {
			w.reg.MustRegister(&studyEpsilon{f: src.OwnEpsilonByStudy, desc: prometheus.NewDesc(Namespace+"_worker_epsilon_own_study",
				"ε of this worker's own accountant (q = 1) over the rounds of one study; policy.max_epsilon caps each, policy.max_epsilon_total their composition (worker_epsilon_own).",
				[]string{"study"}, nil)})
		}
		w.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "worker_epsilon_budget",
			Help: "The worker's policy.max_epsilon (+Inf when unset)."}, func() float64 { return src.Budget }))
	}
	if src.StoreDir != "" {
		w.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "worker_store_bytes",
			Help: "Size of the worker's store folder on disk."}, func() float64 { return float64(dirSize(src.StoreDir)) }))
	}
	for _, bc := range bandwidthCollectors(src.Bandwidth) {
		w.reg.MustRegister(bc)
	}
	return w
}

// studyEpsilon reports worker_epsilon_own_study, one sample per study the
// worker's privacy ledger holds, read at scrape time.
type studyEpsilon struct {
	f    func() (map[string]float64, error)
	desc *prometheus.Desc
}

func (c *studyEpsilon) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *studyEpsilon) Collect(ch chan<- prometheus.Metric) {
	m, err := c.f()
	if err != nil {
		return
	}
	for study, e := range m {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, e, wire.StudyLabel(study))
	}
}

// dirSize sums the sizes of the regular files under dir (0 when unreadable).
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// Registry returns the registry.
func (w *Worker) Registry() *prometheus.Registry { return w.reg }

// Handler serves /metrics.
func (w *Worker) Handler() http.Handler { return handler(w.reg) }

// RoundJoined implements worker.Observer.
func (w *Worker) RoundJoined(uint64) { w.joined.Inc() }

// RoundRefused implements worker.Observer.
func (w *Worker) RoundRefused(_ uint64, reason string) {
	w.refused.WithLabelValues(RefusalReason(reason)).Inc()
}

// Trained implements worker.Observer.
func (w *Worker) Trained(_ uint64, d time.Duration) { w.training.Observe(d.Seconds()) }

// Redialed implements worker.Observer.
func (w *Worker) Redialed(coordinator string) { w.redials.WithLabelValues(coordinator).Inc() }
