"""Random: the untrained encoder, the paper's lower bound.

Nothing is trained. So that the one training loop runs unchanged, ``forward`` returns a
loss of exactly 0 whose gradient is 0 for every parameter; Adam then leaves the
parameters exactly as initialised (its step is m_hat / (sqrt(v_hat) + eps) = 0).
`simvae train --method random` therefore writes the initial encoder as its checkpoint;
one epoch is enough.
"""

from __future__ import annotations

import torch

from ..config import Config
from .base import Batch, register
from .discriminative import EncoderMethod


class RandomConfig(Config):
    @property
    def n_views(self) -> int:
        return 1

    def check(self) -> None:
        pass


@register
class RandomEncoder(EncoderMethod):
    name = "random"
    config_cls = RandomConfig

    def forward(self, batch: Batch):
        zero = 0.0 * torch.stack([p.sum() for p in self.parameters()]).sum() + 0.0  # + 0.0: not -0.0
        return {"loss": zero}
