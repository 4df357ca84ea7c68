"""A toy data set, as a user would add one: this file plus one import line.

Bars at a class-dependent height (``conftest.make_tiny_images``), 16 x 16 grey images, with its
preset: the MLP nets, a 4-d representation and the grey augmentation."""

import torch
from conftest import make_tiny_images

from simvae.data import GREY_AUGMENT, DatasetSpec, ImageData, Preset, register_dataset


def load_bars(data_dir=None, binarize: bool = False, download: bool = True) -> ImageData:
    x, y = make_tiny_images(96, seed=3, size=16)
    tx, ty = make_tiny_images(32, seed=4, size=16)
    classes = [str(c) for c in range(10)]
    return ImageData(
        "toy-bars",
        torch.from_numpy(x)[:, None],
        torch.from_numpy(y).long(),
        torch.from_numpy(tx)[:, None],
        torch.from_numpy(ty).long(),
        classes,
        source="generated bars",
    )


register_dataset(DatasetSpec("toy-bars", load_bars, Preset("mlp", 4, GREY_AUGMENT), (1, 16, 16), tuple(map(str, range(10)))))
