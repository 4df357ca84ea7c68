#!/usr/bin/env bash
# SimVAE training throughput on a CUDA GPU (bf16): views/s and peak memory as JSON.
#
#   benchmarks/gpu_throughput.sh [--steps 200] [--warmup 20] [--batch-size 128] [--views 10] [--fp32] [--compile]
#
# Trains the MLP SimVAE (Fashion-MNIST shape) and the conv SimVAE of paper Table 4 on every data
# set that uses it (CIFAR-10 32x32, CelebA 64x64; random images of that shape where the data set is
# not found) with the real Trainer (views made on the GPU) for a fixed number of steps and prints
# one JSON object on the last line of stdout. Python: $PYTHON, else the repository's venv
# interpreter if found, else python3. On a machine without a CUDA GPU it exits 2 with a
# one-line explanation (and {"error": ...} on stdout).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif [[ -x "$root/.venv/bin/python" ]]; then
    py="$root/.venv/bin/python"
elif [[ -x /work/venv/bin/python ]]; then
    py=/work/venv/bin/python
else
    py="$(command -v python3 || command -v python || true)"
fi
if [[ -z "$py" ]]; then
    echo "gpu_throughput: no Python interpreter found (set PYTHON=/path/to/python)" >&2
    echo '{"error": "no Python interpreter found"}'
    exit 2
fi

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
else
    echo "gpu_throughput: nvidia-smi not found; asking PyTorch whether a CUDA GPU is visible" >&2
fi

cd "$root"
exec "$py" "$here/gpu_throughput.py" "$@"
