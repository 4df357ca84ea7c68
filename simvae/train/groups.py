"""Group sources: where a training step's groups of J related samples come from.

A step draws ``b`` groups ``[b, J, C, H, W]`` for the global batch and keeps this process's
slice, so that one step on N processes sees exactly the samples, the augmentation draws and
the sampling noise of one step on one process. The loop knows nothing else about the data.

- ``AugmentedImageGroups``: J augmentations of one image (the paper's setting, §4/§5).
- ``ListedGroups``: groups of related images listed in a groups file (``--groups``): each group
  is one x_i of the paper's model (§3); a step draws J members of each group, each augmented
  with the data set's augmentation or not (``--augment none``).

``group_source_for`` picks the source of a run.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ..augment import AugmentSpec, pipeline_for, to_float
from ..dist import DistInfo
from ..errors import ConfigError
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

    def __init__(self, images: torch.Tensor, spec: AugmentSpec, device: torch.device, dist_info: DistInfo, binarize: bool = False):
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
        images = to_float(self.images[idx[r * b : (r + 1) * b]])
        views = self.pipeline(images, params[r * b * n_views : (r + 1) * b * n_views])
        device = self.device

        def randn(per_image: int, dim: int) -> torch.Tensor:
            noise = torch.randn(n_global * per_image, dim, generator=generator, device=device)
            return noise[r * b * per_image : (r + 1) * b * per_image]

        return Batch(images, views, randn)


class ListedGroups:
    """Groups of related images, listed (``--groups``): one group is one x_i of the paper's model
    (§3), its members the J samples x_i^j, made on the training device in one batched pass.

    images: uint8 [N, C, H, W] (moved to ``device`` once); groups: int64 [N], the group of each
    image (0..G-1; -1: in no group, never drawn). A step draws, for each group of the global batch,
    k = J members (J + 1 with ``separate_image``): without replacement where the group has at least
    k members, with replacement where it has fewer (``with_replacement(k)`` counts those groups).
    Each drawn member used as a view is augmented with ``spec`` (the identity for ``--augment none``).

    Batch.images is the first drawn member, un-augmented; Batch.views are the members themselves
    (augmented), or with ``separate_image`` the members after the first: CR-VAE, whose encoder
    takes an image and a transformed view of it (``views_per_image`` 2 for 1 view), then sees a
    member and another member of its group. As in ``AugmentedImageGroups`` every draw is made for
    the global batch and sliced to this process, so N processes make exactly one process's step.
    """

    def __init__(
        self,
        images: torch.Tensor,
        groups: torch.Tensor,
        spec: AugmentSpec,
        device: torch.device,
        dist_info: DistInfo,
        binarize: bool = False,
        separate_image: bool = False,
    ):
        groups = torch.as_tensor(groups, dtype=torch.int64).cpu()
        if groups.shape != (images.shape[0],):
            raise ValueError(f"groups has shape {tuple(groups.shape)}, expected [{images.shape[0]}] (one per image)")
        members = torch.nonzero(groups >= 0).squeeze(1)
        if members.numel() == 0:
            raise ValueError("no image is in a group")
        ids = torch.unique(groups[members], return_inverse=True)[1]  # groups numbered 0..G-1 (a subset may skip some)
        order = torch.argsort(ids, stable=True)
        members, ids = members[order], ids[order]
        self.sizes = torch.bincount(ids)
        starts = torch.cumsum(self.sizes, 0) - self.sizes
        width = int(self.sizes.max())
        # members[g, m]: image index of member m of group g (padded with 0 past the group's size)
        table = torch.zeros(len(self.sizes), width, dtype=torch.int64)
        pos = torch.arange(members.numel()) - torch.repeat_interleave(starts, self.sizes)
        table[torch.repeat_interleave(torch.arange(len(self.sizes)), self.sizes), pos] = members
        self.images = images.to(device)
        self.table, self.sizes_dev = table.to(device), self.sizes.to(device)
        self.spec, self.device, self.dist, self.binarize = spec, device, dist_info, binarize
        self.separate_image = separate_image
        self.pipeline = pipeline_for(spec, binarize)

    def __len__(self) -> int:
        return len(self.sizes)

    def members_per_step(self, n_views: int) -> int:
        """Members drawn per group for ``n_views`` views (one more with ``separate_image``)."""
        return n_views + int(self.separate_image)

    def with_replacement(self, n_views: int) -> int:
        """How many groups have fewer members than a step draws (they are drawn with replacement)."""
        return int((self.sizes < self.members_per_step(n_views)).sum())

    def describe(self, n_views: int) -> str:
        """'40 groups of 2-9 images (median 5); 3 with fewer than 10 members, drawn with replacement'."""
        k = self.members_per_step(n_views)
        n_small = self.with_replacement(n_views)
        text = f"{len(self)} groups of {int(self.sizes.min())}-{int(self.sizes.max())} images (median {int(self.sizes.median())})"
        return text + (f"; {n_small} with fewer than {k} members, drawn with replacement" if n_small else "")

    def draw(self, idx: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """Image indices [b_global, k] of k members of each group ``idx`` [b_global], all processes'."""
        idx = idx.to(self.device)
        sizes = self.sizes_dev[idx]
        width = self.table.shape[1]
        keys = torch.rand(idx.shape[0], width, generator=generator, device=self.device)
        keys = keys.masked_fill(torch.arange(width, device=self.device) >= sizes[:, None], 2.0)
        distinct = torch.argsort(keys, dim=1)[:, :k] if k <= width else torch.zeros(idx.shape[0], k, dtype=torch.int64, device=self.device)
        repeated = (torch.rand(idx.shape[0], k, generator=generator, device=self.device) * sizes[:, None]).long()
        pos = torch.where((sizes >= k)[:, None], distinct, repeated.clamp_max(sizes[:, None] - 1))
        return torch.gather(self.table[idx], 1, pos)

    def batch(self, idx: torch.Tensor, n_views: int, generator: torch.Generator) -> Batch:
        """Members for the global batch of groups ``idx`` [b_global], sliced to this process: Batch
        with images [b, C, H, W] (first members, un-augmented) and views [b, J, C, H, W] in [0, 1],
        b = b_global / world."""
        n_global, r, w = idx.shape[0], self.dist.rank, self.dist.world
        k = self.members_per_step(n_views)
        chosen = self.draw(idx, k, generator)
        params = self.pipeline.make_params(n_global * n_views, tuple(self.images.shape[-2:]), generator, self.device)
        b = n_global // w
        mine = chosen[r * b : (r + 1) * b]
        images = to_float(self.images[mine[:, 0]])
        members = mine[:, 1:] if self.separate_image else mine
        flat = to_float(self.images[members.reshape(-1)])
        views = self.pipeline(flat, params[r * b * n_views : (r + 1) * b * n_views]).reshape(b, n_views, *flat.shape[1:])
        device = self.device

        def randn(per_image: int, dim: int) -> torch.Tensor:
            noise = torch.randn(n_global * per_image, dim, generator=generator, device=device)
            return noise[r * b * per_image : (r + 1) * b * per_image]

        return Batch(images, views, randn)


