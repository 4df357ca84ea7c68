"""CelebA (Liu et al., 2015), aligned and cropped faces at 64 x 64 (paper A.7.2).

Standard layout, in a folder DIR or ``DIR/celeba/`` (torchvision's):

- ``img_align_celeba/*.jpg``: 202,599 aligned faces of 178 x 218 pixels (Kaggle's nested
  ``img_align_celeba/img_align_celeba/`` is accepted too);
- ``list_attr_celeba.txt``: the image count, the 40 attribute names, then one line per image:
  its file name and 40 values -1/1, separated by runs of spaces;
- ``list_eval_partition.txt``: ``FILE 0|1|2`` (train / valid / test).

Training images are partitions 0 and 1 (simvae holds its own validation split out of them),
test images partition 2. Each image is centre-cropped to 148 x 148 (the standard crop of the
178 x 218 aligned image: 15 pixels off the left and right, 35 off the top and bottom) and
resized to 64 x 64 with Pillow's antialiased bilinear filter, once: a process pool writes a
uint8 [N, 3, 64, 64] ``.npy`` cache (``image_cache``, shared with the other image-file data
sets), memory-mapped at load (``torch.from_numpy``, no copy), so
later runs start in seconds and a data set larger than memory trains by gathering batches from
the map. The cache lives in ``$SIMVAE_CACHE_DIR/celeba/`` (else ``$XDG_CACHE_HOME/simvae/`` or
``~/.cache/simvae/``), keyed by the names, sizes and modification times of the two text files
and of every file in the image folder: a changed source builds a new cache. It is written to
temporary names and renamed, so an interrupted build is never used, and built by one process
while the others wait on its lock; delete the folder to clear it.

Targets (``CelebAData.targets()``): ``class`` = gender (attribute Male: female, male; content);
``hair_colour`` = bald, black, blond, brown, gray from Bald, Black_Hair, Blond_Hair, Brown_Hair,
Gray_Hair, -1 (left out of that target) where none or several are set (style); and 20 binary
attributes ``attr/<Name>`` (no, yes; style) chosen by this balance rule, on the training
partition (0) of the file: of the attributes other than the six above, keep those whose minority
class is at least 10 % of the images (``ATTR_MIN_MINORITY``), then the 20 (``N_ATTRS``) with the
largest minority fraction (ties: file order), listed in file order. With the published
frequencies of CelebA (whole data set; the training partition's are close to them) 22
attributes pass, and the 20 kept are: Arched_Eyebrows, Attractive, Bags_Under_Eyes, Bangs,
Big_Lips, Big_Nose, Bushy_Eyebrows, Heavy_Makeup, High_Cheekbones, Mouth_Slightly_Open,
No_Beard, Oval_Face, Pointy_Nose, Smiling, Straight_Hair, Wavy_Hair, Wearing_Earrings,
Wearing_Lipstick, Wearing_Necklace, Young (Narrow_Eyes, about 11.5 %, and 5_o_Clock_Shadow,
about 11 %, pass but are less balanced than Wearing_Necklace, about 12 %). The list is always
computed from the file, never hard-coded.

No download (CelebA's Google Drive copy is unreliable and rate-limited): a missing data set is
a DataError naming the files needed and every folder looked in. Both text files are checked
(counts, names, values, images listed in one and not the other: file and line named), and a
listed JPEG that is missing, undecodable or not 178 x 218 is refused by path.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import image_cache
from .base import DATA_DIR_ENV, ImageData, search_dirs
from .registry import COLOUR_CONV, DatasetSpec, register_dataset
from .targets import Target

CLASSES = ("female", "male")
HAIR_CLASSES = ("bald", "black", "blond", "brown", "gray")
HAIR_ATTRS = ("Bald", "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
GENDER_ATTR = "Male"
N_ATTR_NAMES = 40
ATTR_MIN_MINORITY = 0.10  # an attribute is kept only if its rarer value covers >= 10 % of the training partition
N_ATTRS = 20  # the paper's 20 attributes (A.8, Figure 6): the most balanced of those that pass
IMG_DIR, ATTR_FILE, PARTITION_FILE = "img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"
ALIGNED_SIZE = (178, 218)  # width, height of the aligned images
CROP, SIZE = 148, 64
CACHE_VERSION = 1  # bump when the cache's contents or preprocessing change
CHUNK = image_cache.CHUNK  # images per task of the decoding pool
HOW_TO_GET = (
    f"download img_align_celeba.zip, {ATTR_FILE} and {PARTITION_FILE} from the CelebA site "
    "(mmlab.ie.cuhk.edu.hk/projects/CelebA.html), unzip the images next to the two text files "
    f"and pass --data-dir DIR or set {DATA_DIR_ENV}=DIR"
)


@dataclass
class CelebAData(ImageData):
    """ImageData with CelebA's style targets (hair colour, 20 attributes) beside the gender class;
    a training subset keeps their labels aligned with the images."""

    style_targets: list[Target] = field(default_factory=list)

    def subset_train(self, n: int | None) -> "CelebAData":
        sub = super().subset_train(n)
        if sub is self:
            return self
        return dataclasses.replace(sub, style_targets=[t.head(n) for t in self.style_targets])

    def targets(self) -> list[Target]:
        return [*super().targets(), *self.style_targets]


# -- where the files are ---------------------------------------------------------------------


def _image_dir(d: Path) -> Path:
    nested = d / IMG_DIR / IMG_DIR  # Kaggle's copy
    return nested if nested.is_dir() else d / IMG_DIR


def _missing(d: Path) -> list[str]:
    return [
        f"{IMG_DIR}/" if n == IMG_DIR else n
        for n in (IMG_DIR, ATTR_FILE, PARTITION_FILE)
        if not ((d / n).is_dir() if n == IMG_DIR else (d / n).is_file())
    ]


def find_celeba(dirs: list[Path]) -> Path | None:
    """The first folder of ``dirs`` (or its ``celeba/``) that holds all three parts of CelebA."""
    for d in dirs:
        for cand in (d, d / "celeba"):
            if not _missing(cand):
                return cand
    return None


def _not_found(dirs: list[Path], explicit: bool, download: bool) -> DataError:
    cands = [c for d in dirs for c in (d, d / "celeba")]
    if not cands:
        return DataError(f"celeba not found: no folder to look in (pass --data-dir DIR or set {DATA_DIR_ENV}); {HOW_TO_GET}")
    closest = min(cands, key=lambda c: len(_missing(c)))
    others = [str(c) for c in cands if c != closest]
    note = (
        "an explicit --data-dir is used as it is"
        if explicit
        else "CelebA is never downloaded: its Google Drive copy is unreliable"
        if download
        else "download disabled"
    )
    return DataError(
        f"celeba not found: {closest} lacks {', '.join(_missing(closest))} ({note})"
        + (f"; also looked in {', '.join(others)}" if others else "")
        + f"; {HOW_TO_GET}"
    )


# -- the text files ---------------------------------------------------------------------------


def _lines(path: Path):
    """(line number, stripped text) of the non-empty lines of ``path``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line:
            yield i, line


