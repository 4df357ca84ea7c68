"""A trained run, loaded back: its config, its method (weights from the checkpoint) and data."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .augment import to_float
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, load_model_state
from .data import ImageData, load_dataset
from .methods import Method, build_method
from .run_config import RunConfig
from .train import load_run_config, model_spec, resolve_device

DECODER_NAME = "decoder.pt"


@dataclass
class Run:
    path: Path
    config: RunConfig
    method: Method
    device: torch.device
    _data: ImageData | None = field(default=None, repr=False)

    @property
    def data(self) -> ImageData:
        if self._data is None:
            tc = self.config.train
            self._data = load_dataset(tc.dataset, tc.data_dir, tc.binarize, download=tc.download)
        return self._data

    def _batches(self, images: torch.Tensor, fn, batch_size: int = 4096) -> torch.Tensor:
        out = []
        self.method.eval()
        with torch.no_grad():
            for s in range(0, images.shape[0], batch_size):
                x = images[s:s + batch_size].to(self.device)
                x = to_float(x) if x.dtype == torch.uint8 else x.float()
                out.append(fn(x).float().cpu())
        return torch.cat(out)

    def encode(self, images: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Representations (posterior means, or encoder outputs) of un-augmented images.

        images: uint8 [n, C, H, W] in [0, 255] or float in [0, 1]."""
        return self._batches(images, self.method.encode, batch_size)

    def reconstruct(self, images: torch.Tensor, batch_size: int = 4096) -> torch.Tensor | None:
        probe = self.method.reconstruct(to_float(images[:1].to(self.device)) if images.dtype == torch.uint8
                                        else images[:1].to(self.device).float())
        if probe is None:
            return None
        return self._batches(images, self.method.reconstruct, batch_size)

    def train_summary(self) -> dict:
        p = self.path / "train_summary.json"
        return json.loads(p.read_text()) if p.is_file() else {}


def load_run(path: str | Path, device: str = "auto", data: ImageData | None = None) -> Run:
    """Load a run folder written by ``simvae train`` (weights loaded with weights_only=True)."""
    path = Path(path)
    cfg = load_run_config(path)
    dev = resolve_device(device)
    ckpt = load_checkpoint(path / CHECKPOINT_NAME, map_location=dev)
    if data is None:
        tc = cfg.train
        data = load_dataset(tc.dataset, tc.data_dir, tc.binarize, download=tc.download)
    method = build_method(cfg.train.method, model_spec(cfg, data.image_shape), cfg.to_dict()["method"])
    load_model_state(method, ckpt["model"], cfg.train.method, ckpt.get("method"), path / CHECKPOINT_NAME)
    method.to(dev).eval()
    return Run(path, cfg, method, dev, data)
