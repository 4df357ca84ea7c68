"""CIFAR-10: the standard python version, or a folder of images per class.

- ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and
  ``batches.meta``, pickled dicts with ``b'data'`` (N x 3072 uint8, the R, G and B planes of a
  32 x 32 image in turn) and ``b'labels'`` (N ints in 0..9); ``batches.meta`` holds
  ``b'label_names'``.
- An image folder: ``train/<class>/*.jpg`` and ``test/<class>/*.jpg`` (any format Pillow reads),
  classes in sorted order (how the JPEG copy in ``shared/data/cifar10-jpeg.tar.xz`` is laid out).
  Hidden entries (``.ipynb_checkpoints/``) and other files are skipped, never read as classes;
  train and test must hold the same ten classes (a class folder missing or empty in one split is
  refused, naming it). Decoded once into the image cache shared with the other image-file data
  sets (``image_cache``).

Found with the same search order and errors as the IDX data sets: an explicit ``--data-dir`` is
the only place looked (the folder itself, or its ``cifar-10-batches-py/`` or ``cifar10/``);
otherwise ``$SIMVAE_DATA_DIR``, then a torchvision download (checksum verified by torchvision)
where a network exists. Every file is checked when it is loaded: a missing or damaged batch,
an undecodable or wrongly sized image (named by path), counts that differ, labels out of range.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import image_cache
from .base import OFFLINE_ENV, ImageData, search_dirs
from .checks import check_counts, check_labels
from .registry import COLOUR_CONV, DatasetSpec, register_dataset

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PY_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
FOLDER_CACHE_VERSION = 1  # bump when the image folders' cache changes
HOW_TO_GET = (
    "put cifar-10-batches-py/ (the python version) or train/ and test/ class folders of images in a folder "
    "and pass --data-dir DIR (torchvision downloads the python version where a network exists)"
)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        data, labels = np.asarray(d[b"data"], dtype=np.uint8), np.asarray(d[b"labels"], dtype=np.int64)
    except FileNotFoundError:
        raise DataError(f"{path} is missing; the CIFAR-10 python version has data_batch_1..5 and test_batch") from None
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(
            f"cannot read {path}: {type(e).__name__} ({e}); the file is damaged or not a CIFAR-10 batch: download it again"
        ) from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: data has shape {data.shape}, expected N x 3072 (32 x 32 RGB)")
    check_counts(data.shape[0], labels.shape[0], path, path)
    return data.reshape(-1, 3, 32, 32), labels


def read_python_version(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train and test images uint8 [N, 3, 32, 32] and labels int64 [N] of ``cifar-10-batches-py``."""
    parts = [_read_batch(folder / name) for name in TRAIN_BATCHES]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = _read_batch(folder / "test_batch")
    for y, name in ((train_y, "data_batch_*"), (test_y, "test_batch")):
        check_labels(torch.from_numpy(y), len(CLASSES), folder / name, "cifar10")
    return (torch.from_numpy(train_x.copy()), torch.from_numpy(train_y), torch.from_numpy(test_x.copy()), torch.from_numpy(test_y))


