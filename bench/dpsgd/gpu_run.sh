#!/usr/bin/env bash
# One-shot GPU run: the product's GPU tests, the site's mode selector on CUDA (TF32 as the
# device has it), then the DP-SGD mode benchmark at batch 512. ~9-11 minutes on one H200; every
# step has its own timeout, so a hang cannot eat a 15-minute device budget.
#
#   OUT=/some/dir PYTHON=/path/to/python bash bench/dpsgd/gpu_run.sh
#
# Needs a CUDA build of torch (>= 2.11) + opacus 1.6 + matplotlib + psutil + pytest in $PYTHON
# (this repo's CPU venv sees no GPU). The lent GPU machines' image has torch, matplotlib, psutil
# and pytest but no Opacus: carry its wheel. On this machine, once, in the repository root:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl opacus==1.6.0
#
# then run `bash bench/dpsgd/gpu_run.sh` with `.whl` in the device tool's `carry` (Opacus' other
# requirements are in the image). The script installs every wheel under .whl/ into /tmp/site
# (no index, no dependencies) when the Python cannot import opacus.
#
# Writes under $OUT (at most 8 files come back): env.txt, gpu_tests.log (the tests that skip
# without CUDA: the selector on CUDA with TF32, device resolution), product_select.json (the
# site's own selector, site_node.grad_mode.choose, on the GroupNorm CNN and ResNet-18-GN with
# TF32 on: the chosen mode, each mode's step time or refusal), dp_modes.json/.png/.jsonl
# (GroupNorm CNN 1x64x64 and ResNet-18-class 3x128x128, modes plain/hooks/ghost/functorch/ew/bk/bk-site,
# wall-clock throughput, torch.cuda.max_memory_allocated), select_mode.json (the bench's
# selector at batch 512).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-bench/dpsgd/results/gpu}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
if ! "$PY" -c "import opacus" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

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

# 0. the product's tests that need CUDA (they skip on a CPU); --noconftest: the suite's conftest
#    imports the server's packages, which the GPU image lacks (~1 minute).
timeout 120 "$PY" -m pytest -q -p no:cacheprovider --noconftest -o addopts="" \
  tests/site_node/test_grad_mode.py tests/site_node/test_device.py > "$OUT/gpu_tests.log" 2>&1
echo "gpu tests exit $?"; tail -n 3 "$OUT/gpu_tests.log"

# 0b. the site's own selector on CUDA, TF32 left as the device has it (~1-2 minutes).
timeout 150 "$PY" - "$OUT" > "$OUT/product_select.log" 2>&1 <<'EOF'
import json, sys, time
from pathlib import Path
import torch
from site_node import grad_mode, precision
from site_node.resnet import ResNet18GN
sys.path.insert(0, "bench/dpsgd")
from models import GroupNormCNN
gpu = torch.device("cuda", 0)
out = {"tf32_cudnn": torch.backends.cudnn.allow_tf32,
       "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
       "training_precision": precision.training_precision(gpu)}
for name, model, shape in (("cnn", GroupNormCNN(1, 10, 64), (1, 64, 64)),
                           ("resnet18gn", ResNet18GN(3, 10, 128), (3, 128, 128))):
    x = torch.randn(64, *shape, device=gpu)
    y = torch.arange(64, device=gpu) % 10
    t0 = time.perf_counter()
    try:
        mode, seen = grad_mode.choose(model, x, y)
        out[name] = {"selected": mode, "seconds": time.perf_counter() - t0, "seen": seen}
    except Exception as exc:
        out[name] = {"error": str(exc)}
    print(name, out[name], flush=True)
out["flags_after"] = [torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32]
Path(sys.argv[1], "product_select.json").write_text(json.dumps(out, indent=1, default=str))
EOF
echo "product selector exit $?"; tail -n 3 "$OUT/product_select.log"

# 1. the benchmark: 2 configs x 7 modes (+ reference norms), one fresh process each,
#    3 warm-up steps + >= 3 s timed (>= 3 steps) per mode; ~5 minutes.
timeout 390 "$PY" bench/dpsgd/dp_modes.py --device cuda --batch 512 \
  --configs cnn:1:64,resnet18:3:128 --warmup 3 --min-time 3 --repeats 1 --timeout 150 \
  --out "$OUT" > "$OUT/dp_modes.jsonl" 2> "$OUT/dp_modes.err"
echo "dp_modes exit $?"
tail -n 3 "$OUT/dp_modes.err"

# 2. what the site's selector picks on this GPU at batch 512 (~1 minute).
timeout 90 "$PY" - "$OUT" > "$OUT/select_mode.log" 2>&1 <<'EOF'
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
