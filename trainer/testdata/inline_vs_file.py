# Measures, for a model of the FedAvg CNN's size (1,663,370 float32), one
# round trip of the tensors through a safetensors file vs inline base64 JSON,
# as seen by a Python trainer (docs/trainer-protocol.md, "Why files").
# Run: /usr/bin/python3 trainer/testdata/inline_vs_file.py
import numpy as np, json, base64, time, os, struct, tempfile
n = 1663370
x = np.random.rand(n).astype(np.float32)
d = tempfile.mkdtemp()
def file_rt():
    p = os.path.join(d, "m.safetensors")
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4*n]}}).encode()
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", len(hdr))); f.write(hdr); f.write(x.tobytes())
    with open(p, "rb") as f:
        b = f.read()
    h = struct.unpack("<Q", b[:8])[0]
    y = np.frombuffer(b[8+h:], dtype=np.float32)
    return y
def inline_rt():
    s = json.dumps({"w": base64.b64encode(x.tobytes()).decode()})
    y = np.frombuffer(base64.b64decode(json.loads(s)["w"]), dtype=np.float32)
    return y
for f in (file_rt, inline_rt):
    ts = []
    for _ in range(20):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    ts.sort(); print(f.__name__, "median ms %.2f" % (1000*ts[10]))
