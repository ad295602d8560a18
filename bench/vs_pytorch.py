"""Time one local epoch of the FedAvg paper's 2NN or CNN in PyTorch.

The PyTorch twin of bench/epochtime (McMahan et al. 2017: 2NN 784-200-200-10;
CNN conv5x5 32 "same", ReLU, 2x2 max-pool, conv5x5 64, ReLU, 2x2 max-pool,
FC 512 ReLU, FC 10): one epoch over 600 seeded synthetic 28x28 examples,
B=10, reshuffled each epoch and gathered per minibatch, plain SGD (lr 0.01,
no momentum), softmax cross-entropy. Prints one line

    pytorch MODEL THREADS - median-wall-s median-cpu-s wall: s1 s2 ... cpu: c1 c2 ...

where cpu is the process's CPU time over the epoch (time.process_time, all
threads).

Usage: vs_pytorch.py MODEL THREADS [REPS] [WARMUP]
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def build(kind):
    if kind == "2nn":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.ReLU(),
                             nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 10))
    if kind == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, 10))
    raise SystemExit(f"vs_pytorch.py: model {kind!r}, want 2nn or cnn")


def main():
    kind, threads = sys.argv[1], int(sys.argv[2])
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    warmup = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    examples, batch = 600, 10
    x = torch.rand(examples, 1, 28, 28)
    y = torch.randint(0, 10, (examples,))
    net = build(kind)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    times, cpus = [], []
    for r in range(warmup + reps):
        c0 = time.process_time()
        t0 = time.perf_counter()
        order = torch.randperm(examples)
        for s in range(0, examples, batch):
            i = order[s:s + batch]
            xb, yb = x[i], y[i]
            opt.zero_grad()
            loss = F.cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
        if r >= warmup:
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)

    def med(v):
        return sorted(v)[len(v) // 2]

    def join(v):
        return " ".join(f"{t:.4f}" for t in v)
    print(f"pytorch {kind} {torch.get_num_threads()} - {med(times):.4f} {med(cpus):.4f} wall: {join(times)} cpu: {join(cpus)}")


if __name__ == "__main__":
    main()