def read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray, list[int]]:
    """(attribute names [40], file names [N], values int8 [N, 40] in {0, 1}, line numbers [N]) of
    ``list_attr_celeba.txt``. Raises DataError naming the file and line of a wrong count, a wrong
    number of names or values, a value other than -1/1, or a file listed twice."""
    lines = _lines(path)
    try:
        n_line, count_text = next(lines)
        n_line, header = next(lines)
    except StopIteration:
        raise DataError(
            f"{path}: the file is empty or has no attribute names (line 2); expected the image count, "
            "the 40 attribute names, then one line per image"
        ) from None
    try:
        count = int(count_text)
    except ValueError:
        raise DataError(f"{path} line 1: '{count_text[:40]}' is not the number of images") from None
    names = header.split()
    if len(names) != N_ATTR_NAMES or len(set(names)) != N_ATTR_NAMES:
        raise DataError(f"{path} line {n_line}: {len(set(names))} distinct attribute names, expected CelebA's {N_ATTR_NAMES}")
    lacking = [a for a in (GENDER_ATTR, *HAIR_ATTRS) if a not in names]
    if lacking:
        raise DataError(f"{path} line {n_line}: no attribute {', '.join(lacking)}; is this CelebA's attribute file?")
    files: list[str] = []
    line_nos: list[int] = []
    rows: list[list[str]] = []
    seen: dict[str, int] = {}
    allowed = {"-1", "1"}
    for i, line in lines:
        parts = line.split()
        if len(parts) != N_ATTR_NAMES + 1:
            raise DataError(f"{path} line {i}: {len(parts) - 1} values, expected a file name and {N_ATTR_NAMES} values")
        name, vals = parts[0], parts[1:]
        if not allowed.issuperset(vals):
            j = next(k for k, v in enumerate(vals) if v not in allowed)
            raise DataError(f"{path} line {i}: value '{vals[j][:20]}' for {names[j]} is not -1 or 1")
        if name in seen:
            raise DataError(f"{path} line {i}: {name} is listed twice (first on line {seen[name]})")
        seen[name] = i
        files.append(name)
        line_nos.append(i)
        rows.append(vals)
    if count != len(files):
        raise DataError(
            f"{path} line 1: says {count} images but the file lists {len(files)}; the file is truncated or damaged: download it again"
        )
    values = (np.array(rows, dtype="<U2") == "1").astype(np.int8) if rows else np.zeros((0, N_ATTR_NAMES), np.int8)
    return names, files, values, line_nos


