#!/usr/bin/env bash
# Everything a GPU session runs, in one command: the device tool's machines start bare, are lent
# for minutes, and return at most 8 files, so the run must succeed at its first try and keep what
# it did even when killed at its limit. In order, each step's full output in $OUT:
#   1. preflight.txt  seconds: GPU, nvcc / cmake / g++ / torch / CUDA versions, Python.h, the
#                     carried wheels; stops at the first thing missing;
#   2. build.log      fastrl._C built with CMake straight into build/gpu (nothing installed into
#                     the image's venv: fastrl imports from the source tree through PYTHONPATH,
#                     its _C from build/gpu through FASTRL_EXTENSION, as make test-sanitize does),
#                     then a hard check that it loaded with its CUDA kernels and sees the GPU
#                     (tools/check_cuda_build.py): a failed build never runs as the fallback;
#   3. bench.log      first the CUDA tests (`-m cuda`: every device-parametrized case on cuda),
#                     then the benchmarks' output (one log for both: 8 files come back, and the
#                     five JSON files below need five of them);
#   4. <family>-<GPU>.json: returns, envs, MinAtar, the trainers' CUDA throughput, then the
#                     fused PPO loss (its torch.compile baselines are the slowest), each under
#                     `timeout` against one deadline (BUDGET_S, 480 s from the start), so the
#                     JSON written before a kill is kept.
# Exit status: the first failure's (tests and benchmarks still run after a test failure).
#
# From a session with a GPU, after
#   mkdir -p .whl && cp ../shared/wheels/*.whl .whl/ && .venv/bin/python -m pip download --no-deps -d .whl tqdm
# (the shared wheels lack tqdm, which the trainers import: bench_train.py needs it):
#   run(command="OUT=$OUT bash bench/gpu.sh", carry=[".whl"], timeout_s=600)
# then copy the JSON from the returned files into bench/results/ and commit it.
#
# --dry-run: the preflight (no GPU needed) and the build and load check, without the GPU parts;
# `make check-gpu-script` rehearses it against the CUDA torch of `make check-cuda-build`.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
[[ "${1:-}" == "--dry-run" ]] && DRY_RUN=1
OUT=${OUT:-bench/results/gpu}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-480}
DEADLINE=$(( $(date +%s) + BUDGET_S ))
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export PIP_NO_INDEX=1  # that machine has no network: fail at once rather than time out
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
status=0

say() { echo "gpu.sh: $*" | tee -a "$OUT/preflight.txt"; }
die() { say "FAILED: $*"; exit 1; }
left() { echo $(( DEADLINE - $(date +%s) )); }

# ---- 1. preflight -------------------------------------------------------------------------
: > "$OUT/preflight.txt"
say "$(date -u +%FT%TZ) dry_run=$DRY_RUN budget=${BUDGET_S}s python=$PY PIP_NO_INDEX=$PIP_NO_INDEX" \
  "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
if [[ $DRY_RUN == 0 ]]; then
  command -v nvidia-smi > /dev/null || die "nvidia-smi not found"
  nvidia-smi -L >> "$OUT/preflight.txt" 2>&1 || die "nvidia-smi -L failed"
fi
if ! command -v nvcc > /dev/null; then  # the toolkit's bin/ may be off PATH
  for dir in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
    [[ -n "$dir" && -x "$dir/bin/nvcc" ]] && export PATH="$dir/bin:$PATH" && break
  done
fi
command -v nvcc > /dev/null || die "nvcc not found on PATH, in \$CUDA_HOME/bin or /usr/local/cuda/bin"
say "nvcc: $(command -v nvcc): $(nvcc --version | tail -2 | head -1)"
for tool in cmake ninja g++; do
  command -v $tool > /dev/null || die "$tool not found"
  say "$tool: $($tool --version | head -1)"
done
"$PY" - >> "$OUT/preflight.txt" 2>&1 <<'EOF' || die "python: $(tail -1 "$OUT/preflight.txt")"
import os, sys, sysconfig
import pybind11, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"pybind11 {pybind11.__version__}")
if torch.version.cuda is None:
    sys.exit("torch was built without CUDA")
header = os.path.join(sysconfig.get_paths()["include"], "Python.h")
if not os.path.exists(header):
    sys.exit(f"{header} is missing: no Python development headers")
