#!/usr/bin/env python3
"""The FedAvg CNN (McMahan et al. 2017, Section 3) in PyTorch on MNIST IDX
files, as a Sovereign trainer (docs/trainer-protocol.md).

    python3 train.py --write-init init.safetensors            # the federation's initial model
    python3 train.py --data DIR [--offset K --limit N]        # serve the trainer protocol
    python3 train.py --data DIR --write-subset OUT --limit N --test-limit M
    python3 train.py --data DIR --limit 600 --bench 5         # in-process baseline of the benchmark

DIR holds train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] (as data/mnist/).
Pixels are scaled to [0, 1], as Sovereign's IDX loader does. The network is
torch.nn.Sequential with exactly the tensors of Sovereign's built-in "cnn"
spec, so its weights are the federation's model as it is.
"""

import argparse
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import sovereign_trainer as st  # noqa: E402


def cnn(classes=10, channels=1, side=28):
    return nn.Sequential(
        nn.Conv2d(channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (side // 4) * (side // 4), 512), nn.ReLU(), nn.Linear(512, classes),
    )


def lnmlp(classes=10, channels=1, side=28):
    """A model Sovereign has no built-in twin of (a LayerNorm between the
    layers): the federation trains it as an external model, model =
    "external" with this script's --write-init file (docs/trainer-protocol.md)."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(channels * side * side, 64), nn.LayerNorm(64), nn.ReLU(), nn.Linear(64, classes),
    )


ARCHS = {"cnn": cnn, "lnmlp": lnmlp}


def find(d, prefixes, kind, rank):
    for p in prefixes:
        for sep in "-.":
            for gz in ("", ".gz"):
                path = os.path.join(d, f"{p}-{kind}{sep}{rank}-ubyte{gz}")
                if os.path.exists(path):
                    return path
    raise SystemExit(f"train.py: no {prefixes[0]} {kind} file in {d}")


def load(d, split, offset, limit):
    pre = ["train"] if split == "train" else ["t10k", "test"]
    x = st.read_idx(find(d, pre, "images", "idx3"))
    y = st.read_idx(find(d, pre, "labels", "idx1"))
    if len(x) != len(y):
        raise SystemExit(f"train.py: {d}: {len(x)} {split} images but {len(y)} labels")
    hi = len(x) if limit is None else min(len(x), offset + limit)
    x, y = x[offset:hi], y[offset:hi]
    return torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def write_idx(path, a):
    a = np.ascontiguousarray(a, dtype=np.uint8)
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(">" + "I" * a.ndim, *a.shape))
        f.write(a.tobytes())


class Trainer:
    def __init__(self, x, y, tx, ty, arch="cnn"):
        self.x, self.y, self.tx, self.ty = x, y, tx, ty
        self.net = ARCHS[arch](side=x.shape[-1])
        self.quiet = False

    def layout(self):
        return {k: tuple(v.shape) for k, v in self.net.state_dict().items()}

    def load(self, weights):
        self.net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)

    def train(self, weights, req):
        """ClientUpdate of FedAvg (McMahan et al. 2017, Algorithm 1): E epochs
        of minibatch SGD; FedProx's proximal term (Li et al. 2020) when μ > 0."""
        self.load(weights)
        idx = torch.arange(len(self.x)) if req.indices is None else torch.tensor(req.indices, dtype=torch.int64)
        if not self.quiet:
            print(f"round {req.round}: training on {len(idx)} examples", file=sys.stderr, flush=True)
        g = torch.Generator().manual_seed(req.seed)
        opt = torch.optim.SGD(self.net.parameters(), lr=req.lr)
        anchor = [p.detach().clone() for p in self.net.parameters()] if req.prox_mu > 0 else None
        self.net.train()
        total, n = 0.0, 0
        for _ in range(req.epochs):
            perm = idx[torch.randperm(len(idx), generator=g)]
            for b in range(0, len(perm), req.batch):
                bi = perm[b : b + req.batch]
                opt.zero_grad()
                loss = F.cross_entropy(self.net(self.x[bi]), self.y[bi])
                if anchor is not None:
                    loss = loss + req.prox_mu / 2 * sum(((p - a) ** 2).sum() for p, a in zip(self.net.parameters(), anchor))
                loss.backward()
                opt.step()
                total += loss.item() * len(bi)
                n += len(bi)
        out = {k: v.detach().numpy() for k, v in self.net.state_dict().items()}
        return out, len(idx), total / max(n, 1)

    @torch.no_grad()
    def evaluate(self, weights, indices):
        self.load(weights)
        self.net.eval()
        if indices is None:
            x, y = self.tx, self.ty
        else:
            i = torch.tensor(indices, dtype=torch.int64)
            x, y = self.x[i], self.y[i]
        if len(x) == 0:
            return 0, 0.0, 0.0
        logits = torch.cat([self.net(x[b : b + 1000]) for b in range(0, len(x), 1000)])
        loss = F.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
        return len(x), loss, acc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="folder of MNIST IDX files")
    ap.add_argument("--offset", type=int, default=0, help="first training example used")
    ap.add_argument("--limit", type=int, help="number of training examples used (default all)")
    ap.add_argument("--test-limit", type=int, help="number of test examples used (default all)")
    ap.add_argument("--write-init", metavar="FILE", help="write the seeded initial model and exit")
    ap.add_argument("--write-subset", metavar="DIR", help="write the selected examples as IDX files and exit")
    ap.add_argument("--seed", type=int, default=1, help="seed of --write-init")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one process per core)")
    ap.add_argument("--bench", type=int, metavar="ROUNDS", help="time ROUNDS local trainings in-process and exit")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="cnn",
                    help="cnn: the built-in spec's twin; lnmlp: an MLP with LayerNorm, an external model")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.write_init:
        torch.manual_seed(a.seed)
        st.write_safetensors(a.write_init, {k: v.numpy() for k, v in ARCHS[a.arch]().state_dict().items()},
                             {"format": "pt", "written_by": "examples/pytorch-mnist/train.py", "seed": a.seed})
        print(f"wrote {a.write_init}", file=sys.stderr)
        return
    if not a.data:
        ap.error("--data is required")
    x, y = load(a.data, "train", a.offset, a.limit)
    tx, ty = load(a.data, "test", 0, a.test_limit)
    if a.write_subset:
        os.makedirs(a.write_subset, exist_ok=True)
        for name, arr in (("train-images-idx3-ubyte.gz", x), ("t10k-images-idx3-ubyte.gz", tx)):
            write_idx(os.path.join(a.write_subset, name), (arr.squeeze(1).numpy() * 255).round())
        write_idx(os.path.join(a.write_subset, "train-labels-idx1-ubyte.gz"), y.numpy())
        write_idx(os.path.join(a.write_subset, "t10k-labels-idx1-ubyte.gz"), ty.numpy())
        print(f"wrote {len(x)} training and {len(tx)} test examples to {a.write_subset}", file=sys.stderr)
        return
    t = Trainer(x, y, tx, ty, a.arch)
    if a.bench:
        t.quiet = True
        bench(t, a)
        return
    print(f"pytorch-mnist trainer: {len(x)} training, {len(tx)} test examples, torch {torch.__version__}", file=sys.stderr)
    st.serve(t.layout(), t.train, t.evaluate, examples=len(x), test_examples=len(tx))


def bench(t, a):
    """The in-process baseline: the same train() per round, from and to
    numpy weights, with nothing crossing a process boundary."""
    torch.manual_seed(a.seed)
    w = {k: v.numpy().copy() for k, v in cnn(side=t.x.shape[-1]).state_dict().items()}
    times = []
    for r in range(a.bench):
        req = st.Train({"round": r + 1, "epochs": a.epochs, "batch": a.batch, "lr": a.lr, "seed": 1000 + r})
        t0 = time.perf_counter()
        t.train(w, req)
        times.append(time.perf_counter() - t0)
    print(" ".join(f"{s:.4f}" for s in times))


if __name__ == "__main__":
    main()
