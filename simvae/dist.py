"""Distributed helpers (the bottom layer): joining torchrun's process group, gathering
features across DDP processes for losses that need the global batch, and averaging logged
figures over processes. No home-made process group: torch.distributed, env:// from torchrun.

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

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """This process's place in the job: rank, world size, local rank (all 0/1/0 alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group torchrun set up (env://: nccl for CUDA, gloo on CPU); a single
    process (WORLD_SIZE unset or 1) needs none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_name != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def is_main_process() -> bool:
    """Rank 0, or the only process (reads torchrun's RANK before the group exists)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


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


def global_mean(values: dict[str, torch.Tensor | float]) -> dict[str, torch.Tensor]:
    """Each value averaged over the processes (the values themselves on one process).

    Every process must call it at the same point (it is a collective). Used for logged
    figures: each process's loss terms are means over its equal share of the global batch,
    so their mean over processes is the global batch's figure.
    """
    if not values or world_size() == 1:
        return values
    keys = sorted(values)
    stacked = torch.stack([torch.as_tensor(values[k], dtype=torch.float64) for k in keys])
    dist.all_reduce(stacked)
    return {k: v / dist.get_world_size() for k, v in zip(keys, stacked)}
