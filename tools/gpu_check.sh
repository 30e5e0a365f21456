#!/usr/bin/env bash
# The GPU checks of lenslib in one run, sized for one device lease (the work ends within ~9.5 minutes):
#
#   here, once a session:  bash tools/device_wheels.sh          # the wheels the GPU image lacks, into .whl/
#   on the GPU machine:    bash tools/gpu_check.sh              # with .whl carried; results under $OUT
#   a dry run here:        GPU_CHECK_QUICK=1 GPU_CHECK_DEVICE=cpu bash tools/gpu_check.sh
#
# Steps, most important first, each under its own time limit and all within GPU_CHECK_BUDGET seconds (570):
#   1. benchmarks/bench_paper.py --full: the paper profile's whole recompute (every experiment but training, the
#      paper's sizes, EfficientNetV2-S) with every step timed, the grid split into hosts / plan / shards / tables
#   2. tests/test_cuda.py: CUDA held to the CPU (injections, seeded Poisson noise, AMP training)
#   3. benchmarks/bench_data.py --no-s3: local cutouts per second on threads and on worker processes
# Each step's output goes to $OUT/<step>.log (and the recompute's report to $OUT/bench_paper_full.<device>.json).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
dev="${GPU_CHECK_DEVICE:-cuda}"
budget="${GPU_CHECK_BUDGET:-570}"
export PYTHONUNBUFFERED=1
if [ -z "${GPU_CHECK_QUICK:-}" ]; then
  ls .whl/*.whl >/dev/null 2>&1 || { echo "no wheels in .whl/: run bash tools/device_wheels.sh here first" >&2; exit 2; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 2
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi

step() {  # step NAME LIMIT_S COMMAND...: run COMMAND under min(LIMIT_S, what is left of the budget)
  local name="$1" limit="$2"; shift 2
  local left=$(( budget - SECONDS ))
  (( left < limit )) && limit=$left
  if (( limit < 20 )); then echo "== $name: skipped (${left} s left of the ${budget} s budget)"; return; fi
  echo "== $name (at most ${limit} s)"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "   rc $rc in $(( SECONDS - t0 )) s; last lines:"
  tail -n 40 "$out/$name.log" | sed 's/^/   /'
}

{ nvidia-smi -L 2>/dev/null || true; python3 -c "import torch, platform; print('python', platform.python_version(), \
'torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0)); \
import os; print('cores', len(os.sched_getaffinity(0)))"; } 2>&1 | tee "$out/environment.log"

if [ -n "${GPU_CHECK_QUICK:-}" ]; then
  sizes=(--hosts 1500 --set grid_injections_per_cell=3 --set fpr_negatives=800 --set tier_a_negatives=200
         --set bright_arc_hosts=10 --set probe_samples=30 --set probe_permutations=10 --set probe_bootstraps=50
         --arch bottlenecked_resnet)
  cuda_tests=(tests/test_cuda.py)
  n_files=1000
else
  sizes=()
  cuda_tests=(tests/test_cuda.py)
  n_files=8000
fi
step bench_paper_full 420 python3 benchmarks/bench_paper.py --full --devices "$dev" "${sizes[@]}" \
  --report "$out/bench_paper_full"
step cuda_tests 120 python3 -m pytest -q -p no:cacheprovider "${cuda_tests[@]}"
step bench_data 60 python3 benchmarks/bench_data.py --no-s3 --n "$n_files"
echo "== done in ${SECONDS} s; logs in $out"
