#!/usr/bin/env bash
# Every GPU measurement of the performance work in one call, for a session lent a GPU (about 10 minutes on one
# H200): the kernel benchmark with its product checks (fused vs unfused, compiled vs eager, bf16 vs float32 on the
# device), then the end-to-end benchmark at Pythia shapes. Results go to $OUT (the device tool's folder) or
# benchmarks/results.
#
# The device machine's image has torch, transformers, accelerate, rich and PyYAML but not pydantic. Once, on the
# development machine, in the repository's root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2
# then, through the device tool with carry [".whl"]:  bash benchmarks/gpu_session.sh
# Sizes and lengths can be narrowed: SIZES="410m 1.4b" LENS="64" bash benchmarks/gpu_session.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$out/device.txt"
timeout 180 python3 benchmarks/gpu.py --agreement 410m 2>&1 | tee "$out/gpu.log"
# shellcheck disable=SC2086
timeout 420 python3 benchmarks/end_to_end.py --sizes ${SIZES:-70m 410m 1.4b} --seq-lens ${LENS:-64 2048} \
    --checkpoints 3 --out "$out/end_to_end-cuda" 2>&1 | tee "$out/end_to_end.log"
# whole records of varied length against fixed-length samples of the same tokens (issue: at most 1.15x)
timeout 120 python3 benchmarks/records.py --records 2048 --window 2048 --median 600 --batch-size 8 2>&1 \
    | tee "$out/records.log"
# the generation probe's decoding against transformers' generate on the same batch (issue: close to generate)
timeout 240 python3 benchmarks/generation.py --sizes 160m 410m 1.4b --batch 64 --no-scores \
    --out "$out/generation-cuda" 2>&1 | tee "$out/generation.log"
