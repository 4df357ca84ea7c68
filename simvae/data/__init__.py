"""Data sets as uint8 tensors in memory (or memory-mapped), and where their files are looked for.

Each data set registers itself in its own module (``registry.register_dataset``); a new data set
is its module plus one import line below.
"""

from .base import ImageData
from .registry import (
    COLOUR_AUGMENT,
    DATASETS,
    GREY_AUGMENT,
    NO_AUGMENT,
    AugmentSpec,
    DatasetSpec,
    Preset,
    dataset,
    load_dataset,
    preset,
    register_dataset,
)
from .targets import Target

# isort: off
from . import mnist, cifar, celeba, folder  # noqa: F401,E402  (registration, in the order data sets are listed)
# isort: on

__all__ = [
    "COLOUR_AUGMENT",
    "GREY_AUGMENT",
    "NO_AUGMENT",
    "DATASETS",
    "AugmentSpec",
    "DatasetSpec",
    "ImageData",
    "Preset",
    "Target",
    "dataset",
    "load_dataset",
    "preset",
    "register_dataset",
]
