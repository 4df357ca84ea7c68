"""Augmentations as a list of operations (torchvision transforms v2's ``make_params`` +
``transform``), batched over all views of a step.

Each operation draws its parameters for ``n`` views at once (``make_params``; rows ordered
image-major: image b, view j) and applies them to a batch ``x`` [b, J, C, H, W] (``transform``).
The first operation renders the views from the images: ``x`` is then the images as
[b, 1, C, H, W], broadcast over J. A ``Pipeline`` draws every operation's parameters in list
order (so a data set without colour keeps its random stream) and applies them in that order;
``params[rows]`` slices them for one DDP process. A new augmentation is a new operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .colour import colour_jitter, sample_jitter
from .geometry import ViewParams, apply_views, render_views, sample_crop_boxes
from .spec import AugmentSpec


class Augmentation(Protocol):
    def make_params(self, n: int, image_hw: tuple[int, int], generator: torch.Generator, device: torch.device | str) -> Any: ...

    def transform(self, x: torch.Tensor, params: Any) -> torch.Tensor: ...


@dataclass
class CropFlip:
    """RandomResizedCrop(scale, ratio) + RandomVerticalFlip(p), rendered as two interpolation-matrix
    products per view (``geometry.py``)."""

    scale: tuple[float, float] = (0.4, 1.0)
    ratio: tuple[float, float] = (0.75, 1.3)
    vflip_p: float = 0.5

    def make_params(self, n, image_hw, generator, device="cpu"):
        height, width = image_hw
        top, left, h, w = sample_crop_boxes(n, height, width, self.scale, self.ratio, generator, device)
        vflip = torch.rand(n, generator=generator, device=device) < self.vflip_p
        return ViewParams(top, left, h, w, vflip)

    def transform(self, x, params):
        return render_views(x[:, 0] if x.shape[1] == 1 else x, params)


@dataclass
class ColourJitter:
    """RandomApply(ColorJitter(strength, strength, strength, hue), p), one draw and order per view."""

    strength: float = 0.8
    hue: float = 0.2
    p: float = 0.8

    def make_params(self, n, image_hw, generator, device="cpu"):
        return sample_jitter(n, self.strength, self.hue, self.p, generator, device)

    def transform(self, x, params):
        b, j = x.shape[:2]
        return colour_jitter(x.flatten(0, 1), params).view(x.shape)


@dataclass
class Threshold:
    """Binarise at ``level`` (MNIST: views thresholded after the crop, as the test images are)."""

    level: float = 0.5

    def make_params(self, n, image_hw, generator, device="cpu"):
        return None

    def transform(self, x, params):
        return (x >= self.level).to(x.dtype)


class PipelineParams(list):
    """The parameters of each operation of a pipeline; ``params[rows]`` slices every one."""

    def __getitem__(self, rows):
        if isinstance(rows, int):
            return list.__getitem__(self, rows)
        return PipelineParams(None if p is None else p[rows] for p in self)

    def __len__(self) -> int:  # the number of views
        return next((len(p) for p in self if p is not None), 0)


class Pipeline:
    """A list of operations: ``make_params`` for n views, then ``__call__`` on images."""

    def __init__(self, ops: list):
        self.ops = list(ops)

    def make_params(
        self, n: int, image_hw: tuple[int, int], generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> PipelineParams:
        return PipelineParams(op.make_params(n, image_hw, generator, device) for op in self.ops)

    def __call__(self, images: torch.Tensor, params: PipelineParams) -> torch.Tensor:
        """Views [b, J, C, H, W] of float images [b, C, H, W], J = len(params) / b."""
        x = images[:, None]
        for op, p in zip(self.ops, params):
            x = op.transform(x, p)
        return x


def pipeline_for(spec: AugmentSpec, binarize: bool = False) -> Pipeline:
    """The pipeline of a data set's augmentation spec (paper Table 2)."""
    ops: list = [CropFlip(spec.crop_scale, spec.crop_ratio, spec.vflip_p)]
    if spec.jitter_p > 0:
        ops.append(ColourJitter(spec.jitter_strength, spec.jitter_hue, spec.jitter_p))
    if binarize:
        ops.append(Threshold(0.5))
    return Pipeline(ops)


def sample_view_params(
    n_images: int,
    n_views: int,
    image_hw: tuple[int, int],
    spec: AugmentSpec,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> ViewParams:
    """Independent crop, flip (and, where the data set has it, colour jitter) parameters for
    n_images * n_views views: the draws of ``pipeline_for(spec)``, in one ViewParams."""
    n = n_images * n_views
    params = CropFlip(spec.crop_scale, spec.crop_ratio, spec.vflip_p).make_params(n, image_hw, generator, device)
    if spec.jitter_p > 0:  # drawn after the geometry: grey data sets keep their random stream
        params.jitter = ColourJitter(spec.jitter_strength, spec.jitter_hue, spec.jitter_p).make_params(n, image_hw, generator, device)
    return params


def augment(images: torch.Tensor, n_views: int, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """J random views of each image: float [B, C, H, W] -> [B, J, C, H, W] (convenience wrapper)."""
    params = sample_view_params(images.shape[0], n_views, images.shape[-2:], spec, generator, images.device)
    return apply_views(images, params)
