"""Where simvae keeps what it computes once and reuses (FID reference statistics, the
classifier of the classifier FID, data set caches): ``$SIMVAE_CACHE_DIR``, else
``$XDG_CACHE_HOME/simvae``, else ``~/.cache/simvae``. Delete the folder to clear it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

CACHE_ENV = "SIMVAE_CACHE_DIR"


def cache_dir(*parts: str) -> Path:
    """The cache folder (created), or its sub-folder ``parts``."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "simvae"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def tensor_digest(*tensors: torch.Tensor, n_hex: int = 16) -> str:
    """A content hash of tensors (their shapes, dtypes and bytes): a cache key for data."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:n_hex]


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename: a reader never sees half a file."""
    from .rundir import atomic_torch_save

    atomic_torch_save(obj, path)
