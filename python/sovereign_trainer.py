"""The trainer side of Sovereign's trainer protocol (docs/trainer-protocol.md).

One file, numpy only. A trainer script builds its model and data, then calls
serve() with three things: its tensor layout, a train function and an
evaluate function. serve() answers the worker's (or the simulator's)
requests on stdin/stdout until stdin ends:

    import sovereign_trainer as st

    def train(weights, req):          # weights: dict name -> np.ndarray (float32)
        ...                           # req: Train (epochs, batch, lr, prox_mu, seed, indices, round)
        return new_weights, examples, mean_loss

    def evaluate(weights, indices):   # indices: None (local test set) or a list (simulator)
        return examples, mean_loss, accuracy

    st.serve(layout, train, evaluate, examples=len(train_set), test_examples=len(test_set))

layout is a dict name -> shape (or name -> array), in the model's order
(e.g. {k: tuple(v.shape) for k, v in model.state_dict().items()}).

The worker computes the update, clips, noises and masks it; this code never
sees keys, other institutions or the network. Anything printed (to stdout
too: serve() points file descriptor 1 at stderr) ends up in the worker's
local log.

read_safetensors / write_safetensors read and write the F32 safetensors
files the protocol uses, without the safetensors package.
"""

import json
import os
import struct
import sys
import time
import traceback

import numpy as np

PROTOCOL = 1
MAX_FRAME = 16 << 20

__all__ = ["serve", "Train", "read_safetensors", "write_safetensors", "PROTOCOL"]


def read_safetensors(path):
    """Returns (dict name -> float32 ndarray, metadata dict) of a safetensors file."""
    with open(path, "rb") as f:
        b = f.read()
    if len(b) < 8:
        raise ValueError(f"{path}: {len(b)} bytes, too short for a safetensors file")
    (h,) = struct.unpack("<Q", b[:8])
    if h > 100 << 20 or 8 + h > len(b):
        raise ValueError(f"{path}: header length {h} does not fit the file of {len(b)} bytes")
    header = json.loads(b[8 : 8 + h].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    data = memoryview(b)[8 + h :]
    out = {}
    for name, e in header.items():
        if e.get("dtype") != "F32":
            raise ValueError(f"{path}: tensor {name!r}: dtype {e.get('dtype')!r}, want F32")
        lo, hi = e["data_offsets"]
        shape = tuple(e["shape"])
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if hi - lo != 4 * n or hi > len(data):
            raise ValueError(f"{path}: tensor {name!r}: offsets {lo}..{hi} do not fit shape {shape}")
        out[name] = np.frombuffer(data[lo:hi], dtype="<f4").reshape(shape).copy()
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """Writes dict name -> array (converted to float32) as a safetensors file, in the dict's order."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(np.asarray(a, dtype="<f4"))
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


class Train:
    """The settings of one train request."""

    def __init__(self, m):
        self.round = int(m.get("round", 0))
        self.epochs = int(m["epochs"])
        self.batch = int(m["batch"])
        self.lr = float(m["lr"])
        self.prox_mu = float(m.get("prox_mu", 0.0))
        self.seed = int(m.get("seed", 0))
        self.indices = m.get("indices")  # None: all local examples

    def __repr__(self):
        n = "all" if self.indices is None else len(self.indices)
        return f"Train(round={self.round}, epochs={self.epochs}, batch={self.batch}, lr={self.lr}, prox_mu={self.prox_mu}, seed={self.seed}, examples={n})"


def _read_frame(r):
    hdr = r.read(4)
    if len(hdr) < 4:
        return None
    (n,) = struct.unpack(">I", hdr)
    if n > MAX_FRAME:
        raise ValueError(f"frame of {n} bytes exceeds {MAX_FRAME}")
    b = r.read(n)
    if len(b) < n:
        return None
    return json.loads(b.decode("utf-8"))


def _write_frame(w, obj):
    b = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    w.write(struct.pack(">I", len(b)) + b)
    w.flush()


def serve(layout, train, evaluate, examples, test_examples=0, stdin=None, stdout=None):
    """Answers requests until stdin ends. See the module's doc."""
    if stdout is None:
        # Keep the real stdout for frames; everything else written to
        # file descriptor 1 (print, C libraries) goes to stderr.
        fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        stdout = os.fdopen(fd, "wb", buffering=0)
    if stdin is None:
        stdin = sys.stdin.buffer
    tensors = [
        {"name": k, "shape": [int(d) for d in (v.shape if hasattr(v, "shape") else v)], "dtype": "F32"}
        for k, v in layout.items()
    ]
    while True:
        m = _read_frame(stdin)
        if m is None:
            return
        kind, rid = m.get("type"), m.get("id")
        try:
            if kind == "hello":
                if m.get("protocol") != PROTOCOL:
                    raise ValueError(f"worker speaks protocol {m.get('protocol')}, this helper {PROTOCOL}")
                ans = {"type": "hello", "id": rid, "protocol": PROTOCOL, "tensors": tensors,
                       "examples": int(examples), "test_examples": int(test_examples)}
            elif kind == "train":
                weights, _ = read_safetensors(m["model"])
                t0 = time.perf_counter()
                new, n, loss = train(weights, Train(m))
                secs = time.perf_counter() - t0
                write_safetensors(m["out"], {t["name"]: new[t["name"]] for t in tensors})
                ans = {"type": "train_result", "id": rid, "examples": int(n), "loss": float(loss), "train_seconds": secs}
            elif kind == "evaluate":
                weights, _ = read_safetensors(m["model"])
                n, loss, acc = evaluate(weights, m.get("indices"))
                ans = {"type": "evaluate_result", "id": rid, "examples": int(n), "loss": float(loss), "accuracy": float(acc)}
            else:
                raise ValueError(f"unknown request type {kind!r}")
        except Exception as e:  # reported to the worker, which refuses the round
            traceback.print_exc(file=sys.stderr)
            ans = {"type": "error", "id": rid, "message": f"{type(e).__name__}: {e}"}
        _write_frame(stdout, ans)


def read_idx(path):
    """Reads an IDX file (optionally .gz) as an ndarray (MNIST's format)."""
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        b = f.read()
    zero, dtype, ndim = b[0] << 8 | b[1], b[2], b[3]
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    dims = struct.unpack(">" + "I" * ndim, b[4 : 4 + 4 * ndim])
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
