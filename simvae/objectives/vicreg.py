"""VICReg (Bardes et al., 2022): variance, invariance and covariance terms.

For two views' embeddings Z, Z' [n, d] (official code's normalisation, which the weights
lambda = mu = 25, nu = 1 were tuned with):

    s(Z, Z') = (1 / (n d)) sum_i ||z_i - z'_i||^2                          invariance
    v(Z)     = (1 / d) sum_k max(0, gamma - sqrt(Var(z_.k) + eps))          variance
    c(Z)     = (1 / d) sum_{k != l} C(Z)_kl^2,
               C(Z) = (1 / (n - 1)) sum_i (z_i - zbar)(z_i - zbar)^T        covariance

    loss = lambda s(Z, Z') + mu (v(Z) + v(Z')) / 2 + nu (c(Z) + c(Z'))

(variance averaged, covariance summed over the two views, as in the official code).
For J > 2 views the loss is the mean of this two-view loss over all J (J - 1) / 2 pairs of
views, which is: lambda * mean over pairs of s + mu * mean_j v(Z^j) + nu * 2 mean_j c(Z^j).
Variance and covariance are batch statistics: compute them on the global batch.
"""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn.functional as F


def invariance_term(z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """s(Z, Z'): mean squared difference of paired embeddings [n, d]."""
    return F.mse_loss(z_a, z_b)


def variance_term(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """v(Z): hinge keeping each dimension's standard deviation (unbiased) at least gamma."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """c(Z): squared off-diagonal covariances, summed, divided by the dimension d."""
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / (n - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return off_diagonal.pow(2).sum() / d


def vicreg_loss(
    z: torch.Tensor,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> dict[str, torch.Tensor]:
    """VICReg over z [n, J, d] (J >= 2 views of n images): the mean over view pairs of the
    two-view loss. Returns the weighted ``loss`` and the unweighted ``invariance``,
    ``variance`` (mean over views) and ``covariance`` (summed over a pair's two views)."""
    j = z.shape[1]
    if j < 2:
        raise ValueError(f"VICReg needs at least 2 views per image, got {j}")
    invariance = torch.stack([invariance_term(z[:, a], z[:, b]) for a, b in combinations(range(j), 2)]).mean()
    variance = torch.stack([variance_term(z[:, a], gamma, eps) for a in range(j)]).mean()
    covariance = 2 * torch.stack([covariance_term(z[:, a]) for a in range(j)]).mean()
    loss = invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance
    return {"loss": loss, "invariance": invariance, "variance": variance, "covariance": covariance}
