"""VICReg (Bardes et al., 2022): invariance, variance and covariance terms on expanded views.

    h = f(x^j) (representation),  z^j = expander(h),
    loss = lambda s(Z, Z') + mu (v(Z) + v(Z')) / 2 + nu (c(Z) + c(Z'))

with lambda = mu = 25, nu = 1 (the VICReg paper's values; the SimVAE paper states mu = 25,
lr 1e-4). For J > 2 views the loss is averaged over view pairs (see objectives/vicreg.py).
The expander is applied to each view's batch separately (its BatchNorm sees one view at a
time, as in the original); the loss's batch statistics use the gathered global batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import require
from ..nets.heads import vicreg_expander
from ..dist import gather_with_grad
from ..objectives.vicreg import vicreg_loss
from .base import Batch, register
from .discriminative import EncoderMethod, full_precision, validate_head


@dataclass
class VICRegConfig:
    n_views: int = field(default=2, metadata={"help": "J, augmented views per image (VICReg: 2)"})
    vicreg_invariance: float = field(default=25.0, metadata={"help": "weight lambda of VICReg's invariance term"})
    vicreg_variance: float = field(default=25.0, metadata={"help": "weight mu of VICReg's variance term (paper: 25)"})
    vicreg_covariance: float = field(default=1.0, metadata={"help": "weight nu of VICReg's covariance term"})
    head_hidden: int = field(default=512, metadata={"help": "hidden width of the expander"})
    head_out: int = field(default=512, metadata={"help": "output size of the expander"})

    def validate(self) -> None:
        require(self.n_views >= 2, f"n_views must be >= 2 for VICReg, got {self.n_views}")
        for name in ("vicreg_invariance", "vicreg_variance", "vicreg_covariance"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        validate_head(self.head_hidden, self.head_out)


@register
class VICReg(EncoderMethod):
    name = "vicreg"
    config_cls = VICRegConfig
    default_lr = 1e-4  # paper A.7.4
    min_batch_size = 2  # variance/covariance terms and the expander's BatchNorm

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        self.expander = vicreg_expander(spec.latent_dim, cfg.head_hidden, cfg.head_out)

    def forward(self, batch: Batch):
        h = self.view_features(batch)
        z = torch.stack([self.expander(h[:, v]) for v in range(h.shape[1])], dim=1)
        with full_precision(z.device):
            terms = vicreg_loss(gather_with_grad(z.float()), self.cfg.vicreg_invariance,
                                self.cfg.vicreg_variance, self.cfg.vicreg_covariance)
        return terms
