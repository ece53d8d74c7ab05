#!/usr/bin/env bash
# One-shot GPU run of the DP-SGD mode benchmark: batch 512 on CUDA, ~6-8 minutes on one H200.
#
#   OUT=/some/dir PYTHON=/path/to/python bash bench/dpsgd/gpu_run.sh
#
# Needs a CUDA build of torch 2.13 + opacus 1.6 + matplotlib + psutil in $PYTHON (this repo's
# CPU venv will not see a GPU). Writes under $OUT: dp_modes.json/.png/.jsonl (GroupNorm CNN
# 1x64x64 and ResNet-18-class 3x128x128, modes plain/hooks/ghost/functorch/ew/bk, wall-clock
# throughput, torch.cuda.max_memory_allocated), select_mode.json (the selector's choice on
# CUDA at batch 512), env.txt. Every step has its own timeout, so a hang cannot eat the budget.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-bench/dpsgd/results/gpu}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  "$PY" -c "import torch, opacus; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'available', torch.cuda.is_available()); print('opacus', opacus.__version__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device visible to $PY: nothing to do" >&2
  exit 2
fi

# 1. the benchmark: 2 configs x 6 modes (+ reference norms), one fresh process each,
#    3 warm-up steps + >= 3 s timed (>= 3 steps) per mode; ~5 minutes.
timeout 420 "$PY" bench/dpsgd/dp_modes.py --device cuda --batch 512 \
  --configs cnn:1:64,resnet18:3:128 --warmup 3 --min-time 3 --repeats 1 --timeout 150 \
  --out "$OUT" > "$OUT/dp_modes.jsonl" 2> "$OUT/dp_modes.err"
echo "dp_modes exit $?"
tail -n 3 "$OUT/dp_modes.err"

# 2. what the site's selector picks on this GPU at batch 512 (~1 minute).
timeout 150 "$PY" - "$OUT" > "$OUT/select_mode.log" 2>&1 <<'EOF'
import json, sys, time
from dataclasses import asdict
from pathlib import Path
import torch
sys.path.insert(0, "bench/dpsgd")
from models import build_model
from mode_select import MODES, PROTOTYPE_MODES, select_mode

out = {}
for name, ch, size in (("cnn", 1, 64), ("resnet18", 3, 128)):
    torch.manual_seed(0)
    model = build_model(name, in_channels=ch, image_size=size).cuda()
    x = torch.randn(512, ch, size, size, device="cuda")
    y = torch.randint(0, 10, (512,), device="cuda")
    t0 = time.perf_counter()
    mode, timings = select_mode(model, (x, y), MODES + PROTOTYPE_MODES, steps=3)
    out[name] = {"selected": mode, "seconds": time.perf_counter() - t0,
                 "timings": {m: asdict(t) for m, t in timings.items()}}
    print(name, mode, {m: t.step_s for m, t in timings.items()}, flush=True)
    del model, x, y
    torch.cuda.empty_cache()
Path(sys.argv[1], "select_mode.json").write_text(json.dumps(out, indent=1))
EOF
echo "select_mode exit $?"
cat "$OUT/select_mode.log" | tail -n 5
