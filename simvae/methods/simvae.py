"""SimVAE (paper §5): ELBO_SSL over groups of J augmented views of an image.

    ELBO_SSL = sum_j E_q[log p(x^j|z^j)] + sum_j H[q(z^j|x^j)] + E_q[log p(z^1..z^J | y)]

with the group prior of psi integrated out (uniform p(psi) by default, Eq. 6).
The loss is -ELBO_SSL averaged over the groups of the batch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..config import require
from ..objectives.elbo import gaussian_entropy, group_log_prior_gaussian, group_log_prior_uniform
from .base import Batch, register
from .latent import LatentVariableMethod, LikelihoodConfig


class SimVAEConfig(LikelihoodConfig):
    n_views: int = Field(10, description="J, augmented views per image")
    prior_var: float = Field(0.15, description="variance s^2 of p(z|y)")
    prior: Literal["uniform", "gaussian"] = Field("uniform", description="p(psi): uniform (paper) or Gaussian N(0, g^2 I)")
    psi_var: float = Field(1.0, description="variance g^2 of a Gaussian p(psi)")

    def check(self) -> None:
        super().check()
        require(self.n_views >= 1, f"n_views (J) must be >= 1, got {self.n_views}")
        require(
            self.n_views != 1,
            "SimVAE needs at least 2 views per image (n_views, got 1): with J = 1 its group prior "
            "term is identically 0 and it is a plain VAE; use --method vae for that",
        )
        require(self.prior_var > 0, f"prior_var must be > 0, got {self.prior_var}")
        require(self.psi_var > 0, f"psi_var must be > 0, got {self.psi_var}")


@register
class SimVAE(LatentVariableMethod):
    name = "simvae"
    config_cls = SimVAEConfig

    def group_log_prior(self, z):
        if self.cfg.prior == "gaussian":
            return group_log_prior_gaussian(z, self.cfg.prior_var, self.cfg.psi_var)
        return group_log_prior_uniform(z, self.cfg.prior_var)

    def forward(self, batch: Batch):
        b, j = batch.views.shape[:2]
        x = batch.views.flatten(0, 1)  # all J*b views through the networks in one pass
        mu, logvar = self.posterior(x)
        z = self.sample(mu, logvar, batch.randn(j, mu.shape[-1]))
        log_lik = self.log_likelihood(x, self.decoder(z)).view(b, j).sum(1)
        entropy = gaussian_entropy(logvar).view(b, j).sum(1)
        log_prior = self.group_log_prior(z.view(b, j, -1))
        elbo = log_lik + entropy + log_prior
        return {"loss": -elbo.mean(), "log_lik": log_lik.mean(), "entropy": entropy.mean(), "log_prior": log_prior.mean()}
