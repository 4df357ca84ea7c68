"""MNIST and Fashion-MNIST: the IDX data sets, registered with their preset (paper Tables 2, 3).

A loaded data set is an ``ImageData``: uint8 image tensors [N, C, H, W] and int64
labels, kept whole in memory (Fashion-MNIST's 70k images are 55 MB), so training
shuffles indices rather than copying images.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import DataError
from .base import DATA_DIR_ENV, OFFLINE_ENV, ImageData
from .checks import check_labels
from .idx import read_idx_pair
from .registry import GREY_MLP, DatasetSpec, register_dataset

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


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


def _missing_files(d: Path) -> list[str]:
    """The IDX file stems that folder ``d`` lacks (neither raw nor .gz), in IDX_FILES order."""
    return [stem for stem in IDX_FILES.values() if _idx_path(d, stem) is None]


def _find_idx_dir(dirs: list[Path]) -> Path | None:
    for d in dirs:
        if not _missing_files(d):
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


def _not_found(name: str, dirs: list[Path], explicit: bool, note: str, how_to_get: str) -> DataError:
    """The error for a data set whose files are in none of ``dirs``: it names the files missing
    from the folder closest to complete (the first such, on a tie) and every folder looked in."""
    missing = {d: _missing_files(d) for d in dirs}
    closest = min(dirs, key=lambda d: len(missing[d])) if dirs else None
    files = ", ".join(f"{s}[.gz]" for s in (missing[closest] if closest else IDX_FILES.values()))
    others = [str(d) for d in dirs if d != closest]
    also = f"; also looked in {', '.join(others)}" if others else ""
    if explicit:
        where = f" in {closest}: missing {files}"
    elif closest is not None and len(missing[closest]) < len(IDX_FILES):
        where = f": the most complete folder, {closest}, lacks {files}"
    else:
        where, also = f": looked for {files} in {', '.join(map(str, dirs)) or '(no folders)'}", ""
    return DataError(f"{name} not found{where} ({note}){also}; {how_to_get}")


def _load_idx_dataset(
    name: str,
    classes: tuple[str, ...],
    system_dirs: list[Path],
    how_to_get: str,
    data_dir=None,
    binarize: bool = False,
    download: bool = True,
) -> ImageData:
    """Load an MNIST-layout data set: its four IDX files, every one checked before it is used.

    An explicit ``data_dir`` is the only place looked (DATA_DIR itself, DATA_DIR/NAME, DATA_DIR/NAME/raw),
    never downloaded into and never left for another copy; otherwise $SIMVAE_DATA_DIR, the system folders,
    then a torchvision download when ``download``. Raises DataError for a missing folder, missing files
    (named), a damaged file, counts that differ, or labels outside the data set's classes."""
    explicit = bool(data_dir)
    if explicit and not Path(data_dir).expanduser().is_dir():
        # A mistyped folder must not silently fall through to another copy of the data.
        raise DataError(f"data folder {data_dir} does not exist or is not a folder (from --data-dir)")
    dirs = _candidate_dirs(name, data_dir, system_dirs)
    found = _find_idx_dir(dirs)
    if found is None:
        if not download:
            note = "download disabled"
        elif explicit:
            note = "not downloaded: an explicit --data-dir is used as it is"
        else:
            fetched = _download_idx(name)
            note = "download failed, or SIMVAE_OFFLINE is set" if fetched is None else "download incomplete"
            if fetched is not None:
                dirs.append(fetched)
                found = _find_idx_dir([fetched])
    if found is None:
        raise _not_found(name, dirs, explicit, note, how_to_get)
    splits = []
    for split in ("train", "test"):
        images_path, labels_path = _idx_path(found, IDX_FILES[f"{split}_images"]), _idx_path(found, IDX_FILES[f"{split}_labels"])
        x, y = read_idx_pair(images_path, labels_path)
        check_labels(y, len(classes), labels_path, name)
        splits.append((x, y))
    (train_x, train_y), (test_x, test_y) = splits
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{found}: training images are {tuple(train_x.shape[2:])} but test images are {tuple(test_x.shape[2:])}")
    if binarize:
        # Binarised at 0.5 as in the paper; stored as 0/255 so every data set is uint8 in [0, 255].
        train_x = (train_x >= 128).to(torch.uint8) * 255
        test_x = (test_x >= 128).to(torch.uint8) * 255
    return ImageData(name, train_x, train_y, test_x, test_y, list(classes), source=str(found), binarized=binarize)


MNIST_HOW = (
    f"put the four MNIST IDX files in a folder and pass --data-dir DIR or set {DATA_DIR_ENV}=DIR "
    "(torchvision downloads them where a network exists)"
)
FASHION_HOW = (
    f"install Debian's package with 'apt-get install dataset-fashion-mnist', or put the four IDX files "
    f"in a folder and pass --data-dir DIR or set {DATA_DIR_ENV}=DIR"
)
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def load_mnist(data_dir=None, binarize: bool = True, download: bool = True) -> ImageData:
    """MNIST from its four IDX files, binarised at 0.5 by default (the paper's MNIST)."""
    return _load_idx_dataset("mnist", MNIST_CLASSES, [], MNIST_HOW, data_dir, binarize, download)


def load_fashion_mnist(data_dir=None, binarize: bool = False, download: bool = True) -> ImageData:
    """Fashion-MNIST from its four IDX files (also Debian's /usr/share/datasets/fashion-mnist)."""
    return _load_idx_dataset("fashion-mnist", FASHION_CLASSES, [DEBIAN_FASHION], FASHION_HOW, data_dir, binarize, download)


MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

register_dataset(DatasetSpec("mnist", load_mnist, GREY_MLP, (1, 28, 28), MNIST_CLASSES, MNIST_HOW, binarize_default=True))
register_dataset(DatasetSpec("fashion-mnist", load_fashion_mnist, GREY_MLP, (1, 28, 28), FASHION_CLASSES, FASHION_HOW))
