"""Batched augmentation: J views per image, each with its own random parameters.

The parameter distribution is that of torchvision's
``RandomResizedCrop(size, scale, ratio)`` followed by ``RandomVerticalFlip(p)``
(paper Table 2), but all views of a batch are sampled and applied at once with
tensor operations on the training device: no per-image Python or PIL loop.

A crop (top i, left j, height h, width w) resized back to H x W with bilinear
interpolation (align_corners=False) is the affine map of output coordinates
u in [-1, 1] to input coordinates

    x_in = u * w / W + (2 j + w) / W - 1,    y_in = ±v * h / H + (2 i + h) / H - 1

sampled with ``grid_sample``; a vertical flip negates the v coefficient. The
full image with no flip is the identity map, so it returns the image itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data.datasets import AugmentSpec

ATTEMPTS = 10  # torchvision tries 10 random boxes before falling back to a centre crop


@dataclass
class ViewParams:
    """Crop boxes and flips for a batch of views, rows ordered image-major (image b, view j)."""

    top: torch.Tensor  # int64 [n]
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    vflip: torch.Tensor  # bool [n]

    def __getitem__(self, rows) -> "ViewParams":
        return ViewParams(self.top[rows], self.left[rows], self.height[rows], self.width[rows], self.vflip[rows])

    def __len__(self) -> int:
        return self.top.shape[0]


def sample_crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                      generator: torch.Generator, device: torch.device | str = "cpu"):
    """torchvision's RandomResizedCrop.get_params, for ``n`` boxes at once.

    Each box tries ``ATTEMPTS`` draws of area ~ U(scale) * H * W and
    log aspect ~ U(log ratio); the first draw that fits is kept, else the
    centre crop with the aspect clamped to ``ratio``.
    """
    area = height * width
    u_area = torch.rand(n, ATTEMPTS, generator=generator, device=device, dtype=torch.float64)
    u_ratio = torch.rand(n, ATTEMPTS, generator=generator, device=device, dtype=torch.float64)
    u_top = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    u_left = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    target_area = area * (scale[0] + (scale[1] - scale[0]) * u_area)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
    w = torch.round(torch.sqrt(target_area * aspect)).long()
    h = torch.round(torch.sqrt(target_area / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.long().argmax(dim=1)  # index of the first attempt that fits (0 if none)
    any_ok = ok.any(dim=1)
    w = w.gather(1, first[:, None]).squeeze(1)
    h = h.gather(1, first[:, None]).squeeze(1)
    # Fallback: centre crop with the aspect clamped into ``ratio``.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = height, int(round(height * max(ratio)))
    else:
        fw, fh = width, height
    w = torch.where(any_ok, w, torch.full_like(w, fw))
    h = torch.where(any_ok, h, torch.full_like(h, fh))
    top = torch.floor(u_top * (height - h + 1)).long().clamp_max(height - h)
    left = torch.floor(u_left * (width - w + 1)).long().clamp_max(width - w)
    top = torch.where(any_ok, top, (height - h) // 2)
    left = torch.where(any_ok, left, (width - w) // 2)
    return top, left, h, w


def sample_view_params(n_images: int, n_views: int, image_hw: tuple[int, int], spec: AugmentSpec,
                       generator: torch.Generator, device: torch.device | str = "cpu") -> ViewParams:
    """Independent crop and flip parameters for n_images * n_views views."""
    n = n_images * n_views
    height, width = image_hw
    top, left, h, w = sample_crop_boxes(n, height, width, spec.crop_scale, spec.crop_ratio, generator, device)
    vflip = torch.rand(n, generator=generator, device=device) < spec.vflip_p
    return ViewParams(top, left, h, w, vflip)


def crop_flip_grid(params: ViewParams, height: int, width: int, dtype=torch.float32) -> torch.Tensor:
    """Sampling grid [n, H, W, 2] for ``grid_sample`` implementing crop + resize + flip."""
    n = len(params)
    h, w = params.height.to(dtype), params.width.to(dtype)
    top, left = params.top.to(dtype), params.left.to(dtype)
    theta = torch.zeros(n, 2, 3, dtype=dtype, device=h.device)
    sign = 1.0 - 2.0 * params.vflip.to(dtype)
    theta[:, 0, 0] = w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = sign * h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    return F.affine_grid(theta, [n, 1, height, width], align_corners=False)


def apply_views(images: torch.Tensor, params: ViewParams) -> torch.Tensor:
    """Views of float images [B, C, H, W] -> [B, J, C, H, W] with J = len(params) / B."""
    b, c, height, width = images.shape
    n_views = len(params) // b
    src = images.repeat_interleave(n_views, dim=0)
    grid = crop_flip_grid(params, height, width, dtype=images.dtype)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.view(b, n_views, c, height, width)


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1]."""
    return images_uint8.to(torch.float32).div_(255.0)


def augment(images: torch.Tensor, n_views: int, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """J random views of each image: float [B, C, H, W] -> [B, J, C, H, W] (convenience wrapper)."""
    params = sample_view_params(images.shape[0], n_views, images.shape[-2:], spec, generator, images.device)
    return apply_views(images, params)
