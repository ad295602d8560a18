#!/usr/bin/env bash
# A whole federation on this machine (loopback): one coordinator and three
# workers whose trainer is train.py, each on its own 600 MNIST images, for
# five securely aggregated rounds of the PyTorch CNN. It writes every file
# into FOLDER (default federation-demo/), prints the coordinator's status
# after each round and stops everything at the end.
#
#   ./local-federation.sh [FOLDER]        PYTHON=/usr/bin/python3 to choose the interpreter
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PYTHON:-python3}"
dir="${1:-federation-demo}"
rounds=5
mkdir -p "$dir"
cd "$dir"
(cd "$root" && go build -o "$OLDPWD/sovereign" ./cmd/sovereign)
"$py" "$here/train.py" --write-init init.safetensors --seed 1

for n in coord ops hospital-0 hospital-1 hospital-2; do
	[ -f "$n.key" ] || ./sovereign keygen --out "$n.key" >"$n.peer"
done
cat >federation.toml <<TOML
name = "pytorch-mnist-demo"

[[member]]
name = "coord"
peer_id = "$(cat coord.peer)"
role = "coordinator"
addrs = ["/ip4/127.0.0.1/tcp/4601"]

[[member]]
name = "ops"
peer_id = "$(cat ops.peer)"
role = "observer"
TOML
for i in 0 1 2; do
	cat >>federation.toml <<TOML

[[member]]
name = "hospital-$i"
peer_id = "$(cat hospital-$i.peer)"
role = "worker"
TOML
	cat >hospital-$i.toml <<TOML
name = "hospital-$i"
identity = "hospital-$i.key"
federation = "federation.toml"
listen = ["/ip4/127.0.0.1/tcp/0"]
store = "hospital-$i-store"
# The institution's own code trains; the worker keeps policy, clipping,
# noise, SecAgg+ masking and the network.
trainer = ["$py", "$here/train.py", "--data", "$root/data/mnist", "--offset", "$((600 * i))", "--limit", "600", "--test-limit", "200"]
trainer_timeout = "10m"

[policy]
accepted_models = ["cnn"]
TOML
done
cat >coordinator.toml <<TOML
name = "coord"
identity = "coord.key"
federation = "federation.toml"
listen = ["/ip4/127.0.0.1/tcp/4601"]
data = "coord-data"

[rounds]
model = "cnn"
input = [1, 28, 28]
classes = 10
init = "init.safetensors"      # written by train.py --write-init
rounds = $rounds
workers_per_round = 3
min_workers = 2
epochs = 1
batch = 10
lr = 0.05
clip_range = 3.0
max_weight = 1000
stage_timeout = "2m"
TOML

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
./sovereign coordinator --config coordinator.toml 2>coord.log & pids+=($!)
for i in 0 1 2; do
	./sovereign worker --config hospital-$i.toml 2>hospital-$i.log & pids+=($!)
done
echo "coordinator and three workers started in $PWD (logs: *.log)"
# committed_rounds, or -1 while the coordinator does not answer; with
# "show", a one-line summary.
status() {
	./sovereign status --federation federation.toml --identity ops.key --json --timeout 5s 2>/dev/null |
		"$py" -c "
import json, sys
try:
    s = json.load(sys.stdin)[0]
except Exception:
    print(-1); sys.exit()
if sys.argv[1] == 'show':
    print('committed rounds %d, federated accuracy %.3f (round %d), %d workers online'
          % (s['committed_rounds'], s.get('accuracy') or 0, s.get('accuracy_round') or 0, len(s.get('online') or [])))
else:
    print(s['committed_rounds'])
" "$1" || echo -1
}
last=-1
for _ in $(seq 1 600); do
	sleep 1
	n="$(status count)"
	if [ "$n" != "$last" ] && [ "$n" -ge 0 ]; then
		status show
		last="$n"
	fi
	if [ "$n" -ge "$rounds" ]; then
		sleep 2
		status show
		exit 0
	fi
done
echo "timed out; see the logs in $PWD" >&2
exit 1
