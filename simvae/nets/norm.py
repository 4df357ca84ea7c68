"""BatchNorm whose training statistics are the global batch's across DDP processes.

So that N processes take exactly the step of one process on the same global batch, on every
backend (torch's SyncBatchNorm refuses CPU tensors). Each process reduces its per-channel sum,
sum of squares and count, the three are summed over processes with ``all_reduce`` (gradients
flow through it: torch.distributed.nn), and

    mean = S / N,  var = Q / N - mean^2,  y = (x - mean) / sqrt(var + eps) * weight + bias.

Only 3 x C numbers cross the network per layer, not the activations. On one process (or in
eval mode) it is plain BatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn

from ..dist import world_size


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x)


class _GlobalBatchNorm:
    def _global_forward(self, x: torch.Tensor, dims: tuple[int, ...], shape: tuple[int, ...]) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)  # type: ignore[misc]
        count = torch.tensor([float(x.numel() // x.shape[1])], device=x.device, dtype=torch.float32)
        local = torch.cat([x.float().sum(dims), (x.float() * x.float()).sum(dims), count])
        total = _all_reduce_sum(local)
        c = x.shape[1]
        n = total[2 * c]
        mean, var = total[:c] / n, (total[c : 2 * c] / n - (total[:c] / n) ** 2).clamp_min(0)
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / torch.clamp(n - 1, min=1))
            self.num_batches_tracked.add_(1)
        y = (x - mean.view(shape).to(x.dtype)) / torch.sqrt(var.view(shape) + self.eps).to(x.dtype)
        return y * self.weight.view(shape) + self.bias.view(shape)


class GlobalBatchNorm1d(_GlobalBatchNorm, nn.BatchNorm1d):
    """BatchNorm1d over [n, C] with the global batch's statistics under DDP."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._global_forward(x, (0,), (1, -1))


class GlobalBatchNorm2d(_GlobalBatchNorm, nn.BatchNorm2d):
    """BatchNorm2d over [n, C, H, W] with the global batch's statistics under DDP (the conv nets)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._global_forward(x, (0, 2, 3), (1, -1, 1, 1))
