"""VICReg (Bardes et al., 2022): invariance, variance and covariance terms on expanded views.

    h = f(x^j) (representation),  z^j = expander(h),
    loss = lambda s(Z, Z') + mu (v(Z) + v(Z')) / 2 + nu (c(Z) + c(Z'))

with lambda = mu = 25, nu = 1 (the VICReg paper's values; the SimVAE paper states mu = 25,
lr 1e-4). For J > 2 views the loss is averaged over view pairs (see objectives/vicreg.py).
The expander is applied to each view's batch separately (its BatchNorm sees one view at a
time, as in the original); the loss's batch statistics use the gathered global batch.
"""

from __future__ import annotations

import torch
from pydantic import Field

from ..config import Config, require
from ..dist import gather_with_grad
from ..nets.heads import vicreg_expander
from ..objectives.vicreg import vicreg_loss
from .base import Batch, register
from .discriminative import EncoderMethod, full_precision, validate_head


class VICRegConfig(Config):
    n_views: int = Field(2, description="J, augmented views per image (VICReg: 2)")
    invariance_weight: float = Field(25.0, description="weight lambda of VICReg's invariance term")
    variance_weight: float = Field(25.0, description="weight mu of VICReg's variance term (paper: 25)")
    covariance_weight: float = Field(1.0, description="weight nu of VICReg's covariance term")
    head_hidden: int = Field(512, description="hidden width of the expander")
    head_out: int = Field(512, description="output size of the expander")

    def check(self) -> None:
        require(self.n_views >= 2, f"n_views must be >= 2 for VICReg, got {self.n_views}")
        for name in ("invariance_weight", "variance_weight", "covariance_weight"):
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
            terms = vicreg_loss(
                gather_with_grad(z.float()), self.cfg.invariance_weight, self.cfg.variance_weight, self.cfg.covariance_weight
            )
        return terms
