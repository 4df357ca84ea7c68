"""Data sets as uint8 tensors in memory, and where their files are looked for."""

from .datasets import DATASETS, DatasetSpec, ImageData, load_dataset

__all__ = ["DATASETS", "DatasetSpec", "ImageData", "load_dataset"]
