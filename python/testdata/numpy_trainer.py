#!/usr/bin/env python3
"""A numpy-only trainer for the helper's own test (trainer/python_test.go):
softmax regression of 4 features and 3 classes on 30 seeded rows, trained
with plain minibatch SGD. A stray print() must not break the protocol."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import sovereign_trainer as st  # noqa: E402

rng = np.random.default_rng(0)
X = rng.normal(size=(30, 4)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)


def forward(w, x):
    z = x @ w["0.weight"].T + w["0.bias"]
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


def train(w, req):
    print("training", req)  # goes to stderr
    idx = np.arange(len(X)) if req.indices is None else np.array(req.indices)
    r = np.random.default_rng(req.seed)
    loss = 0.0
    for _ in range(req.epochs):
        perm = r.permutation(idx)
        for b in range(0, len(perm), req.batch):
            bi = perm[b : b + req.batch]
            p = forward(w, X[bi])
            loss += -np.log(p[np.arange(len(bi)), Y[bi]] + 1e-12).sum()
            p[np.arange(len(bi)), Y[bi]] -= 1
            w["0.weight"] -= req.lr * (p.T @ X[bi]) / len(bi)
            w["0.bias"] -= req.lr * p.mean(0)
    return w, len(idx), loss / (len(idx) * req.epochs)


def evaluate(w, indices):
    idx = np.arange(20, 30) if indices is None else np.array(indices)
    p = forward(w, X[idx])
    return len(idx), float(-np.log(p[np.arange(len(idx)), Y[idx]] + 1e-12).mean()), float((p.argmax(1) == Y[idx]).mean())


st.serve({"0.weight": (3, 4), "0.bias": (3,)}, train, evaluate, examples=30, test_examples=10)
