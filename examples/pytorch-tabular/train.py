#!/usr/bin/env python3
"""An MLP in PyTorch on a CSV file with a label column, as a Sovereign
trainer (docs/trainer-protocol.md).

    python3 train.py --features 64 --classes 10 --hidden 32 --write-init init.safetensors
    python3 train.py --data cohort.csv --label outcome --classes 2 --hidden 32

The CSV has a header row; every column but the label is a numeric feature,
the label is an integer class in [0, classes). A seeded --test-fraction of
the rows is kept for evaluation. The network is torch.nn.Sequential of
Linear/ReLU layers with exactly the tensors of Sovereign's built-in
"mlp:H1,H2,..." spec (docs/trainer-protocol.md), so built-in workers on
csv: data and this trainer can share a federation.

Features are used as they are in the file: a federation that standardises
must do it the same way at every site (e.g. the federation's statistics,
docs/data-schema.md), not with each site's own mean.
"""

import argparse
import csv
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import sovereign_trainer as st  # noqa: E402


def mlp(features, hidden, classes):
    layers, prev = [], features
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    layers.append(nn.Linear(prev, classes))
    return nn.Sequential(*layers)


def load_csv(path, label, classes):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], [r for r in rows[1:] if r]
    if label not in header:
        raise SystemExit(f"train.py: {path}: no column {label!r} in the header {header}")
    li = header.index(label)
    x = np.array([[float(v) for j, v in enumerate(r) if j != li] for r in rows], dtype=np.float32)
    y = np.array([int(float(r[li])) for r in rows], dtype=np.int64)
    bad = np.nonzero((y < 0) | (y >= classes))[0]
    if len(bad):
        raise SystemExit(f"train.py: {path}: line {bad[0] + 2}: label {y[bad[0]]} outside [0, {classes})")
    return x, y


class Trainer:
    def __init__(self, x, y, tx, ty, hidden, classes):
        self.x, self.y, self.tx, self.ty = x, y, tx, ty
        self.net = mlp(x.shape[1], hidden, classes)

    def layout(self):
        return {k: tuple(v.shape) for k, v in self.net.state_dict().items()}

    def load(self, weights):
        self.net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)

    def train(self, weights, req):
        """FedAvg's ClientUpdate (McMahan et al. 2017); FedProx (Li et al. 2020) when μ > 0."""
        self.load(weights)
        idx = torch.arange(len(self.x)) if req.indices is None else torch.tensor(req.indices, dtype=torch.int64)
        g = torch.Generator().manual_seed(req.seed)
        opt = torch.optim.SGD(self.net.parameters(), lr=req.lr)
        anchor = [p.detach().clone() for p in self.net.parameters()] if req.prox_mu > 0 else None
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
        return {k: v.detach().numpy() for k, v in self.net.state_dict().items()}, len(idx), total / max(n, 1)

    @torch.no_grad()
    def evaluate(self, weights, indices):
        self.load(weights)
        if indices is None:
            x, y = self.tx, self.ty
        else:
            i = torch.tensor(indices, dtype=torch.int64)
            x, y = self.x[i], self.y[i]
        if len(x) == 0:
            return 0, 0.0, 0.0
        logits = self.net(x)
        return len(x), F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="CSV file with a header row")
    ap.add_argument("--label", default="label", help="label column (default label)")
    ap.add_argument("--classes", type=int, required=True)
    ap.add_argument("--hidden", default="32", help="hidden widths, comma-separated (the spec mlp:H1,...)")
    ap.add_argument("--features", type=int, help="number of features (--write-init only)")
    ap.add_argument("--test-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--write-init", metavar="FILE", help="write the seeded initial model and exit")
    a = ap.parse_args()
    torch.set_num_threads(1)
    hidden = [int(h) for h in a.hidden.split(",") if h]
    if a.write_init:
        if not a.features:
            ap.error("--write-init needs --features")
        torch.manual_seed(a.seed)
        st.write_safetensors(a.write_init, {k: v.numpy() for k, v in mlp(a.features, hidden, a.classes).state_dict().items()},
                             {"format": "pt", "written_by": "examples/pytorch-tabular/train.py"})
        return
    if not a.data:
        ap.error("--data is required")
    x, y = load_csv(a.data, a.label, a.classes)
    perm = np.random.default_rng(a.seed).permutation(len(x))
    nt = int(round(a.test_fraction * len(x)))
    te, tr = perm[:nt], perm[nt:]
    t = Trainer(torch.from_numpy(x[tr]), torch.from_numpy(y[tr]), torch.from_numpy(x[te]), torch.from_numpy(y[te]), hidden, a.classes)
    print(f"pytorch-tabular trainer: {len(tr)} training, {len(te)} test rows of {x.shape[1]} features", file=sys.stderr)
    st.serve(t.layout(), t.train, t.evaluate, examples=len(tr), test_examples=len(te))


if __name__ == "__main__":
    main()
