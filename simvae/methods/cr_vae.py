"""CR-VAE (Sinha & Dieng, 2021): a VAE whose posterior is made consistent under augmentation.

    L = ELBO(x) + ELBO(t(x)) - lambda * KL(q(z|t(x)) || q(z|x))

on the un-augmented image x and one augmentation t(x) (the loss is -L, batch mean).
"""

from __future__ import annotations

import torch
from pydantic import Field

from ..config import require
from ..objectives.elbo import kl_gaussians, kl_standard_normal
from .base import Batch, register
from .latent import LatentVariableMethod, LikelihoodConfig


class CRVAEConfig(LikelihoodConfig):
    consistency_weight: float = Field(0.1, description="weight lambda of CR-VAE's consistency KL")

    @property
    def n_views(self) -> int:
        return 1

    def check(self) -> None:
        super().check()
        require(self.consistency_weight >= 0, f"consistency_weight must be >= 0, got {self.consistency_weight}")


@register
class CRVAE(LatentVariableMethod):
    name = "cr-vae"
    config_cls = CRVAEConfig

    @classmethod
    def views_per_image(cls, cfg) -> int:
        return 2  # the image itself and one augmentation pass through the encoder

    def forward(self, batch: Batch):
        b = batch.images.shape[0]
        x = torch.cat([batch.images, batch.views[:, 0]])  # [x; t(x)] in one pass
        mu, logvar = self.posterior(x)
        # noise is drawn image-major ([b, 2]: image b's x, then its t(x)); consume it in that order
        eps = batch.randn(2, mu.shape[-1]).view(b, 2, -1).transpose(0, 1).reshape(2 * b, -1)
        z = self.sample(mu, logvar, eps)
        log_lik = self.log_likelihood(x, self.decoder(z))
        kl_prior = kl_standard_normal(mu, logvar)
        elbo = (log_lik - kl_prior).view(2, b).sum(0)
        consistency = kl_gaussians(mu[b:], logvar[b:], mu[:b], logvar[:b])  # KL(q(z|t(x)) || q(z|x))
        loss = -(elbo - self.cfg.consistency_weight * consistency).mean()
        return {
            "loss": loss,
            "log_lik": log_lik.view(2, b).sum(0).mean(),
            "kl": kl_prior.view(2, b).sum(0).mean(),
            "consistency": consistency.mean(),
        }
