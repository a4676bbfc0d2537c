#!/usr/bin/env bash
# The CUDA table in one go: model speed, the edit flow (bundled model and FFHQ256 through the
# Studio) and the solver/fidelity study, each on the GPU, written to one markdown file.
#
#     bash benchmarks/gpu.sh [OUT_DIR]        # default: benchmarks/results-cuda
#
# Needs a CUDA build of torch and a visible GPU (it stops with a one-line message otherwise).
# Precisions: float16 and bfloat16 (where the GPU has it) beside float32; attention runs
# through PyTorch SDPA; model_speed.py adds torch.compile and CUDA-graph rows on CUDA. Each
# part is bounded by `timeout` so one slow part cannot eat the whole GPU lease; a part that
# fails or times out is reported in the table file and the rest still run.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
OUT_DIR="${1:-benchmarks/results-cuda}"
PART_TIMEOUT="${PART_TIMEOUT:-240}"
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu.sh: no CUDA device visible to torch; nothing measured" >&2
    exit 2
fi
mkdir -p "$OUT_DIR"
OUT="$OUT_DIR/cuda-$(date -u +%Y%m%dT%H%M%SZ).md"
{
    echo "# CUDA benchmarks ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
    echo '```'
} > "$OUT"

part() {  # part TITLE COMMAND...: run one benchmark, append its output to the table file
    local title="$1"
    shift
    echo "== $title" >&2
    {
        echo
        echo "## $title"
        echo
        echo "\`$*\`"
        echo
    } >> "$OUT"
    timeout "$PART_TIMEOUT" "$PYTHON" "$@" >> "$OUT" 2>&1
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "**(exit $rc$([ "$rc" -eq 124 ] && echo ", timed out after ${PART_TIMEOUT} s"))**" >> "$OUT"
    fi
}

part "Model speed (UNet forward, render, inversion; fp32/fp16/bf16, compile, CUDA graph)" \
    benchmarks/model_speed.py --device cuda --configs synthfaces64 ffhq256 --compile --repeats 5
part "Edit flow, FFHQ256 random weights through the Studio" \
    benchmarks/edit_flow.py --config ffhq256 --device cuda --repeats 3
part "Edit flow, bundled SynthFaces-64 model" \
    benchmarks/edit_flow.py --device cuda --repeats 3
part "Solver study (reconstruction PSNR, UNet calls, seconds), bundled model" \
    benchmarks/fidelity_study.py --solvers --device cuda --images 16 --precisions float16 float32
echo "wrote $OUT" >&2
echo "$OUT"
