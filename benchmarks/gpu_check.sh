#!/usr/bin/env bash
# YOLOv3 416x416 (plans/yolov3_coco.toml, 80 classes) on one NVIDIA GPU, in under 5 minutes:
# the graph trainer's images/s and peak GPU memory in float32, mixed_float16 and
# mixed_float16 + XLA at batch 16, the GPU-against-CPU loss check, the input pipeline
# against the step, the bare-step ratio, steps_per_execution 1 vs 8 and MirroredStrategy
# on the one GPU, written to one JSON file (benchmarks/gpu_check.py says what each is).
#
#   benchmarks/gpu_check.sh [--smoke] [OUT.json]       (default OUT: gpu_check.json)
#
# Needs nothing but this repository, python3 (>= 3.10) and an NVIDIA driver: it installs
# detplug and tensorflow[and-cuda] (the range pyproject.toml pins) into a venv of its own,
# $GPU_CHECK_VENV (default ${TMPDIR:-/tmp}/detplug-gpu-venv), unless that venv already
# imports TensorFlow with a GPU. GPU_CHECK_PYTHON=/path/to/python uses an interpreter that
# already has both instead (an offline machine). The measurements stop GPU_CHECK_SECONDS
# (default 290) after the start, install time not counted: the JSON is rewritten after each
# one, most important first, with "complete": false until all are in.
#
# --smoke: every code path at a tiny width, 128x128 and batch 2, on the CPU if there is no
# GPU, with the repository's own .venv (or GPU_CHECK_PYTHON): proves the script, measures
# nothing. Its budget is 600 s: on a 2-core CPU each trace of the step takes 15-40 s and
# the XLA compile about 2 minutes (gpu_check.py --only runs a few measurements at a time).
set -euo pipefail

started=$(date +%s)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

fail() {
    echo "gpu_check: $*" >&2
    exit 1
}

smoke=0
out=""
for arg in "$@"; do
    case "$arg" in
        --smoke) smoke=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        -*) fail "unknown option $arg; usage: benchmarks/gpu_check.sh [--smoke] [OUT.json]" ;;
        *)
            [ -z "$out" ] || fail "one output file only (got $out and $arg)"
            out=$arg
            ;;
    esac
done
out=${out:-gpu_check.json}
# Five minutes on a GPU; a smoke run on a small CPU traces and compiles far slower.
if [ "$smoke" = 1 ]; then total=${GPU_CHECK_SECONDS:-600}; else total=${GPU_CHECK_SECONDS:-290}; fi
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

# Exit 0: TensorFlow and detplug import and TensorFlow lists a GPU; 3: no GPU; other: no import.
probe='import sys, tensorflow as tf, detplug; sys.exit(0 if tf.config.list_physical_devices("GPU") else 3)'
install_seconds=0

if [ "$smoke" = 1 ]; then
    python=${GPU_CHECK_PYTHON:-$repo/.venv/bin/python}
    [ -x "$python" ] || fail "--smoke runs with $python, which does not exist; create the repository's .venv \
(python3 -m venv .venv && .venv/bin/pip install -e .) or set GPU_CHECK_PYTHON."
    extra=(--smoke --cpu-ok)
else
    command -v nvidia-smi >/dev/null 2>&1 ||
        fail "no NVIDIA GPU is visible: nvidia-smi is not installed or not on PATH."
    nvidia-smi -L >/dev/null 2>&1 ||
        fail "no NVIDIA GPU is visible: 'nvidia-smi -L' fails (no GPU, or the driver is not loaded)."
    if [ -n "${GPU_CHECK_PYTHON:-}" ]; then
        python=$GPU_CHECK_PYTHON
        status=0
        "$python" -c "$probe" >/dev/null 2>&1 || status=$?
        [ "$status" = 0 ] || fail "GPU_CHECK_PYTHON=$python does not import tensorflow and detplug with a GPU \
visible (exit $status; 3: TensorFlow lists no GPU)."
    else
        venv=${GPU_CHECK_VENV:-${TMPDIR:-/tmp}/detplug-gpu-venv}
        python=$venv/bin/python
        status=missing
        if [ -x "$python" ]; then
            status=0
            "$python" -c "$probe" >/dev/null 2>&1 || status=$?
        fi
        if [ "$status" = 0 ]; then
            echo "gpu_check: using $venv (TensorFlow sees a GPU; nothing to install)"
        elif [ "$status" = 3 ]; then
            fail "TensorFlow in $venv lists no GPU although nvidia-smi sees one (a driver older than \
TensorFlow's CUDA, or CUDA_VISIBLE_DEVICES hides it); delete $venv to reinstall."
        else
            begun=$(date +%s)
            python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null ||
                fail "python3 (3.10 or newer) is needed to create the venv $venv."
            # "tensorflow>=2.16" in pyproject.toml's dependencies: the same range, with CUDA.
            tf_range=$(sed -n 's/^[[:space:]]*"tensorflow\([<>=!~][^"]*\)".*/\1/p' "$repo/pyproject.toml" | head -n 1)
            [ -n "$tf_range" ] || fail "cannot read TensorFlow's version range from $repo/pyproject.toml."
            log=$venv.install.log
            echo "gpu_check: installing detplug and tensorflow[and-cuda]$tf_range into $venv (log: $log)"
            python3 -m venv "$venv" >"$log" 2>&1 || fail "'python3 -m venv $venv' failed; see $log."
            { "$python" -m pip install --upgrade pip &&
                "$python" -m pip install -e "$repo" "tensorflow[and-cuda]$tf_range"; } >>"$log" 2>&1 ||
                fail "installing detplug and tensorflow[and-cuda]$tf_range into $venv failed (no network?); see $log."
            status=0
            "$python" -c "$probe" >>"$log" 2>&1 || status=$?
            [ "$status" != 3 ] || fail "TensorFlow lists no GPU although nvidia-smi sees one (a CUDA driver \
older than TensorFlow's CUDA?); see $log."
            [ "$status" = 0 ] || fail "the new venv $venv does not import tensorflow and detplug; see $log."
            install_seconds=$(($(date +%s) - begun))
        fi
    fi
    extra=()
fi

# What is left of the budget (the install not counted): the Python half skips what would
# not fit in it and stops 15 s early; timeout stops it at the budget in any case.
left=$((total + install_seconds - ($(date +%s) - started)))
[ "$left" -ge 60 ] || left=60
status=0
timeout -k 10 "$left" "$python" "$here/gpu_check.py" --out "$out" --seconds "$((left - 15))" ${extra[@]+"${extra[@]}"} ||
    status=$?
case "$status" in
    0) echo "gpu_check: done; every measurement is in $out" ;;
    1) echo "gpu_check: done, but some measurements were skipped or failed: see 'skipped' and 'errors' in $out" ;;
    124 | 137) echo "gpu_check: stopped after ${left} s; $out holds the figures measured so far (complete: false)" ;;
    *) echo "gpu_check: the Python half failed (exit $status); $out holds what it wrote" ;;
esac
exit "$status"
