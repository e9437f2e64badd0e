#!/usr/bin/env bash
# Everything a GPU session runs, in one command (the device tool's machines start bare and are
# lent for minutes, so one full call beats many small ones):
#   1. gymnasium from the wheels carried in .whl/ (that image has torch, but no gymnasium),
#   2. fastrl built with its CUDA kernels against the machine's torch,
#   3. the op and environment tests (the `cuda`-marked ones run there; the trainers' tests need
#      packages that image lacks, and run on CI),
#   4. the CUDA benchmarks (GAE, environments, fused PPO loss),
# leaving logs and pytest-benchmark JSON named by GPU in $OUT (default: bench/results/gpu).
#
# From a session with a GPU, after `mkdir -p .whl && cp ../shared/wheels/*.whl .whl/`:
#   run(command="OUT=$OUT bash bench/gpu.sh", carry=[".whl"], timeout_s=600)
# then copy the JSON from the returned files into bench/results/ and commit it.
set -euo pipefail

OUT=${OUT:-bench/results/gpu}
PY=${PYTHON:-python3}
ARCH=${TORCH_CUDA_ARCH_LIST:-9.0}
mkdir -p "$OUT"

deps=$(mktemp -d)
"$PY" -m pip install --quiet --no-index --no-deps --target "$deps" .whl/*.whl
export PYTHONPATH="$deps${PYTHONPATH:+:$PYTHONPATH}"

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -cd '[:alnum:]-')
echo "gpu: $gpu, torch $("$PY" -c 'import torch; print(torch.__version__)')"

FASTRL_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" \
  "$PY" -m pip install --quiet --no-build-isolation --no-deps -e . 2>&1 | tail -20
"$PY" -m fastrl info | tee "$OUT/info-$gpu.txt"

status=0
"$PY" -m pytest tests/ops tests/envs -q -p no:cacheprovider 2>&1 | tail -40 | tee "$OUT/tests-$gpu.txt" \
  || status=1

for family in returns envs ppo_loss minatar; do
  "$PY" -m pytest "bench/bench_$family.py" --benchmark-only -q -p no:cacheprovider -m cuda \
    --benchmark-columns=median --benchmark-json "$OUT/$family-$gpu.json" 2>&1 | tail -30 || status=1
done
# The tables and charts of bench/README.md's format, from the JSON just written.
"$PY" bench/report.py "$OUT"/*-"$gpu".json --png "$OUT" 2>&1 | tee "$OUT/report-$gpu.md" || status=1
exit $status
