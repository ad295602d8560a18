package model

import (
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/sovereign-fl/sovereign/model/internal/gemm"
)

// parallelWork is the number of elements a per-example pass must touch
// before it is split over goroutines: below it, waking a goroutine costs
// more than it saves.
const parallelWork = 32 << 10

// exampleJob is one range of examples handed to a pool worker.
type exampleJob struct {
	s      *splitter
	b0, b1 int
}

// The pool: GOMAXPROCS-1 goroutines (as GOMAXPROCS was when first needed)
// that run exampleJobs for every network of the process. Jobs never submit
// jobs, so a caller waiting for its own cannot deadlock the pool.
var pool struct {
	once    sync.Once
	workers int
	jobs    chan *exampleJob
}

func startPool() {
	pool.once.Do(func() {
		pool.workers = runtime.GOMAXPROCS(0) - 1
		pool.jobs = make(chan *exampleJob, 4*max(pool.workers, 1))
		for range pool.workers {
			go func() {
				for j := range pool.jobs {
					j.s.f(j.b0, j.b1)
					j.s.wg.Done()
				}
			}()
		}
	})
}

// splitter runs a per-example pass f over the examples [0, batch) in
// contiguous ranges, on the pool when the pass touches at least
// parallelWork elements, else on the caller's goroutine. f must write only
// its own examples' outputs, so the result is the same whatever the split.
// A layer keeps one splitter per pass (its job slots are reused), so a
// training step allocates nothing.
type splitter struct {
	f func(b0, b1 int)
	// minWork replaces parallelWork as the size below which the pass
	// stays unsplit (a GEMM's multiply-adds rather than elements touched).
	minWork int
	jobs    []exampleJob
	wg      sync.WaitGroup
	split   bool // the running pass is split (f sees a part of the batch)
}

// gemm is the product f should run: gemm.Gemm, which may split it over
// goroutines, when f has the whole batch; gemm.GemmSerial when f has one
// range of a split pass (the split is the parallelism).
func (s *splitter) gemm() func(tA, tB blas.Transpose, alpha float32, a, b blas32.General, beta float32, c blas32.General) {
	if s.split {
		return gemm.GemmSerial
	}
	return gemm.Gemm
}

func (s *splitter) run(batch, perExample int) {
	s.split = false
	workers := min(runtime.GOMAXPROCS(0), batch)
	threshold := parallelWork
	if s.minWork > 0 {
		threshold = s.minWork
	}
	if workers < 2 || batch*perExample < threshold {
		s.f(0, batch)
		return
	}
	startPool()
	workers = min(workers, pool.workers+1)
	if workers < 2 {
		s.f(0, batch)
		return
	}
	s.split = true
	if len(s.jobs) < workers {
		s.jobs = make([]exampleJob, workers)
	}
	s.wg.Add(workers - 1)
	for w := 1; w < workers; w++ {
		s.jobs[w] = exampleJob{s: s, b0: batch * w / workers, b1: batch * (w + 1) / workers}
		pool.jobs <- &s.jobs[w]
	}
	s.f(0, batch/workers)
	s.wg.Wait()
}
