"""Batched colour jitter: torchvision's ``RandomApply([ColorJitter(b, c, s, h)], p)``, one draw per view.

For each view: with probability p, brightness, contrast, saturation and hue are changed in a
random order (a random permutation per view, as ColorJitter draws one per call) by factors

    brightness, contrast, saturation ~ U[max(0, 1 - s), 1 + s],   hue ~ U[-h, h]

on float RGB images in [0, 1], with ITU-R 601 grey g = 0.2989 r + 0.587 g + 0.114 b:

    brightness  x <- clamp(f x)
    contrast    x <- clamp(f x + (1 - f) mean(g))      (mean over the whole view)
    saturation  x <- clamp(f x + (1 - f) g)            (per pixel)
    hue         h <- (h + f) mod 1 in HSV space

All views of a batch are processed together: at each of the 4 positions of the order, each
operation is applied to the rows that have it at that position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GREY_WEIGHTS = (0.2989, 0.587, 0.114)
OPS = ("brightness", "contrast", "saturation", "hue")


@dataclass
class JitterParams:
    """Per-view jitter draws; rows ordered as the views."""

    apply: torch.Tensor  # bool [n]
    factors: torch.Tensor  # float [n, 4]: brightness, contrast, saturation, hue
    order: torch.Tensor  # int64 [n, 4]: a permutation of OPS' indices per view

    def __getitem__(self, rows) -> "JitterParams":
        return JitterParams(self.apply[rows], self.factors[rows], self.order[rows])


def sample_jitter(
    n: int, strength: float, hue: float, p: float, generator: torch.Generator, device: torch.device | str = "cpu"
) -> JitterParams:
    apply = torch.rand(n, generator=generator, device=device) < p
    u = torch.rand(n, 4, generator=generator, device=device)
    lo = max(0.0, 1.0 - strength)
    factors = torch.cat([lo + (1.0 + strength - lo) * u[:, :3], hue * (2 * u[:, 3:] - 1)], dim=1)
    order = torch.rand(n, 4, generator=generator, device=device).argsort(dim=1)  # uniform random permutations
    return JitterParams(apply, factors, order)


def grey(x: torch.Tensor) -> torch.Tensor:
    """[n, 3, H, W] -> [n, 1, H, W] luma."""
    w = torch.tensor(GREY_WEIGHTS, dtype=x.dtype, device=x.device)
    return torch.einsum("nchw,c->nhw", x, w).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = f.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def adjust_brightness(x, f):
    return (x * f.view(-1, 1, 1, 1)).clamp_(0, 1)


def adjust_contrast(x, f):
    return _blend(x, grey(x).mean(dim=(1, 2, 3), keepdim=True), f)


def adjust_saturation(x, f):
    return _blend(x, grey(x), f)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """[n, 3, H, W] RGB in [0, 1] -> HSV with hue in [0, 1)."""
    r, g, b = x.unbind(1)
    v, argmax = x.max(dim=1)
    c = v - x.min(dim=1).values  # chroma
    safe_c = torch.where(c > 0, c, torch.ones_like(c))
    # hue sector by the largest channel (ties: red, then green, as the usual definition)
    h = torch.where(argmax == 0, ((g - b) / safe_c) % 6, torch.where(argmax == 1, (b - r) / safe_c + 2, (r - g) / safe_c + 4))
    h = torch.where(c > 0, h / 6, torch.zeros_like(h))
    s = torch.where(v > 0, c / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    return torch.stack([h, s, v], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of rgb_to_hsv: channel_k = v - v s clamp(min(m, 4 - m), 0, 1), m = (k + 6 h) mod 6, k = 5, 3, 1."""
    h, s, v = (t.unsqueeze(1) for t in hsv.unbind(1))
    k = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device).view(1, 3, 1, 1)
    m = (k + 6 * h) % 6
    return v - v * s * torch.minimum(m, 4 - m).clamp(0, 1)


def adjust_hue(x, f):
    hsv = rgb_to_hsv(x)
    hsv[:, 0] = (hsv[:, 0] + f.view(-1, 1, 1)) % 1.0
    return hsv_to_rgb(hsv).clamp_(0, 1)


ADJUST = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def colour_jitter(x: torch.Tensor, params: JitterParams, masked: bool | None = None) -> torch.Tensor:
    """Jittered copies of RGB views [n, 3, H, W] (rows without ``apply`` are returned unchanged).

    Two equal ways through the 4 x 4 (position, operation) pairs: on the CPU each operation runs
    on just the rows that have it at that position (indexing needs their count on the host); on
    a GPU, where that count would stall the pipeline 16 times a step, each operation runs on all
    rows and ``torch.where`` keeps it where it belongs (4x the arithmetic, no synchronisation).
    """
    if x.shape[1] != 3:
        raise ValueError(f"colour jitter needs RGB images, got {x.shape[1]} channel(s)")
    masked = x.is_cuda if masked is None else masked
    out = x.clone()
    for pos in range(len(OPS)):
        for op, adjust in enumerate(ADJUST):
            here = params.apply & (params.order[:, pos] == op)
            if masked:
                out = torch.where(here.view(-1, 1, 1, 1), adjust(out, params.factors[:, op]), out)
                continue
            rows = here.nonzero().squeeze(1)
            if rows.numel():
                out[rows] = adjust(out[rows], params.factors[rows, op])
    return out