def group_source_for(run, data, method, device: torch.device, dist_info: DistInfo, images_per_step: int) -> GroupSource:
    """The group source of ``run``: ``ListedGroups`` with ``--groups`` (the groups the data set read
    from the file, ``data.train_groups``), else ``AugmentedImageGroups``. Augmentation: the data
    set's preset, the identity with ``--augment none``. Raises ConfigError when the data set
    carries no groups or there are fewer groups than a step takes."""
    from ..run_config import data_preset

    spec = data_preset(run, data.image_shape).augment
    if not run.train.groups:
        return AugmentedImageGroups(data.train_images, spec, device, dist_info, binarize=data.binarized)
    groups = getattr(data, "train_groups", None)
    if groups is None:
        raise ConfigError(f"--groups: data set '{run.train.dataset}' carries no groups; use --dataset folder")
    # a method that encodes more samples than views (CR-VAE: the image and one view) takes its
    # image from another member of the group
    if not bool((torch.as_tensor(groups) >= 0).any()):
        raise ConfigError(
            f"--groups {run.train.groups}: none of the {len(groups)} training images is in a group"
            + (" (--train-subset keeps the first ones)" if run.train.train_subset else "")
        )
    separate = type(method).views_per_image(method.cfg) > method.n_views
    source = ListedGroups(data.train_images, groups, spec, device, dist_info, binarize=data.binarized, separate_image=separate)
    if len(source) < images_per_step:
        raise ConfigError(
            f"--groups {run.train.groups}: {len(source)} groups, but a step takes {images_per_step}; "
            "lower --views-per-step / --batch-size or list more groups"
        )
    return source
