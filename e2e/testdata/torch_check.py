"""Loads a sovereign model.safetensors into the equivalent torch.nn.Sequential
with load_state_dict(strict=True), predicts the first N MNIST test images and
compares with `sovereign predict`'s CSV: every class equal, every probability
within 1e-4. Reads safetensors with a few lines of struct/json/numpy (the
format: 8-byte little-endian header length, JSON header, raw data), so it
needs only Debian's python3-torch and python3-numpy.

usage: torch_check.py MODEL.safetensors PREDICTIONS.csv T10K-IMAGES.gz N
"""
import gzip, json, struct, sys
import numpy as np
import torch
from torch import nn


def load_safetensors(path):
    with open(path, "rb") as f:
        b = f.read()
    (n,) = struct.unpack("<Q", b[:8])
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = b[8 + n:]
    tensors = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", (name, e["dtype"])
        lo, hi = e["data_offsets"]
        arr = np.frombuffer(data[lo:hi], dtype="<f4").reshape(e["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, meta


def build(meta):
    spec = meta["model"]
    c, h, w = json.loads(meta["input_shape"])
    k = int(meta["classes"])
    if spec == "2nn":
        return nn.Sequential(nn.Linear(c * h * w, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, k)), True
    if spec == "cnn":
        return nn.Sequential(
            nn.Conv2d(c, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (h // 4) * (w // 4), 512), nn.ReLU(), nn.Linear(512, k)), False
    raise SystemExit("unsupported model " + spec)


def mnist_images(path, n):
    with gzip.open(path, "rb") as f:
        b = f.read()
    magic, count, rows, cols = struct.unpack(">IIII", b[:16])
    assert magic == 2051
    x = np.frombuffer(b[16:16 + n * rows * cols], dtype=np.uint8).astype(np.float32) / 255.0
    return torch.from_numpy(x.reshape(n, 1, rows, cols))


def main():
    model_path, csv_path, images, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    tensors, meta = load_safetensors(model_path)
    net, flat = build(meta)
    net.load_state_dict(tensors, strict=True)
    net.eval()
    x = mnist_images(images, n)
    if flat:
        x = x.flatten(1)
    with torch.no_grad():
        p = torch.softmax(net(x).double(), dim=1).numpy()
    rows = np.loadtxt(csv_path, delimiter=",", skiprows=1, max_rows=n)
    assert rows.shape[0] == n, rows.shape
    idx, pred, probs = rows[:, 0].astype(int), rows[:, 1].astype(int), rows[:, 2:]
    assert (idx == np.arange(n)).all()
    torch_pred = p.argmax(axis=1)
    bad = np.nonzero(torch_pred != pred)[0]
    if len(bad):
        raise SystemExit("class differs on %d of %d images, first at %d: torch %d, sovereign %d" % (len(bad), n, bad[0], torch_pred[bad[0]], pred[bad[0]]))
    diff = np.abs(p - probs).max()
    if diff > 1e-4:
        raise SystemExit("probabilities differ by up to %g (> 1e-4)" % diff)
    print("OK %s %s: %d images, same classes, max probability difference %.3g" % (meta["model"], model_path, n, diff))


main()
