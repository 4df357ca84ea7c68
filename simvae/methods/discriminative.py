"""Shared parts of the discriminative baselines and the random encoder.

The encoder is the one the generative methods use, with ``latent_dim`` outputs (no
log-variance head); its output is the representation (paper §4.3.2: before any
projection head). These methods have no decoder of their own: for the paper's
reconstructions (Fig. 3/4) one is fitted afterwards on the frozen representation
(``simvae.evaluate.decoder_fit``) and attached with ``attach_decoder``.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ..config import require
from ..nets import build_encoder
from .base import Batch, Method, ModelSpec


class EncoderMethod(Method):
    generative = False

    def __init__(self, spec: ModelSpec, cfg):
        super().__init__(spec, cfg)
        self.encoder = build_encoder(spec.network, spec.image_shape, spec.latent_dim)
        # kept out of the module tree on purpose: not in state_dict / checkpoints (saved on its own)
        object.__setattr__(self, "posthoc_decoder", None)

    def view_features(self, batch: Batch) -> torch.Tensor:
        """Encoder outputs of all views in one pass: [b, J, latent_dim]."""
        b, j = batch.views.shape[:2]
        return self.encoder(batch.views.flatten(0, 1)).view(b, j, -1)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output of un-augmented images [n, C, H, W] -> [n, latent_dim], in eval mode."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            return self.encoder(x).float()
        finally:
            self.encoder.train(was_training)

    def attach_decoder(self, decoder: nn.Module | None) -> None:
        """Use a post-hoc decoder (trained on frozen representations) for ``reconstruct``."""
        object.__setattr__(self, "posthoc_decoder", decoder)

    @property
    def has_decoder(self) -> bool:
        return self.posthoc_decoder is not None

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor | None:
        """The post-hoc decoder's pixel means for representations z [n, latent_dim] -> [n, C, H, W]
        in [0, 1] (paper A.7.6, "ad-hoc decoder"); None before one is attached."""
        if self.posthoc_decoder is None:
            return None
        was_training = self.posthoc_decoder.training
        self.posthoc_decoder.eval()
        try:
            return self.posthoc_decoder(z).float().clamp(0, 1)
        finally:
            self.posthoc_decoder.train(was_training)


@contextmanager
def full_precision(device: torch.device):
    """Autocast off: similarities at temperature 0.2 and batch statistics need float32."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def validate_temperature(t: float) -> None:
    require(t > 0, f"temperature must be > 0, got {t}")


def validate_head(hidden: int, out: int) -> None:
    require(hidden >= 1, f"head_hidden must be >= 1, got {hidden}")
    require(out >= 1, f"head_out must be >= 1, got {out}")