EOF
if [[ $DRY_RUN == 0 ]]; then
  "$PY" -c 'import torch; assert torch.cuda.is_available(), "torch sees no GPU"; print(torch.cuda.get_device_name())' \
    >> "$OUT/preflight.txt" 2>&1 || die "torch.cuda.is_available() is False"
fi
# gymnasium from the carried wheels (the image has none, and no network)
deps=$(mktemp -d)
if ! "$PY" -c 'import gymnasium' 2> /dev/null; then
  ls .whl/gymnasium-*.whl > /dev/null 2>&1 || die "no gymnasium wheel in .whl/ (cp ../shared/wheels/*.whl .whl/)"
  "$PY" -m pip install --quiet --no-deps --target "$deps" .whl/*.whl >> "$OUT/preflight.txt" 2>&1 \
    || die "pip install of .whl/*.whl"
fi
export PYTHONPATH="$PWD:$deps${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import gymnasium' 2>> "$OUT/preflight.txt" || die "gymnasium does not import"
# not needed by the ops and envs; the trainers' tests and benchmark need tqdm
"$PY" - >> "$OUT/preflight.txt" 2>&1 <<'EOF'
import importlib.util
wanted = ("tqdm", "matplotlib", "tensorboard", "transformers", "minatar")
missing = [m for m in wanted if not importlib.util.find_spec(m)]
print(f"optional packages missing (their tests skip or fail): {missing or 'none'}")
EOF
say "preflight ok ($(( BUDGET_S - $(left) )) s)"

# ---- 2. build, and the hard check that _C is the CUDA build ---------------------------------
rm -f build/gpu/_C*.so  # a stale .so must not pass for this build
{
  cmake -S . -B build/gpu -G Ninja -DFASTRL_CUDA=1 -DPython_EXECUTABLE="$(command -v "$PY")" \
    -DCMAKE_BUILD_TYPE=Release && cmake --build build/gpu --parallel
} > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; die "build (build.log)"; }
FASTRL_EXTENSION=$(ls "$PWD"/build/gpu/_C*.so) || die "no build/gpu/_C*.so after the build"
export FASTRL_EXTENSION
check=(tools/check_cuda_build.py)
[[ $DRY_RUN == 0 ]] && check+=(--need-gpu)
{ "$PY" -m fastrl info && "$PY" "${check[@]}"; } >> "$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; die "fastrl._C is not the CUDA build (build.log)"; }
say "build ok ($(( BUDGET_S - $(left) )) s): $(tail -1 "$OUT/build.log")"
if [[ $DRY_RUN == 1 ]]; then
  say "dry run: stopping before the GPU tests and benchmarks"
  exit 0
fi
gpu=$("$PY" -c 'import torch; print(torch.cuda.get_device_name())' | tr ' ' '-' | tr -cd '[:alnum:]-')

# ---- 3. the CUDA tests --------------------------------------------------------------------
# at most the time left less 3 minutes for the benchmarks (and at least one)
tests_s=$(( $(left) - 180 )); (( tests_s < 60 )) && tests_s=60
echo "==== tests" > "$OUT/bench.log"
timeout $tests_s "$PY" -m pytest tests -m cuda -q -p no:cacheprovider --require-extension --maxfail=20 \
  --continue-on-collection-errors >> "$OUT/bench.log" 2>&1 || status=$?
say "tests: exit $status ($(( BUDGET_S - $(left) )) s): $(tail -1 "$OUT/bench.log")"

# ---- 4. the benchmarks, slowest last, each under the one deadline ----------------------------
for family in returns envs minatar train ppo_loss; do
  if (( $(left) < 15 )); then
    say "bench $family: skipped, the deadline has passed"
    (( status == 0 )) && status=124
    continue
  fi
  select=(-m cuda)
  [[ $family == train ]] && select=(-m cuda -k throughput)  # not the time-to-solve runs
  echo "==== $family ($(left) s left)" >> "$OUT/bench.log"
  timeout "$(left)" "$PY" -m pytest "bench/bench_$family.py" --benchmark-only -q -p no:cacheprovider \
    "${select[@]}" --benchmark-columns=median --benchmark-json "$OUT/$family-$gpu.json" \
    >> "$OUT/bench.log" 2>&1
  rc=$?
  say "bench $family: exit $rc ($(( BUDGET_S - $(left) )) s)"
  (( rc != 0 && status == 0 )) && status=$rc
done
say "done: exit $status; files: $(ls "$OUT" | tr '\n' ' ')"
exit $status