def read_partition(path: Path, files: list[str], attr_path: Path, attr_lines: list[int]) -> np.ndarray:
    """The partition int8 [N] (0 train, 1 valid, 2 test) of ``files``, from ``list_eval_partition.txt``.
    Raises DataError naming the file and line of a malformed line, a file listed twice, or an
    image in one of the two files but not the other."""
    index = {name: k for k, name in enumerate(files)}
    part = np.full(len(files), -1, dtype=np.int8)
    line_of: dict[str, int] = {}
    for i, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path} line {i}: expected 'FILE 0|1|2' (train, valid, test), got '{line[:60]}'")
        name = parts[0]
        if name in line_of:
            raise DataError(f"{path} line {i}: {name} is listed twice (first on line {line_of[name]})")
        line_of[name] = i
        k = index.get(name)
        if k is None:
            raise DataError(f"{path} line {i}: {name} is not in {attr_path}; the two files must come from the same CelebA release")
        part[k] = int(parts[1])
    absent = np.flatnonzero(part < 0)
    if absent.size:
        raise DataError(
            f"{attr_path}: {absent.size} images have no partition in {path}, the first {files[absent[0]]} "
            f"(line {attr_lines[absent[0]]}); the two files must come from the same CelebA release"
        )
    return part


# -- images and the cache ---------------------------------------------------------------------


def _read_face(path: str) -> np.ndarray:
    """One aligned face: uint8 [3, 64, 64], centre 148 x 148 crop resized with Pillow's
    antialiased bilinear filter. Raises OSError/ValueError for an unusable file."""
    from PIL import Image

    with Image.open(path) as im:
        if im.size != ALIGNED_SIZE:
            raise ValueError(f"is {im.size[0]}x{im.size[1]}, expected {ALIGNED_SIZE[0]}x{ALIGNED_SIZE[1]} ({IMG_DIR})")
        left, top = (im.size[0] - CROP) // 2, (im.size[1] - CROP) // 2
        im = im.convert("RGB").crop((left, top, left + CROP, top + CROP))
        arr = np.asarray(im.resize((SIZE, SIZE), Image.Resampling.BILINEAR), dtype=np.uint8)
    return arr.transpose(2, 0, 1)


_n_workers = image_cache.n_workers  # the decoding pool's size (tests set it)


def source_key(root: Path, img_dir: Path) -> tuple[str, set[str]]:
    """(cache key, names of the files in the image folder): a hash of the sorted (name, size,
    mtime) of the two text files and of every file in the image folder, and the preprocessing."""
    entries = image_cache.file_stats(root, (ATTR_FILE, PARTITION_FILE))
    names = set()
    with os.scandir(img_dir) as it:
        for e in it:
            st = e.stat()
            names.add(e.name)
            entries.append((f"{IMG_DIR}/{e.name}", st.st_size, st.st_mtime_ns))
    header = f"celeba v{CACHE_VERSION} crop {CROP} size {SIZE} {ALIGNED_SIZE}"
    return image_cache.source_key(header, entries), names


def _valid(images: np.ndarray, meta: dict) -> bool:
    n = len(meta["partition"])
    return images.shape == (n, 3, SIZE, SIZE) and meta["attrs"].shape == (n, N_ATTR_NAMES)


def build_cache(root: Path, img_dir: Path, present: set[str], images_path: Path, progress: bool) -> dict:
    """Check the text files and images of ``root`` (``present``: the names in ``img_dir``), decode
    the images into the .npy ``images_path`` and return the cache's metadata arrays.
    Raises DataError for a malformed text file or missing / unusable images (by path)."""
    names, files, attrs, attr_lines = read_attributes(root / ATTR_FILE)
    partition = read_partition(root / PARTITION_FILE, files, root / ATTR_FILE, attr_lines)
    order = np.argsort(partition == 2, kind="stable")  # training images (0, 1) first, then test, in file order
    files = [files[k] for k in order]
    attrs, partition = attrs[order], partition[order]
    missing = [img_dir / f for f in files if f not in present]
    if missing:
        raise DataError(
            f"celeba: {len(missing)} of the {len(files)} images listed in {root / ATTR_FILE} are missing "
            f"from {img_dir}: {', '.join(map(str, missing[:3]))}{', ...' if len(missing) > 3 else ''}; "
            "unzip img_align_celeba.zip again"
        )
    bad = image_cache.decode_into(
        images_path,
        [str(img_dir / f) for f in files],
        _read_face,
        (3, SIZE, SIZE),
        f"celeba: {SIZE}x{SIZE} cache (once)",
        progress,
        chunk=CHUNK,
        workers=_n_workers(),
    )
    if bad:
        raise DataError(f"celeba: {image_cache.describe_bad(bad, len(files))}; replace them from img_align_celeba.zip")
    return {
        "attrs": attrs,
        "partition": partition,
        "attr_names": np.array(names),
        "files": np.array(files),
        "n_train": np.int64((partition != 2).sum()),
    }


