"""What a method is: its networks and its loss, nothing else.

The one training loop (``simvae.train``) feeds a ``Batch`` of J augmented views
per image to ``Method.forward`` and minimises the returned ``loss``. A method
also says how many views it trains on, what its representation is
(``encode``) and, where it has a decoder, how it reconstructs.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """The shape of the problem, shared by every method of a comparison."""

    image_shape: tuple[int, int, int]
    latent_dim: int
    network: str = "mlp"


@dataclass
class Batch:
    """One training step's data on this process.

    images: un-augmented images [b, C, H, W] in [0, 1]; views: [b, J, C, H, W].
    ``randn(per_image, dim)`` gives reproducible Gaussian noise, [b * per_image, dim],
    drawn for the global batch and sliced to this process, so a step under DDP
    sees exactly the noise a single process would.
    """

    images: torch.Tensor
    views: torch.Tensor
    randn: Callable[[int, int], torch.Tensor]

    @property
    def n_views(self) -> int:
        return self.views.shape[1]


class Method(nn.Module):
    """Base class: subclasses set ``name`` and ``config_cls`` and build their networks."""

    name: ClassVar[str]
    config_cls: ClassVar[type]
    generative: ClassVar[bool] = False  # trains a decoder as part of its objective
    default_lr: ClassVar[float] = 8e-5  # the paper's learning rate for this method
    # per-dataset learning rates where the paper tuned them by data set (SimCLR, paper A.7.4)
    default_lr_by_dataset: ClassVar[dict[str, float]] = {}
    min_batch_size: ClassVar[int] = 1  # per process: batch statistics / negatives need more than one image

    def __init__(self, spec: ModelSpec, cfg):
        super().__init__()
        self.spec = spec
        self.cfg = cfg

    @classmethod
    def lr_for(cls, dataset: str) -> float:
        """The default learning rate of this method on ``dataset``."""
        return cls.default_lr_by_dataset.get(dataset, cls.default_lr)

    @property
    def n_views(self) -> int:
        """Augmented views per image the loop should make for each step."""
        return int(getattr(self.cfg, "n_views", 1))

    @classmethod
    def views_per_image(cls, cfg) -> int:
        """Samples of one image that pass through the encoder in a step (the unit of --views-per-step)."""
        return int(getattr(cfg, "n_views", 1))

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The representation of un-augmented images [n, C, H, W] -> [n, d]."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor | None:
        """Images [n, C, H, W] in [0, 1] (pixel means) decoded from representations z [n, d], in
        eval mode; None for a method without a decoder (own or post-hoc)."""
        return None

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor | None:
        """Images decoded from the representation of images x [n, C, H, W], in [0, 1]; None
        without a decoder."""
        return self.decode(self.encode(x)) if self.has_decoder else None

    @property
    def has_decoder(self) -> bool:
        """Whether ``decode`` returns images (a generative method, or one with a post-hoc decoder)."""
        return False

    def after_step(self) -> None:
        """Called after each optimiser step (momentum encoders update here)."""

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]


@contextmanager
def eval_mode(module: nn.Module):
    """Run ``module`` in eval mode and restore each submodule's own training flag afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to the registry under ``cls.name``."""
    METHODS[cls.name] = cls
    return cls
