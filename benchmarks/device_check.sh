#!/usr/bin/env bash
# The prepared GPU check for a lent machine, in the order of benchmarks/gpu.py's docstring,
# within 8 minutes: each step has its own limit (sum of limits + grace <= 480 s), each
# writes its figures as it measures them, and a step that fails or runs out of time does
# not stop the next. From the repository root on the GPU machine:
#
#     bash benchmarks/device_check.sh [RESULTS]       # default: $OUT, else benchmarks/results
#
# RESULTS receives <machine>-gpu.json (eager), compile/<machine>-gpu.json (torch.compile for
# the two target methods, Logit MixOE w/ L_LC first; its eager figures are the first file's), <machine>-feed.json, their .partial.json while they run, and the
# log of the whole check. PYTHON names the interpreter (default python3); the project is
# imported from this checkout.
set -u
RESULTS=${1:-${OUT:-benchmarks/results}}
PYTHON=${PYTHON:-python3}
GRACE=10                               # seconds between SIGINT and SIGKILL at a limit
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$RESULTS/compile"
LOG="$RESULTS/device_check.log"

step() {                               # step LIMIT_S COMMAND...: run it, say how it ended
    local limit=$1 t0=$SECONDS rc
    shift
    echo "== $* (limit ${limit} s)" | tee -a "$LOG"
    timeout --signal=INT --kill-after=$GRACE "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    case $rc in
        124) note=", stopped at its limit" ;;
        137) note=", killed $GRACE s after its limit" ;;
        *) note="" ;;
    esac
    echo "== exit $rc after $((SECONDS - t0)) s$note" | tee -a "$LOG"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; } | tee "$LOG"
step 80  "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py
step 130 "$PYTHON" -m benchmarks.gpu --no-compile --no-max-batch --results "$RESULTS"
step 100 "$PYTHON" -m benchmarks.feed --device cuda --results "$RESULTS"
step 130 "$PYTHON" -m benchmarks.gpu --compile-only --no-max-batch --methods "Logit MixOE w/ L_LC" \
    --results "$RESULTS/compile"
