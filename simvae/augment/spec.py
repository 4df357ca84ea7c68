"""What an augmentation pipeline draws: the per-data-set parameters of paper Table 2 (grey data)
and SPEC §4 (colour data: crop scale (0.6, 1) and colour jitter)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AugmentSpec:
    """RandomResizedCrop(scale, ratio) + RandomVerticalFlip(vflip_p) [+ RandomApply(ColorJitter)]."""

    crop_scale: tuple[float, float] = (0.4, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.3)
    vflip_p: float = 0.5
    jitter_strength: float = 0.0  # brightness, contrast, saturation
    jitter_hue: float = 0.0
    jitter_p: float = 0.0


GREY_AUGMENT = AugmentSpec(crop_scale=(0.4, 1.0), crop_ratio=(0.75, 1.3), vflip_p=0.5)
COLOUR_AUGMENT = AugmentSpec(crop_scale=(0.6, 1.0), crop_ratio=(0.75, 1.3), vflip_p=0.5,
                             jitter_strength=0.8, jitter_hue=0.2, jitter_p=0.8)