# -- targets ----------------------------------------------------------------------------------


def select_attributes(names: list[str], values: np.ndarray) -> list[str]:
    """The balance rule: of the attributes other than Male and the five hair colours, those whose
    rarer value is at least ATTR_MIN_MINORITY of ``values`` (int8 [N, 40] in {0, 1}, the training
    partition), the N_ATTRS most balanced of them (ties: file order), in file order."""
    if len(values) == 0:
        return []
    pos = values.mean(0)
    minority = np.minimum(pos, 1 - pos)
    cands = [j for j, n in enumerate(names) if n not in (GENDER_ATTR, *HAIR_ATTRS) and minority[j] >= ATTR_MIN_MINORITY]
    kept = sorted(cands, key=lambda j: (-minority[j], j))[:N_ATTRS]
    return [names[j] for j in sorted(kept)]


def hair_colour(names: list[str], values: np.ndarray) -> np.ndarray:
    """int64 [N] in 0..4 (HAIR_CLASSES), -1 where none or several hair attributes are set."""
    hair = values[:, [names.index(a) for a in HAIR_ATTRS]].astype(np.int64)
    return np.where(hair.sum(1) == 1, hair.argmax(1), -1)


def _targets(names: list[str], attrs: np.ndarray, partition: np.ndarray, n_train: int) -> tuple[np.ndarray, list[tuple]]:
    """(gender int64 [N], [(name, labels int64 [N], n_classes, class names)] of the style targets)."""
    gender = attrs[:, names.index(GENDER_ATTR)].astype(np.int64)
    style = [("hair_colour", hair_colour(names, attrs), len(HAIR_CLASSES), list(HAIR_CLASSES))]
    for a in select_attributes(names, attrs[:n_train][partition[:n_train] == 0]):
        style.append((f"attr/{a}", attrs[:, names.index(a)].astype(np.int64), 2, ["no", "yes"]))
    return gender, style


def load_celeba(data_dir=None, binarize: bool = False, download: bool = True) -> CelebAData:
    """CelebA as a CelebAData: images uint8 [N, 3, 64, 64] memory-mapped from the cache (about
    163k training, 20k test images), gender labels and the style targets (module docstring).
    ``binarize`` is ignored (colour data); nothing is downloaded. Raises DataError when CelebA is
    not found (naming the files needed and where it looked), a text file is malformed (file and
    line), or images are missing or undecodable (by path)."""
    dirs, explicit = search_dirs(data_dir)
    root = find_celeba(dirs)
    if root is None:
        raise _not_found(dirs, explicit, download)
    img_dir = _image_dir(root)
    key, present = source_key(root, img_dir)
    entry = image_cache.CacheEntry("celeba", f"{SIZE}-{key}")
    cached = entry.get(
        lambda tmp: build_cache(root, img_dir, present, tmp, progress=sys.stderr.isatty()), source=str(root.resolve()), validate=_valid
    )
    images, meta = cached
    names, n_train = [str(a) for a in meta["attr_names"]], int(meta["n_train"])
    gender, style = _targets(names, meta["attrs"], meta["partition"], n_train)
    x = image_cache.as_tensor(images)
    y = torch.from_numpy(gender)
    targets = [Target(name, torch.from_numpy(v[:n_train]), torch.from_numpy(v[n_train:]), k, "style", cls) for name, v, k, cls in style]
    return CelebAData(
        "celeba",
        x[:n_train],
        y[:n_train],
        x[n_train:],
        y[n_train:],
        list(CLASSES),
        source=f"{root} (64x64 cache {entry.images_path})",
        style_targets=targets,
    )


register_dataset(DatasetSpec("celeba", load_celeba, COLOUR_CONV, (3, 64, 64), CLASSES, HOW_TO_GET))
