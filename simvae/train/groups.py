"""Group sources: where a training step's groups of J related samples come from.

A step draws ``b`` groups ``[b, J, C, H, W]`` for the global batch and keeps this process's
slice, so that one step on N processes sees exactly the samples, the augmentation draws and
the sampling noise of one step on one process. The loop knows nothing else about the data.

- ``AugmentedImageGroups``: J augmentations of one image (the paper's setting, §4/§5).
  A source of listed groups (J members of a group, each optionally augmented) is another
  implementation of the same two methods.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ..augment import AugmentSpec, pipeline_for, to_float
from ..dist import DistInfo
from ..methods import Batch


class GroupSource(Protocol):
    """What the loop needs from the data: how many items there are, and a batch for indices."""

    def __len__(self) -> int: ...

    def batch(self, idx: torch.Tensor, n_views: int, generator: torch.Generator) -> Batch: ...


class AugmentedImageGroups:
    """Groups of J augmented views of one image, made on the training device in one batched pass.

    images: uint8 [N, C, H, W] (moved to ``device`` once); ``binarize``: threshold each view
    at 0.5 after augmentation, as the paper's code does for binarised MNIST (so training views
    are binary like the test images, not grey at crop edges).
    """

    def __init__(self, images: torch.Tensor, spec: AugmentSpec, device: torch.device, dist_info: DistInfo,
                 binarize: bool = False):
        self.images = images.to(device)
        self.spec, self.device, self.dist, self.binarize = spec, device, dist_info, binarize
        self.pipeline = pipeline_for(spec, binarize)

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, idx: torch.Tensor, n_views: int, generator: torch.Generator) -> Batch:
        """Views for the global batch ``idx`` [b_global], sliced to this process: Batch with images
        [b, C, H, W] and views [b, J, C, H, W] in [0, 1], b = b_global / world."""
        n_global, r, w = idx.shape[0], self.dist.rank, self.dist.world
        params = self.pipeline.make_params(n_global * n_views, tuple(self.images.shape[-2:]), generator, self.device)
        b = n_global // w
        images = to_float(self.images[idx[r * b:(r + 1) * b]])
        views = self.pipeline(images, params[r * b * n_views:(r + 1) * b * n_views])
        device = self.device

        def randn(per_image: int, dim: int) -> torch.Tensor:
            noise = torch.randn(n_global * per_image, dim, generator=generator, device=device)
            return noise[r * b * per_image:(r + 1) * b * per_image]

        return Batch(images, views, randn)
