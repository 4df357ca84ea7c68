"""Data sets as uint8 tensors in memory, and where their files are looked for."""

from .datasets import DATASETS, DatasetSpec, ImageData, load_dataset
from .targets import Target

__all__ = ["DATASETS", "DatasetSpec", "ImageData", "Target", "load_dataset"]
