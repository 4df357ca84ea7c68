"""Batched geometric augmentation: J views per image, each with its own random parameters.

The parameter distribution is that of torchvision's
``RandomResizedCrop(size, scale, ratio)`` followed by ``RandomVerticalFlip(p)``
(paper Table 2), but all views of a batch are sampled and applied at once with
tensor operations on the training device: no per-image Python or PIL loop.

A crop (top i, left j, height h, width w) resized back to H x W with bilinear
interpolation (align_corners=False, edges clamped) is separable: output pixel
(r, c) reads input row i + (r + 1/2) h / H - 1/2 and column j + (c + 1/2) w / W - 1/2.
So each view is R_y @ image @ R_x^T with two small interpolation matrices, and a
vertical flip reverses the rows of R_y. A whole batch of views is two batched
matrix products: no sampling grid, no per-pixel gather. The full image with no flip
gives identity matrices, so it returns the image itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .colour import JitterParams, colour_jitter

ATTEMPTS = 10  # torchvision tries 10 random boxes before falling back to a centre crop


@dataclass
class ViewParams:
    """Crop boxes and flips for a batch of views, rows ordered image-major (image b, view j)."""

    top: torch.Tensor  # int64 [n]
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    vflip: torch.Tensor  # bool [n]
    jitter: JitterParams | None = None  # colour data sets only

    def __getitem__(self, rows) -> "ViewParams":
        jitter = None if self.jitter is None else self.jitter[rows]
        return ViewParams(self.top[rows], self.left[rows], self.height[rows], self.width[rows], self.vflip[rows], jitter)

    def __len__(self) -> int:
        return self.top.shape[0]


def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    device: torch.device | str = "cpu",
):
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


def resize_matrices(
    start: torch.Tensor, length: torch.Tensor, size: int, reverse: torch.Tensor | None = None, dtype=torch.float32
) -> torch.Tensor:
    """Bilinear resampling of the interval [start, start + length) of a size-long axis to ``size`` samples.

    Returns R [n, size_out, size_in] with, for output o (taken from the far end when ``reverse``),

        p_o = start + (o + 1/2) * length / size - 1/2,   clamped to [start, start + length - 1]
        R[o, floor p_o] = 1 - frac(p_o),   R[o, floor p_o + 1] = frac(p_o)

    which is cropping the interval, then ``interpolate(mode="bilinear", align_corners=False)``
    along one axis (torchvision's ``resized_crop`` without antialiasing): crop + resize is
    separable, so a view is R_y @ image @ R_x^T.
    """
    n, device = start.shape[0], start.device
    o = torch.arange(size, device=device, dtype=dtype).expand(n, size)
    if reverse is not None:
        o = torch.where(reverse[:, None], size - 1 - o, o)
    lo = start.to(dtype)[:, None]
    p = lo + (o + 0.5) * (length.to(dtype)[:, None] / size) - 0.5
    # clamped at the crop box's edge (as resizing the cropped image does), not the image's
    p = torch.minimum(torch.maximum(p, lo), lo + length.to(dtype)[:, None] - 1)
    i0 = p.floor()
    frac = p - i0
    i0 = i0.long()
    i1 = (i0 + 1).clamp_max(size - 1)
    r = torch.zeros(n, size, size, device=device, dtype=dtype)
    r.scatter_add_(2, i0[..., None], (1 - frac)[..., None])
    r.scatter_add_(2, i1[..., None], frac[..., None])
    return r


def render_views(images: torch.Tensor, params: ViewParams) -> torch.Tensor:
    """Crop + resize + flip of float images [B, C, H, W] -> views [B, J, C, H, W], J = len(params) / B:
    view = R_y @ image @ R_x^T per channel (two small batched matrix products; no grid)."""
    b, c, height, width = images.shape
    n_views = len(params) // b
    ry = resize_matrices(params.top, params.height, height, reverse=params.vflip, dtype=images.dtype)
    rx = resize_matrices(params.left, params.width, width, dtype=images.dtype)
    ry = ry.view(b, n_views, 1, height, height)
    rx_t = rx.view(b, n_views, 1, width, width).transpose(-1, -2)
    return torch.matmul(torch.matmul(ry, images[:, None]), rx_t)


def apply_views(images: torch.Tensor, params: ViewParams) -> torch.Tensor:
    """Views of float images [B, C, H, W] -> [B, J, C, H, W]: ``render_views``, then colour jitter
    where the parameters have it."""
    views = render_views(images, params)
    if params.jitter is not None:
        b, j = views.shape[:2]
        views = colour_jitter(views.flatten(0, 1), params.jitter).view(views.shape)
    return views


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1]."""
    return images_uint8.to(torch.float32).div_(255.0)
