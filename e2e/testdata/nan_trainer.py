#!/usr/bin/env python3
"""A trainer (docs/trainer-protocol.md) with the FedAvg CNN's layout whose
every local model holds a NaN: the worker must refuse each round it is
sampled in, naming the tensor (e2e/trainer_test.go). numpy only."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import sovereign_trainer as st  # noqa: E402

LAYOUT = {
    "0.weight": (32, 1, 5, 5), "0.bias": (32,), "3.weight": (64, 32, 5, 5), "3.bias": (64,),
    "7.weight": (512, 3136), "7.bias": (512,), "9.weight": (10, 512), "9.bias": (10,),
}


def train(w, req):
    print(f"round {req.round}: answering a NaN", file=sys.stderr, flush=True)
    w["0.weight"].flat[0] = float("nan")
    return w, 600, 0.5


def evaluate(w, indices):
    return 0, 0.0, 0.0


st.serve(LAYOUT, train, evaluate, examples=600, test_examples=0)
