"""Shared parts of the VAE family: Gaussian encoder q(z|x), decoder p(x|z), likelihood."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from ..config import Config, require
from ..nets import build_decoder, build_encoder
from ..objectives.elbo import bernoulli_log_likelihood, gaussian_log_likelihood, reparameterize
from .base import Method, ModelSpec, eval_mode


class LikelihoodConfig(Config):
    likelihood: Literal["gaussian", "bernoulli"] = Field(
        "gaussian", description="p(x|z): Gaussian with fixed variance, or Bernoulli (binarised data)"
    )
    likelihood_var: float = Field(0.02, description="variance sigma_x^2 of the Gaussian likelihood")

    def check(self) -> None:
        require(self.likelihood_var > 0, f"likelihood_var must be > 0, got {self.likelihood_var}")


class LatentVariableMethod(Method):
    """Encoder with mean and log-variance heads, and a decoder."""

    generative = True

    def __init__(self, spec: ModelSpec, cfg):
        super().__init__(spec, cfg)
        self.encoder = build_encoder(spec.network, spec.image_shape, 2 * spec.latent_dim)
        self.decoder = build_decoder(spec.network, spec.image_shape, spec.latent_dim)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x) for images [n, C, H, W]."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=-1)
        return mu, logvar

    def sample(self, mu, logvar, eps):
        return reparameterize(mu, logvar, eps)

    def log_likelihood(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per sample, from the decoder's output (means or logits)."""
        decoded = decoded.float()
        if self.cfg.likelihood == "bernoulli":
            return bernoulli_log_likelihood(x, decoded)
        return gaussian_log_likelihood(x, decoded, self.cfg.likelihood_var)

    def mean_image(self, decoded: torch.Tensor) -> torch.Tensor:
        if self.cfg.likelihood == "bernoulli":
            return torch.sigmoid(decoded)
        return decoded.clamp(0, 1)

    @torch.no_grad()
    def encode(self, x):
        """Posterior means of un-augmented images [n, C, H, W] -> [n, latent_dim], in eval mode
        (BatchNorm in the conv nets uses its running statistics)."""
        with eval_mode(self):
            return self.posterior(x)[0]

    has_decoder = True

    @torch.no_grad()
    def decode(self, z):
        """Pixel means of p(x|z) for latents z [n, latent_dim] -> [n, C, H, W] in [0, 1], in eval mode
        (paper A.7.6: reconstructions decode the posterior mean; samples decode draws of z)."""
        with eval_mode(self):
            return self.mean_image(self.decoder(z.to(next(self.decoder.parameters()).dtype)))
