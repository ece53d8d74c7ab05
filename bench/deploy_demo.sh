#!/usr/bin/env bash
# One-command local demo of the deployed mode, on one machine, through the real CLIs:
# a consortium home and a SuperLink with TLS + node authentication, four hospitals that each
# create their keys, are enrolled and start a SuperNode, then a 2-round DP-SGD + SecAgg+ run.
# Everything listens on 127.0.0.1 and is stopped on exit (also on Ctrl-C or an error).
#
#   bench/deploy_demo.sh [ROUNDS]        (default 2; keeps nothing: work dir is a temp dir)
set -euo pipefail
ROUNDS="${1:-2}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$(command -v python)}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
WORK="$(mktemp -d -t consortium-demo-XXXXXX)"
SITES=(cleveland hungary long_beach switzerland)
DATA="$ROOT/site_node/data/examples/heart-disease"   # one file per hospital

consortium() { "$PY" -m consortium "$@"; }
site_node() { "$PY" -c 'from site_node.cli import main; main()' "$@"; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SERVE_PID=""
cleanup() {
  set +e
  for s in "${SITES[@]}"; do
    f="$WORK/sites/$s/status.json"
    [[ -f $f ]] || continue
    for pid in $("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("pid") or "", d.get("launcher_pid") or "")' "$f"); do
      kill -TERM "$pid" 2>/dev/null
    done
  done
  [[ -n $SERVE_PID ]] && kill -TERM "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  echo "demo files kept in $WORK"
}
trap cleanup EXIT

PORT="$(free_port)"
echo "== coordinator: consortium init (SuperLink on 127.0.0.1:$PORT)"
# One home for the coordinator: run store (with the audit log that enrolment writes to),
# consortium key, CA and SuperLink settings.
export HOSPITAL_CONSORTIUM_HOME="$WORK/consortium"
consortium init --port "$PORT"
"$PY" -m consortium serve > "$WORK/serve.log" 2>&1 &  # not the function: $! must be the server
SERVE_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.2; done

for s in "${SITES[@]}"; do
  echo "== site $s: site-node init"
  site_node init --site-id "$s" --home "$WORK/sites/$s"
  echo "== coordinator: consortium enroll $s"
  consortium enroll "$s" --node-key "$WORK/sites/$s/node.pub" --receipt-key "$WORK/sites/$s/state/receipt-key.pub.pem"
  echo "== site $s: site-node start"
  site_node start --home "$WORK/sites/$s" --superlink "localhost:$PORT" \
    --ca-cert "$HOSPITAL_CONSORTIUM_HOME/tls/ca.crt" --data "$DATA/$s.csv" \
    --task "$HOSPITAL_CONSORTIUM_HOME/task.yaml" --port "$(free_port)" --detach
done
consortium sites

echo "== coordinator: consortium submit --rounds $ROUNDS"
consortium submit --rounds "$ROUNDS"
consortium audit verify
consortium export | "$PY" -c '
import json, sys
run = json.load(sys.stdin)
print(json.dumps({k: run.get(k) for k in ("run_id", "status", "engine", "mode", "rounds_planned")}, indent=1))'
site_node status --home "$WORK/sites/cleveland"
