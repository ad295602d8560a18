// Command epochtime times one local epoch of the FedAvg paper's 2NN or CNN
// (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks
// from Decentralized Data": 2NN 784-200-200-10; CNN conv5x5 32, pool, conv5x5
// 64, pool, FC 512, softmax) in Sovereign: model.Train with E=1, B=10, plain
// SGD (no momentum, no weight decay) on 600 seeded synthetic 28x28 examples,
// the work of one FedAvg client epoch. bench/vs_pytorch.py does the same in
// PyTorch; bench/vs-pytorch.sh alternates the two.
//
// It runs -warmup untimed epochs, then -reps timed ones, and prints one line
//
//	sovereign MODEL THREADS GEMM-PATH median-wall-s median-cpu-s wall: s1 s2 ... cpu: c1 c2 ...
//
// where cpu is the process's user+system CPU time over the epoch (all
// threads), the figure that load from other processes disturbs least.
// Threads are GOMAXPROCS (set it with the environment variable).
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sovereign-fl/sovereign/model"
)

func main() {
	kind := flag.String("model", "cnn", "2nn or cnn")
	examples := flag.Int("examples", 600, "local examples")
	batch := flag.Int("batch", 10, "minibatch size B")
	reps := flag.Int("reps", 3, "timed epochs")
	warmup := flag.Int("warmup", 1, "untimed epochs first")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the timed epochs to this file")
	flag.Parse()
	if *kind != "2nn" && *kind != "cnn" {
		fmt.Fprintf(os.Stderr, "epochtime: -model=%q, want 2nn or cnn\n", *kind)
		os.Exit(2)
	}
	spec, err := model.ParseSpec(*kind, 1, 28, 28, 10)
	if err != nil {
		fmt.Fprintln(os.Stderr, "epochtime:", err)
		os.Exit(2)
	}
	net, err := model.New(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "epochtime:", err)
		os.Exit(2)
	}
	net.Init(1)
	const dim = 784
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, *examples*dim)
	for i := range x {
		x[i] = rng.Float32()
	}
	y := make([]int32, *examples)
	for i := range y {
		y[i] = int32(rng.IntN(10))
	}
	idx := make([]int, *examples)
	for i := range idx {
		idx[i] = i
	}
	cfg := model.TrainConfig{Epochs: 1, Batch: *batch, LR: 0.01, Seed: 1}
	var times, cpus []float64
	for r := 0; r < *warmup+*reps; r++ {
		if r == *warmup && *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				fmt.Fprintln(os.Stderr, "epochtime:", err)
				os.Exit(1)
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintln(os.Stderr, "epochtime:", err)
				os.Exit(1)
			}
			defer pprof.StopCPUProfile()
		}
		cfg.Seed = int64(r)
		c0 := cpuSeconds()
		t0 := time.Now()
		if _, err := model.Train(net, x, y, dim, idx, cfg); err != nil {
			fmt.Fprintln(os.Stderr, "epochtime:", err)
			os.Exit(1)
		}
		if r >= *warmup {
			times = append(times, time.Since(t0).Seconds())
			cpus = append(cpus, cpuSeconds()-c0)
		}
	}
	fmt.Printf("sovereign %s %d %s %.4f %.4f wall: %s cpu: %s\n", *kind, runtime.GOMAXPROCS(0), model.GemmPath(),
		median(times), median(cpus), join(times), join(cpus))
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func join(v []float64) string {
	var all []string
	for _, t := range v {
		all = append(all, fmt.Sprintf("%.4f", t))
	}
	return strings.Join(all, " ")
}

// cpuSeconds is the user+system CPU time of the process so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
