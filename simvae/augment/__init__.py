"""Augmentation, batched on the training device: J views per image, each with its own draws.

ops.py:      augmentations as a list of operations (make_params + transform) and a Pipeline.

geometry.py: RandomResizedCrop + RandomVerticalFlip as two interpolation-matrix products.
colour.py:   RandomApply(ColorJitter) for colour data sets.
"""

from .colour import JitterParams, colour_jitter, sample_jitter
from .geometry import ViewParams, apply_views, render_views, resize_matrices, sample_crop_boxes, to_float
from .ops import Augmentation, ColourJitter, CropFlip, Pipeline, PipelineParams, Threshold, augment, pipeline_for, sample_view_params
from .spec import COLOUR_AUGMENT, GREY_AUGMENT, AugmentSpec

__all__ = [
    "Augmentation",
    "ColourJitter",
    "CropFlip",
    "Pipeline",
    "PipelineParams",
    "Threshold",
    "pipeline_for",
    "render_views",
    "AugmentSpec",
    "GREY_AUGMENT",
    "COLOUR_AUGMENT",
    "ViewParams",
    "JitterParams",
    "apply_views",
    "augment",
    "colour_jitter",
    "resize_matrices",
    "sample_crop_boxes",
    "sample_jitter",
    "sample_view_params",
    "to_float",
]