def _read_image(path: str) -> np.ndarray:
    """One 32 x 32 image as uint8 [3, 32, 32]. Raises what Pillow raises, and ValueError for another size."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if arr.shape != (32, 32, 3):
        raise ValueError(f"is {arr.shape[1]}x{arr.shape[0]}, expected 32x32 (CIFAR-10)")
    return arr.transpose(2, 0, 1)


def read_image_folders(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Train and test images uint8 [N, 3, 32, 32], labels int64 [N] and the classes of
    ``folder/{train,test}/<class>/*``, classes in sorted order. Hidden entries (``.ipynb_checkpoints``)
    and other files are skipped, train and test must hold the same ten classes. Decoded once in
    parallel into the image cache (``image_cache``), keyed by the files' names, sizes and mtimes.
    On disk the images are grouped by class; each split is returned in one fixed random order
    (seed 0, the same on every load), so that the first N images (``--train-subset``,
    ``--max-train-images``) are a random sample of all classes. Raises DataError naming the folder
    or file at fault."""
    classes, items, skipped = image_cache.split_classes(folder)
    if len(classes) != len(CLASSES):
        note = f"; skipped {skipped.describe()}" if skipped.describe() else ""
        raise DataError(
            f"{folder / 'train'} holds {len(classes)} class folders with images ({', '.join(classes[:4])}"
            f"{', ...' if len(classes) > 4 else ''}), expected CIFAR-10's 10{note}"
        )
    pairs = items["train"] + items["test"]
    files = [p for p, _ in pairs]
    key = image_cache.source_key(f"cifar10 folders v{FOLDER_CACHE_VERSION} 32x32", image_cache.file_stats(folder, files))

    def build(tmp: Path) -> dict:
        paths = [str(folder / p) for p in files]
        bad = image_cache.decode_into(tmp, paths, _read_image, (3, 32, 32), "cifar10: image cache (once)", sys.stderr.isatty())
        if bad:
            (p, why), more = bad[0], len(bad) - 1
            raise DataError(
                f"cannot decode image {p}: {why}" + (f" (and {more} more)" if more else "") + "; the file is damaged: replace or remove it"
            )
        return {}

    images, _ = image_cache.CacheEntry("cifar10", key).get(build, source=str(folder.resolve()))
    labels = torch.tensor([c for _, c in pairs], dtype=torch.int64)
    n_train = len(items["train"])
    out = []
    for lo, hi in ((0, n_train), (n_train, len(pairs))):
        order = torch.randperm(hi - lo, generator=torch.Generator().manual_seed(0)).numpy() + lo
        out += [torch.from_numpy(np.ascontiguousarray(images[order])), labels[order]]
    return (*out, classes)


def find_cifar(dirs: list[Path]) -> tuple[str, Path] | None:
    """(``python`` | ``folder``, path) of the first folder in ``dirs`` that holds CIFAR-10."""
    for d in dirs:
        for cand in (d, d / PY_DIR, d / "cifar10", d / "cifar10" / PY_DIR):
            if (cand / "test_batch").is_file() or (cand / "data_batch_1").is_file():
                return "python", cand
            if (cand / "train").is_dir() and (cand / "test").is_dir():
                return "folder", cand
    return None


def _download() -> Path | None:
    if os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes"):
        return None
    try:
        from torchvision import datasets as tvd

        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "simvae"
        tvd.CIFAR10(str(root), train=True, download=True)  # torchvision verifies the archive's MD5
        return root
    except Exception:  # no network, blocked, or a failed checksum
        return None


def load_cifar10(data_dir=None, binarize: bool = False, download: bool = True):
    """CIFAR-10 as an ImageData (uint8 [N, 3, 32, 32]). Raises DataError when it is not found
    (naming where it looked) or a file is damaged."""
    dirs, explicit = search_dirs(data_dir)
    found = find_cifar(dirs)
    if found is None and download and not explicit:
        fetched = _download()
        found = find_cifar([fetched]) if fetched is not None else None
    if found is None:
        where = ", ".join(str(d) for d in dirs) or "(no folder: pass --data-dir)"
        note = (
            "not downloaded: an explicit --data-dir is used as it is"
            if explicit
            else "download disabled"
            if not download
            else "download failed, or SIMVAE_OFFLINE is set"
        )
        raise DataError(
            f"cifar10 not found in {where}: no {PY_DIR}/ (data_batch_1..5, test_batch) and no train/ "
            f"and test/ class folders ({note}); {HOW_TO_GET}"
        )
    kind, path = found
    if kind == "python":
        train_x, train_y, test_x, test_y = read_python_version(path)
        source, classes = str(path), list(CLASSES)
    else:
        train_x, train_y, test_x, test_y, classes = read_image_folders(path)
        source = f"{path} (image folders)"
    return ImageData("cifar10", train_x, train_y, test_x, test_y, classes, source=source)


register_dataset(DatasetSpec("cifar10", load_cifar10, COLOUR_CONV, (3, 32, 32), CLASSES, HOW_TO_GET))
