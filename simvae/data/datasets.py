"""The data-set registry: what each data set is, how it is augmented, where its files live.

A loaded data set is an ``ImageData``: uint8 image tensors [N, C, H, W] and int64
labels, kept whole in memory (Fashion-MNIST's 70k images are 55 MB), so training
shuffles indices rather than copying images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..errors import DataError
from .idx import read_idx_pair

DATA_DIR_ENV = "SIMVAE_DATA_DIR"
OFFLINE_ENV = "SIMVAE_OFFLINE"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class AugmentSpec:
    """Per-data-set augmentation (paper Table 2)."""

    crop_scale: tuple[float, float] = (0.4, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.3)
    vflip_p: float = 0.5
    jitter_strength: float = 0.0  # brightness, contrast, saturation
    jitter_hue: float = 0.0
    jitter_p: float = 0.0


@dataclass
class ImageData:
    name: str
    train_images: torch.Tensor  # uint8 [N, C, H, W]
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    source: str = ""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    def subset_train(self, n: int | None) -> "ImageData":
        """The first ``n`` training images (for quick runs)."""
        if n is None or n >= len(self.train_images):
            return self
        return ImageData(self.name, self.train_images[:n], self.train_labels[:n], self.test_images,
                         self.test_labels, self.classes, self.source)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    image_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    augment: AugmentSpec
    default_latent_dim: int
    network: str  # "mlp" or "conv"
    loader: Callable[..., ImageData] = field(repr=False, compare=False)
    how_to_get: str = ""


def _candidate_dirs(name: str, data_dir: str | Path | None, extra: list[Path]) -> list[Path]:
    if data_dir:
        # An explicit folder is the only place looked: one that lacks the files is an error,
        # never a silent fall-back to $SIMVAE_DATA_DIR or a system copy of the data.
        base = Path(data_dir).expanduser()
        return [base, base / name, base / name / "raw"]
    dirs: list[Path] = []
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        base = Path(env).expanduser()
        dirs += [base, base / name, base / name / "raw"]
    return dirs + extra


def _find_idx_dir(dirs: list[Path]) -> Path | None:
    for d in dirs:
        if all(_idx_path(d, stem) is not None for stem in IDX_FILES.values()):
            return d
    return None


def _idx_path(d: Path, stem: str) -> Path | None:
    for suffix in ("", ".gz"):
        p = d / (stem + suffix)
        if p.is_file():
            return p
    return None


def _download_idx(name: str) -> Path | None:
    """Fetch with torchvision where a network exists; None when offline or it fails."""
    if os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes"):
        return None
    try:
        from torchvision import datasets as tvd

        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "simvae"
        cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST}[name]
        cls(str(root), train=True, download=True)
        cls(str(root), train=False, download=True)
        return root / cls.__name__ / "raw"
    except Exception:  # no network, blocked, or partial download: report where we looked
        return None


def _load_idx_dataset(name: str, classes: tuple[str, ...], system_dirs: list[Path], how_to_get: str,
                      data_dir=None, binarize: bool = False, download: bool = True) -> ImageData:
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        # A mistyped folder must not silently fall through to another copy of the data.
        raise DataError(f"data folder {data_dir} does not exist or is not a folder (from --data-dir)")
    dirs = _candidate_dirs(name, data_dir, system_dirs)
    found = _find_idx_dir(dirs)
    if found is None and download:
        found = _download_idx(name)
        if found is not None and _find_idx_dir([found]) is None:
            found = None
    if found is None:
        looked = ", ".join(str(d) for d in dirs) or "(no folders)"
        missing = ", ".join(f"{s}[.gz]" for s in IDX_FILES.values())
        raise DataError(
            f"{name} not found: looked for {missing} in {looked}"
            f"{'' if download else ' (download disabled)'}; {how_to_get}"
        )
    train_x, train_y = read_idx_pair(_idx_path(found, IDX_FILES["train_images"]), _idx_path(found, IDX_FILES["train_labels"]))
    test_x, test_y = read_idx_pair(_idx_path(found, IDX_FILES["test_images"]), _idx_path(found, IDX_FILES["test_labels"]))
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{found}: training images are {tuple(train_x.shape[2:])} but test images are {tuple(test_x.shape[2:])}")
    if binarize:
        # Binarised at 0.5 as in the paper; stored as 0/255 so every data set is uint8 in [0, 255].
        train_x = (train_x >= 128).to(torch.uint8) * 255
        test_x = (test_x >= 128).to(torch.uint8) * 255
    return ImageData(name, train_x, train_y, test_x, test_y, list(classes), source=str(found))


MNIST_HOW = (f"put the four MNIST IDX files in a folder and pass --data-dir DIR or set {DATA_DIR_ENV}=DIR "
             "(torchvision downloads them where a network exists)")
FASHION_HOW = (f"install Debian's package with 'apt-get install dataset-fashion-mnist', or put the four IDX files "
               f"in a folder and pass --data-dir DIR or set {DATA_DIR_ENV}=DIR")
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def load_mnist(data_dir=None, binarize: bool = True, download: bool = True) -> ImageData:
    return _load_idx_dataset("mnist", tuple(str(i) for i in range(10)), [], MNIST_HOW, data_dir, binarize, download)


def load_fashion_mnist(data_dir=None, binarize: bool = False, download: bool = True) -> ImageData:
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    return _load_idx_dataset("fashion-mnist", classes, [DEBIAN_FASHION], FASHION_HOW, data_dir, binarize, download)


GREY_AUGMENT = AugmentSpec(crop_scale=(0.4, 1.0), crop_ratio=(0.75, 1.3), vflip_p=0.5)
COLOUR_AUGMENT = AugmentSpec(crop_scale=(0.6, 1.0), crop_ratio=(0.75, 1.3), vflip_p=0.5,
                             jitter_strength=0.8, jitter_hue=0.2, jitter_p=0.8)

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", (1, 28, 28), tuple(str(i) for i in range(10)), GREY_AUGMENT, 10, "mlp",
                         load_mnist, MNIST_HOW),
    "fashion-mnist": DatasetSpec("fashion-mnist", (1, 28, 28), tuple(range(10)), GREY_AUGMENT, 10, "mlp",
                                 load_fashion_mnist, FASHION_HOW),
}


def load_dataset(name: str, data_dir=None, binarize: bool | None = None, download: bool = True) -> ImageData:
    """Load a registered data set by name (binarize=None: the data set's paper default)."""
    from ..config import suggest

    if name not in DATASETS:
        raise DataError(f"unknown data set '{name}'{suggest(name, DATASETS)}; choose from {', '.join(DATASETS)}")
    kwargs = {"data_dir": data_dir, "download": download}
    if binarize is not None:
        kwargs["binarize"] = binarize
    return DATASETS[name].loader(**kwargs)
