"""InfoNCE objectives: SimCLR's NT-Xent (for J >= 2 views) and MoCo's queue InfoNCE.

Both compare L2-normalised vectors by their dot product (cosine similarity) divided
by a temperature T; positives are views of the same image, negatives other images.
Compute these in float32 (the callers switch autocast off).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_similarity_matrix(z: torch.Tensor) -> torch.Tensor:
    """S[a, c] = z_a . z_c / (||z_a|| ||z_c||) for rows of z [N, d] -> [N, N]."""
    zn = F.normalize(z, dim=-1)
    return zn @ zn.T


def positive_mask(n_images: int, n_views: int, device=None) -> torch.Tensor:
    """Boolean [N, N], N = n_images * n_views, rows image-major (row = i * J + j):
    True where row and column are different views of the same image."""
    image = torch.arange(n_images, device=device).repeat_interleave(n_views)
    same = image[:, None] == image[None, :]
    return same & ~torch.eye(len(image), dtype=torch.bool, device=device)


def nt_xent_loss(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR) over z [b, J, d]: b images, J >= 2 views each.

    With s(a, c) = cos(z_a, z_c) / T over all N = bJ views,

        l(a, p) = -log( exp s(a, p) / sum_{c != a} exp s(a, c) )

    for every anchor a and every positive p (another view of a's image); the loss is the
    mean of l(a, p) over all N (J - 1) such pairs. For J = 2 this is SimCLR's loss (each
    anchor has one positive and 2b - 2 negatives in its denominator). For J > 2 the other
    positives of a stay in the denominator (SupCon's "L_out" form, Khosla et al., 2020).
    """
    b, j = z.shape[:2]
    if j < 2:
        raise ValueError(f"NT-Xent needs at least 2 views per image, got {j}")
    sim = cosine_similarity_matrix(z.flatten(0, 1)) / temperature
    self_mask = torch.eye(b * j, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))  # an anchor is never its own candidate
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    return -log_prob[positive_mask(b, j, z.device)].mean()


def moco_infonce_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: queries q [n, d], their positive keys k [n, d], negatives queue [K, d].

        logits_i = [q_i . k_i, q_i . queue_1, ..., q_i . queue_K] / T
        loss     = mean_i cross_entropy(logits_i, target 0)
                 = mean_i -log( exp(q_i.k_i/T) / (exp(q_i.k_i/T) + sum_m exp(q_i.queue_m/T)) )

    All vectors are L2-normalised here. Keys carry no gradient in MoCo; pass them detached.
    """
    q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    l_pos = (q * k).sum(dim=1, keepdim=True)
    l_neg = q @ queue.T
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)
