#!/usr/bin/env bash
# The GPU checks of issue 10 as one prepared script, for a session lent a GPU machine (the
# device tool gives ~15 minutes, start-up included, so everything that needs the card runs in one
# call):
#
#   bash ../shared/tools/gpu-bundle.sh                      # here, once: .gpu/site.tar.xz
#   run(command="bash benchmarks/gpu_check.sh", carry=[".gpu"], timeout_s=540)
#
# 1. the trainer's tests on the card (the trainer picks CUDA when there is one; the seed and
#    resume tests check determinism there, `study.trial.trainer.arrange_determinism`);
# 2. the loader benchmark on the card: digits/s of the seed AE and CAE at batch 64;
# 3. quick.yaml with 8 trials packed on the GPU: lanes busy and evaluation's share per model type.
# Each step's output goes to $OUT (the device tool's folder that comes back) or ./gpu-check.
# Not built yet, so not measured here: a captured (CUDA graphs / torch.compile) training step.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check}
mkdir -p "$OUT"
if [ -f .gpu/site.tar.xz ]; then  # Ray, Optuna and MLflow for a Python that has torch only
    mkdir -p /tmp/site && tar -xJf .gpu/site.tar.xz -C /tmp/site
    export PYTHONPATH=/tmp/site:$PWD
fi
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONUNBUFFERED=1 AESTUDY_HOME=${AESTUDY_HOME:-$(mktemp -d)}

$PY - <<'EOF' 2>&1 | tee "$OUT/machine.txt" || exit 2
import os, torch
assert torch.cuda.is_available(), "no CUDA device: this script measures a GPU (see docs/performance.md)"
print(torch.cuda.get_device_name(), "| torch", torch.__version__, "| CPUs", os.cpu_count())
EOF
step() {  # step NAME SECONDS COMMAND...: one check, its output kept, a timeout so the rest still runs
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]}" | tee -a "$OUT/$name.txt"
}
step tests 150 $PY -m pytest -q -x -m "not slow" -p no:cacheprovider tests/test_trainer.py tests/test_models.py
step loader 120 $PY benchmarks/loader_throughput.py --device cuda --rounds 3
step packed-sweep 240 $PY benchmarks/sweep_overhead.py --rounds 1 --lanes 8 --gpus-per-trial 0.125 \
    --space search_spaces/quick.yaml
