#!/bin/sh
# One local epoch of the FedAvg paper's 2NN and CNN (600 examples, B=10,
# plain SGD) in Sovereign (bench/epochtime) and in PyTorch (bench/vs_pytorch.py,
# Debian's python3-torch), with the same number of threads, alternated ROUNDS
# times (the order flips every round), then the median epoch time of each and
# the ratio PyTorch / Sovereign (above 1: Sovereign is faster), both for wall
# time and for the process's CPU time over the epoch (all threads), which load
# from other processes on a shared machine disturbs least.
#
# Usage: bench/vs-pytorch.sh [ROUNDS]      (default 5)
# Environment: THREADS (default: number of CPUs) sets GOMAXPROCS and
# torch.set_num_threads; PYTHON (default /usr/bin/python3); REPS timed
# epochs per process (default 3, the process reports their median).
set -eu
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
THREADS=${THREADS:-$(nproc)}
PYTHON=${PYTHON:-/usr/bin/python3}
REPS=${REPS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/epochtime" ./bench/epochtime
"$PYTHON" -c 'import torch' 2>/dev/null || { echo "vs-pytorch: $PYTHON cannot import torch (apt-get install python3-torch)" >&2; exit 1; }
echo "threads=$THREADS rounds=$ROUNDS reps=$REPS load: $(cut -d' ' -f1-3 /proc/loadavg)"
go_run() { GOMAXPROCS=$THREADS "$tmp/epochtime" -model "$1" -reps "$REPS"; }
# torch.set_num_threads alone does not bound Debian's build: its BLAS
# (OpenBLAS) starts its own threads, so an epoch at "1 thread" used two
# cores' worth of CPU. The environment caps every pool at THREADS.
py_run() { OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS "$PYTHON" bench/vs_pytorch.py "$1" "$THREADS" "$REPS"; }
r=1
while [ "$r" -le "$ROUNDS" ]; do
	for m in 2nn cnn; do
		if [ $((r % 2)) -eq 1 ]; then
			go_run "$m" | tee -a "$tmp/out"
			py_run "$m" | tee -a "$tmp/out"
		else
			py_run "$m" | tee -a "$tmp/out"
			go_run "$m" | tee -a "$tmp/out"
		fi
	done
	r=$((r + 1))
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk '
function median(arr, n,   i, j, t) {
	for (i = 2; i <= n; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j+1] = arr[j]; arr[j+1] = t }
	return n % 2 ? arr[(n+1)/2] : (arr[n/2] + arr[n/2+1]) / 2
}
{ k = $1 " " $2; n[k]++; v[k, n[k]] = $5; c[k, n[k]] = $6 }
END {
	for (mi = 1; mi <= 2; mi++) {
		m = mi == 1 ? "2nn" : "cnn"
		for (f = 1; f <= 2; f++) {
			fw = f == 1 ? "sovereign" : "pytorch"; k = fw " " m
			delete a; for (i = 1; i <= n[k]; i++) a[i] = v[k, i]
			med[fw] = median(a, n[k])
			delete a; for (i = 1; i <= n[k]; i++) a[i] = c[k, i]
			cmed[fw] = median(a, n[k])
		}
		printf "%s epoch wall: sovereign %.4f s, pytorch %.4f s (medians of %d): sovereign %.2fx faster\n", m, med["sovereign"], med["pytorch"], n["sovereign " m], med["pytorch"] / med["sovereign"]
		printf "%s epoch cpu:  sovereign %.4f s, pytorch %.4f s (medians of %d): sovereign %.2fx faster\n", m, cmed["sovereign"], cmed["pytorch"], n["sovereign " m], cmed["pytorch"] / cmed["sovereign"]
	}
}' "$tmp/out"
