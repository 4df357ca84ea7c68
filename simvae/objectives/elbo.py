"""ELBO terms shared by the whole VAE family (VAE, beta-VAE, CR-VAE, SimVAE).

All functions return one value per sample (summed over pixels or latent
dimensions), so a method chooses how to sum over views and average over groups.
q(z|x) = N(mu, diag(exp(logvar))) throughout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, var: float) -> torch.Tensor:
    """log N(x; mean, var I) = -||x - mean||^2 / (2 var) - D/2 log(2 pi var), per sample."""
    d = x[0].numel()
    sq = (x - mean).flatten(1).pow(2).sum(1)
    return -sq / (2 * var) - 0.5 * d * (LOG_2PI + math.log(var))


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bern(x; sigmoid(logits)) = sum_d x_d log p_d + (1 - x_d) log(1 - p_d), per sample."""
    return -F.binary_cross_entropy_with_logits(logits.flatten(1), x.flatten(1), reduction="none").sum(1)


def gaussian_entropy(logvar: torch.Tensor) -> torch.Tensor:
    """H[N(mu, diag(sigma^2))] = 1/2 sum_l (log sigma_l^2 + 1 + log 2 pi), per sample.

    (The public reference code writes 0.5 * sum(2 * pi * logvar), which is wrong.)
    """
    return 0.5 * (logvar + 1.0 + LOG_2PI).sum(-1)


def kl_gaussians(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(q || p) for diagonal Gaussians:
    1/2 sum_l [log sigma_p^2 - log sigma_q^2 + (sigma_q^2 + (mu_q - mu_p)^2) / sigma_p^2 - 1], per sample."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0).sum(-1)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) = 1/2 sum_l (mu^2 + sigma^2 - 1 - log sigma^2), per sample."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) drawn by the caller (so runs are reproducible)."""
    return mu + (0.5 * logvar).exp() * eps


def group_log_prior_uniform(z: torch.Tensor, prior_var: float) -> torch.Tensor:
    """log p(z^1..z^J | y) with psi integrated out under a flat p(psi) (paper Eq. 6, App. A.4):

        -1/(2 s^2) sum_j ||z^j - zbar||^2 - L (J-1)/2 log(2 pi s^2) - L/2 log J

    z: [B, J, L] -> [B]. The constants are those of integrating prod_j N(z^j; psi, s^2 I)
    over psi with unit density; they do not affect training.
    """
    _, j, l = z.shape
    zbar = z.mean(dim=1, keepdim=True)
    quad = (z - zbar).pow(2).sum(dim=(1, 2))
    return -quad / (2 * prior_var) - 0.5 * l * (j - 1) * (LOG_2PI + math.log(prior_var)) - 0.5 * l * math.log(j)


def group_log_prior_gaussian(z: torch.Tensor, prior_var: float, psi_var: float) -> torch.Tensor:
    """log p(z^1..z^J | y) with psi ~ N(0, g^2 I) integrated out (App. A.4, line (*)):

        -1/(2 s^2) sum_l [sum_j z_jl^2 - (sum_j z_jl)^2 / (J + s^2/g^2)]
        - L/2 [(J-1) log s^2 + log(s^2 + J g^2) + J log 2 pi]

    i.e. per latent dimension the J-vector is N(0, s^2 I + g^2 11^T). Tends to the
    uniform case (up to a constant) as g -> infinity. z: [B, J, L] -> [B].
    """
    _, j, l = z.shape
    sum_sq = z.pow(2).sum(dim=(1, 2))
    sq_sum = z.sum(dim=1).pow(2).sum(-1)
    quad = (sum_sq - sq_sum / (j + prior_var / psi_var)) / prior_var
    log_det = (j - 1) * math.log(prior_var) + math.log(prior_var + j * psi_var)
    return -0.5 * quad - 0.5 * l * (log_det + j * LOG_2PI)
