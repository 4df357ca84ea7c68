"""What a loaded data set is: uint8 images in memory, labels, and the targets they answer."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError, DataError
from .targets import Target

DATA_DIR_ENV = "SIMVAE_DATA_DIR"
OFFLINE_ENV = "SIMVAE_OFFLINE"


def search_dirs(data_dir) -> tuple[list[Path], bool]:
    """(folders to look in, explicit): ``data_dir`` alone when given (raises DataError when it is
    not a folder), else the one named by ``$SIMVAE_DATA_DIR``, else none."""
    if data_dir:
        base = Path(data_dir).expanduser()
        if not base.is_dir():
            raise DataError(f"data folder {data_dir} does not exist or is not a folder (from --data-dir)")
        return [base], True
    env = os.environ.get(DATA_DIR_ENV)
    return ([Path(env).expanduser()] if env else []), False


@dataclass
class ImageData:
    name: str
    train_images: torch.Tensor  # uint8 [N, C, H, W]
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    source: str = ""
    binarized: bool = False  # images thresholded at 0.5 (MNIST): training views are thresholded too
    has_labels: bool = True  # False for image folders without class folders: labels are all 0, no evaluation

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    def subset_train(self, n: int | None) -> "ImageData":
        """The first ``n`` training images and their labels (for quick runs); all of them for None.

        Raises ConfigError when ``n`` is below 1 or larger than the training set (which would
        otherwise silently train on all of it)."""
        if n is None or n == len(self.train_images):
            return self
        if n < 1 or n > len(self.train_images):
            what = "must be at least 1" if n < 1 else f"is larger than the training set ({len(self.train_images)} images)"
            raise ConfigError(f"train_subset {n} {what}; drop --train-subset or lower it")
        return dataclasses.replace(self, train_images=self.train_images[:n], train_labels=self.train_labels[:n])

    def targets(self) -> list[Target]:
        """The evaluation targets: the class labels, as the content target ``class``."""
        return [Target("class", self.train_labels, self.test_labels, len(self.classes), "content", list(self.classes))]
