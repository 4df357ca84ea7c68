"""Gathering features across DDP processes, for losses that need the global batch.

Under DDP each process holds a slice of the global batch. Contrastive negatives
(SimCLR) and batch statistics (VICReg's variance and covariance) are defined on the
*global* batch, so those losses are computed on ``gather_with_grad(z)``.

Why the gradients match one process on the same global batch: every process computes
the same global loss L. ``all_gather``'s backward sums over processes the gradient each
one sends to a slice, so process r receives W * dL/dz_r for its own slice (W =
world size); DDP then averages parameter gradients over the W processes, which
divides the W back out: sum_r (1/W) * W * dL/dz_r dz_r/dtheta = dL/dtheta.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the default group (1 without torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` over processes along dim 0 (rank order), gradients flowing back.

    Returns ``x`` itself on a single process.
    """
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` over processes along dim 0 (rank order), without gradients (MoCo keys)."""
    if world_size() == 1:
        return x.detach()
    x = x.detach().contiguous()
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts, dim=0)
