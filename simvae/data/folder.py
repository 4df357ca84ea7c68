"""Your own images: a folder of image files (``--dataset folder --data-dir DIR``).

Layouts (torchvision ImageFolder's, and a plain folder):

- ``DIR/<class>/...`` : one sub-folder per class (nested folders inside a class are read too);
  the sub-folder names, sorted, are the classes and the evaluation's target;
- ``DIR/*.png`` (images in the folder itself): no classes (``has_labels`` False: evaluation then
  offers reconstruction and export only);
- either of these inside ``DIR/train/`` and ``DIR/test/``: that split is used as it is; otherwise
  a seeded split (``SPLIT_SEED``, ``test_fraction`` of each class, at least one image of each class
  on each side) holds out the test images. Train and test must hold the same classes.

Every format Pillow decodes is read (``image_cache.image_suffixes()``: PNG, JPEG, WebP, BMP, GIF,
TIFF, ...). Images are turned upright by their EXIF orientation, centre-cropped to a square and
resized to ``image_size`` x ``image_size`` (28, 32 or 64; default: the median shorter side of the
images, snapped to the nearest of the three) with Pillow's antialiased bilinear filter, and kept
grey or made colour by ``channels`` (1 or 3; default: colour if any image is). Palette, CMYK and
16-bit images are converted (16-bit values scaled to 8 bits); transparent pixels are laid on white.
Hidden entries (names starting with '.'), files that are not images and folders without images
are skipped and counted in the one line printed at load; an image Pillow cannot decode
(truncated, damaged) is listed with its path and reason and skipped, or refused with ``strict``.

Decoding happens once, in parallel with a progress bar, into a memory-mapped uint8 cache
(``image_cache``) keyed by the files' names, sizes and modification times, the image size and the
channels. The training images come in one fixed shuffled order (``SPLIT_SEED``), so that the first
N (``--train-subset N``) sample every class. ``FolderData.split_record()`` says which files are
training and test images (a run folder keeps it as ``data_split.json``).

Groups (``groups``: a CSV file with columns ``path,group``, paths relative to ``DIR``, other columns
ignored): each group of related images is one x_i of the paper's model (§3), instead of the
augmentations of one image. The seeded split keeps each group whole on one side; with ``train/``
and ``test/`` folders the groups must hold training images only. Images in no group are not
trained on (they are still evaluated). A group of one image is kept (a step draws it J times,
augmented unless ``--augment none``) and counted in the load line. Refused in one line, naming the
file and line: an empty file, a header without ``path`` and ``group``, an empty path or group, a
path leaving ``DIR``, a path that is not an image found in ``DIR``, a path listed twice.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import posixpath
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import image_cache
from .base import DATA_DIR_ENV, ImageData, search_dirs
from .image_cache import Skipped
from .registry import COLOUR_AUGMENT, GREY_AUGMENT, DatasetSpec, Preset, register_dataset

SIZES = (28, 32, 64)
SPLIT_SEED = 0  # the seeded split and the training order; fixed, so every run of a folder sees the same split
CACHE_VERSION = 1  # bump when the cache's contents or preprocessing change
HOW_TO_GET = (
    f"put image files in a folder, in one sub-folder per class or all in the folder itself (optionally inside "
    f"train/ and test/), and pass --data-dir DIR or set {DATA_DIR_ENV}=DIR"
)
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def folder_preset(shape: tuple[int, int, int]) -> Preset:
    """The preset of images of ``shape`` [C, H, W]: the MLP of paper Table 3 for 28 x 28 (latent 10
    when grey, 64 in colour), the conv nets of Table 4 for 32 and 64 (latent 64); grey images get
    the grey augmentation, colour images the colour one (Table 2)."""
    c, h, _ = shape
    augment = GREY_AUGMENT if c == 1 else COLOUR_AUGMENT
    if h == 28:
        return Preset("mlp", 10 if c == 1 else 64, augment)
    return Preset("conv", 64, augment)


# -- one image ---------------------------------------------------------------------------------


def _is_colour(im) -> bool:
    if im.mode in _GREY_MODES:
        return False
    if im.mode in ("P", "PA"):
        pal = im.getpalette() or []
        return any(pal[i] != pal[i + 1] or pal[i] != pal[i + 2] for i in range(0, len(pal) - 2, 3))
    return True


def probe(path: str) -> tuple[int, bool]:
    """(shorter side in pixels, colour) of an image from its header; (-1, False) when Pillow
    cannot open it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return min(im.size), _is_colour(im)
    except Exception:
        return -1, False


def _eight_bit(im):
    """``im`` in a mode Pillow converts from: 16-bit and 32-bit grey scaled to 8 bits, alpha laid on white."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.asarray(im).astype(np.float64)
        if im.mode == "F" and a.size and a.max() <= 1.0:
            a = a * 255.0
        elif im.mode.startswith("I;16") or (a.size and a.max() > 255):
            a = a / 257.0  # 0..65535 -> 0..255
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im


def read_image(path: str, size: int, channels: int) -> np.ndarray:
    """One image file as uint8 [channels, size, size]: upright (EXIF orientation), the centre square
    resized with Pillow's antialiased bilinear filter, converted to grey (1) or RGB (3).
    Raises what Pillow raises for a file it cannot decode (OSError, ValueError, ...)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.draft(None, (size, size))  # JPEG: decode at the smallest scale still at least size x size
        im = ImageOps.exif_transpose(im)
        im = _eight_bit(im).convert("L" if channels == 1 else "RGB")
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + s, top + s))
        arr = np.array(im, dtype=np.uint8)  # a writable copy
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


# -- the folder's files ------------------------------------------------------------------------


@dataclass
class FolderScan:
    """The image files of a folder: paths relative to it (sorted), their class index and split."""

    root: Path
    files: list[str]
    labels: np.ndarray  # int64 [N]
    classes: list[str]  # [] when there are no class folders
    split: np.ndarray  # uint8 [N]: 0 train, 1 test, 2 unassigned (no train/ and test/ folders)
    skipped: Skipped


def scan_folder(root: Path) -> FolderScan:
    """Find the images of ``root`` in one of the layouts of the module docstring. Raises DataError
    naming the folder for inconsistent class folders, train/ without test/ (or the reverse), images
    beside class folders, and a folder without images."""
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train != has_test:
        there, missing = ("train", "test") if has_train else ("test", "train")
        raise DataError(f"{root} has {there}/ but no {missing}/; give both (the split used as it is) or neither (a seeded split is made)")
    if has_train:
        skipped = Skipped()
        for e in sorted(os.scandir(root), key=lambda e: e.name):
            if e.name in ("train", "test"):
                continue
            (skipped.hidden if image_cache.is_hidden(e.name) else skipped.not_images).append(e.name + ("/" if e.is_dir() else ""))
        scans = {s: image_cache.scan_image_tree(root / s) for s in ("train", "test")}
        if any(classes for classes, _, _ in scans.values()):
            classes, items, sk = image_cache.split_classes(root)
            skipped.merge(sk)
            pairs = sorted((p, c, s) for s, its in enumerate((items["train"], items["test"])) for p, c in its)
        else:
            classes = []
            for s, (_, loose, sk) in scans.items():
                skipped.merge(sk, f"{s}/")
                if not loose:
                    raise DataError(f"{root / s} holds no images" + (f" (skipped: {sk.describe()})" if sk.describe() else ""))
            pairs = sorted((f"{s}/{p}", 0, k) for k, s in enumerate(("train", "test")) for p in scans[s][1])
    else:
        found, loose, skipped = image_cache.scan_image_tree(root)
        if found and loose:
            raise DataError(
                f"{root} holds {len(loose)} images beside its class folders ({loose[0]}, ...); move them "
                "into a class folder, or the class folders' images into the folder"
            )
        if not found and not loose:
            raise DataError(
                f"{root} holds no images" + (f" (skipped: {skipped.describe()})" if skipped.describe() else "") + f"; {HOW_TO_GET}"
            )
        classes = sorted(found)
        pairs = sorted([(p, c, 2) for c, name in enumerate(classes) for p in found[name]] + [(p, 0, 2) for p in loose])
    return FolderScan(
        root,
        [p for p, _, _ in pairs],
        np.array([c for _, c, _ in pairs], dtype=np.int64),
        classes,
        np.array([s for _, _, s in pairs], dtype=np.uint8),
        skipped,
    )


# -- decoding, once ----------------------------------------------------------------------------


def _probe_all(scan: FolderScan, stats: list, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """(shorter sides int32 [N], -1 where unreadable; colour bool [N]) of every image, from their
    headers, cached beside the images (keyed like them)."""
    key = image_cache.source_key(f"folder probe v{CACHE_VERSION}", stats)
    path = image_cache.cache_dir("folder") / f"probe-{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            side, colour = z["side"], z["colour"]
        if len(side) == len(scan.files):
            return side, colour
    except (OSError, ValueError, KeyError, EOFError):
        pass
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    paths = [str(scan.root / p) for p in scan.files]
    with ThreadPoolExecutor(max_workers=min(8, image_cache.n_workers() * 2)) as pool:
        found = list(
            tqdm(
                pool.map(probe, paths, chunksize=64),
                total=len(paths),
                desc="folder: reading image sizes",
                unit="img",
                file=sys.stderr,
                disable=not progress,
                leave=False,
                mininterval=0.5,
            )
        )
    side = np.array([s for s, _ in found], dtype=np.int32)
    colour = np.array([c for _, c in found], dtype=bool)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, side=side, colour=colour)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a cache that cannot be written only costs time
    return side, colour


def snap_size(side: float) -> int:
    """The nearest of 28, 32 and 64 to ``side`` (ties: the larger)."""
    return min(SIZES, key=lambda s: (abs(s - side), -s))


@dataclass
class FolderImages:
    """Every readable image of a folder, decoded: ``images`` uint8 [N, C, S, S] (memory-mapped
    from the cache), ``files`` relative paths (sorted), ``labels`` int64 [N], ``split`` uint8 [N]
    (0 train, 1 test, 2 unassigned), ``classes``, what was skipped and the unreadable images
    ``bad`` [(relative path, reason)]."""

    root: Path
    images: np.ndarray
    files: list[str]
    labels: np.ndarray
    split: np.ndarray
    classes: list[str]
    skipped: Skipped
    bad: list[tuple[str, str]]
    image_size: int
    channels: int
    cache_path: Path

    @property
    def has_labels(self) -> bool:
        return len(self.classes) >= 2

    def summary(self) -> str:
        """The one line said at load: images, classes, size, what was skipped."""
        kinds = (
            f"{len(self.classes)} classes"
            if self.has_labels
            else f"one class folder ({self.classes[0]}): no labels"
            if self.classes
            else "no class folders: no labels"
        )
        line = (
            f"folder: {len(self.files)} images in {self.root} ({kinds}), {self.image_size}x{self.image_size} "
            f"{'grey' if self.channels == 1 else 'colour'}"
        )
        skipped = self.skipped.describe()
        if self.bad:
            shown = "; ".join(f"{p} ({why})" for p, why in self.bad[:3])
            skipped = (skipped + ", " if skipped else "") + (
                f"{len(self.bad)} unreadable image{'s' if len(self.bad) > 1 else ''}: {shown}{'; ...' if len(self.bad) > 3 else ''}"
            )
        return line + (f"; skipped {skipped}" if skipped else "")


def read_folder(
    data_dir, image_size: int | None = None, channels: int | None = None, strict: bool = False, progress: bool | None = None
) -> FolderImages:
    """Scan ``data_dir`` (or ``$SIMVAE_DATA_DIR``) and decode every image (module docstring), through
    the cache. ``image_size`` 28 | 32 | 64 and ``channels`` 1 | 3 (None: from the images);
    ``progress`` None: a bar when stderr is a terminal. Raises DataError for no folder, a layout
    that is refused, no readable image, and (``strict``) any unreadable image."""
    dirs, _ = search_dirs(data_dir)
    if not dirs:
        raise DataError(f"folder: no folder given; {HOW_TO_GET}")
    root = dirs[0]
    if progress is None:
        progress = sys.stderr.isatty()
    if image_size is not None and image_size not in SIZES:
        raise DataError(f"image size {image_size} is not one of {', '.join(map(str, SIZES))}")
    if channels is not None and channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (colour), got {channels}")
    scan = scan_folder(root)
    stats = image_cache.file_stats(root, scan.files)
    if image_size is None or channels is None:
        side, colour = _probe_all(scan, stats, progress)
        ok = side > 0
        if image_size is None:
            image_size = snap_size(float(np.median(side[ok]))) if ok.any() else SIZES[-1]
        if channels is None:
            channels = 3 if colour[ok].any() or not ok.any() else 1
    shape = (channels, image_size, image_size)
    header = f"folder v{CACHE_VERSION} {image_size}x{image_size} channels {channels}"
    entry = image_cache.CacheEntry("folder", image_cache.source_key(header, stats))

    def build(tmp: Path) -> dict:
        paths = [str(root / p) for p in scan.files]
        bad = image_cache.decode_into(
            tmp,
            paths,
            partial(read_image, size=image_size, channels=channels),
            shape,
            f"folder: {image_size}x{image_size} cache (once)",
            progress,
            stop_on_bad=strict,
        )
        prefix = str(root) + os.sep
        bad = [(p[len(prefix) :] if p.startswith(prefix) else p, why) for p, why in bad]
        if bad and strict:
            raise DataError(
                f"folder: {image_cache.describe_bad([(str(root / p), w) for p, w in bad], len(paths))} "
                "(--strict); replace or remove them, or drop --strict to skip them"
            )
        if len(bad) == len(paths):
            raise DataError(
                f"folder: none of the {len(paths)} images in {root} can be read: "
                f"{image_cache.describe_bad([(str(root / p), w) for p, w in bad], len(paths))}"
            )
        if bad:
            dropped = {p for p, _ in bad}
            image_cache.compact(tmp, np.array([i for i, p in enumerate(scan.files) if p not in dropped], dtype=np.int64))
        return {"bad_paths": np.array([p for p, _ in bad], dtype=str), "bad_reasons": np.array([w for _, w in bad], dtype=str)}

    images, meta = entry.get(build, source=f"{root.resolve()} {header}")
    bad = list(zip(map(str, meta["bad_paths"]), map(str, meta["bad_reasons"])))
    if bad and strict:
        raise DataError(
            f"folder: {image_cache.describe_bad([(str(root / p), w) for p, w in bad], len(scan.files))} "
            "(--strict); replace or remove them, or drop --strict to skip them"
        )
    keep = np.ones(len(scan.files), dtype=bool)
    if bad:
        dropped = {p for p, _ in bad}
        keep = np.array([p not in dropped for p in scan.files], dtype=bool)
    if len(images) != int(keep.sum()):
        raise DataError(f"the image cache {entry.images_path} does not match {root}; delete it and load again")
    return FolderImages(
        root,
        images,
        [p for p, k in zip(scan.files, keep) if k],
        scan.labels[keep],
        scan.split[keep],
        scan.classes,
        scan.skipped,
        bad,
        image_size,
        channels,
        entry.images_path,
    )


# -- groups ------------------------------------------------------------------------------------


def read_groups(path, root: Path, files: list[str], bad: set[str]) -> tuple[np.ndarray, list[str], int]:
    """(group index int64 [N] of each of ``files`` (-1: in no group), group names, members dropped
    because their image is unreadable) from the CSV ``path`` (columns ``path``, ``group``; module
    docstring). Raises DataError in one line naming the file and line of each fault."""
    path = Path(path)
    index = {p: i for i, p in enumerate(files)}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"groups file {path} cannot be read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise DataError(f"groups file {path} is not UTF-8 text (a CSV file with columns path,group)") from None
    rows = list(csv.reader(text.splitlines(), skipinitialspace=True))
    rows = [(i, r) for i, r in enumerate(rows, 1) if any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"groups file {path} is empty; it needs a header line 'path,group' and one line per image")
    (_, header), body = rows[0], rows[1:]
    cols = [c.strip() for c in header]
    for need in ("path", "group"):
        if need not in cols:
            raise DataError(
                f"groups file {path} line {rows[0][0]}: no column '{need}' (columns: {', '.join(cols)}); the "
                "header must name the columns path and group"
            )
    if not body:
        raise DataError(f"groups file {path} lists no images (only its header)")
    pc, gc = cols.index("path"), cols.index("group")
    group = np.full(len(files), -1, dtype=np.int64)
    names: dict[str, int] = {}
    seen: dict[str, int] = {}
    dropped = 0
    root_abs = os.path.abspath(root)
    for line, r in body:
        raw = r[pc] if pc < len(r) else ""
        name = r[gc].strip() if gc < len(r) else ""
        if not raw:
            raise DataError(f"groups file {path} line {line}: empty path")
        if not name:
            raise DataError(f"groups file {path} line {line}: {raw} has no group")
        rel = raw.replace(os.sep, "/")
        if os.path.isabs(rel):
            rel = os.path.relpath(os.path.normpath(rel), root_abs).replace(os.sep, "/")
        rel = posixpath.normpath(rel)
        if rel == ".." or rel.startswith("../") or rel.startswith("/"):
            raise DataError(f"groups file {path} line {line}: '{raw}' leaves {root}; paths are relative to --data-dir")
        if rel in seen:
            raise DataError(f"groups file {path} line {line}: {rel} is listed twice (first on line {seen[rel]})")
        seen[rel] = line
        if rel in bad:
            dropped += 1
            continue
        i = index.get(rel)
        if i is None:
            full = root / rel
            why = (
                "does not exist"
                if not full.exists()
                else "is hidden"
                if any(image_cache.is_hidden(part) for part in rel.split("/"))
                else "is not an image file"
                if not image_cache.is_image_name(rel)
                else "is not a training image"
            )
            raise DataError(f"groups file {path} line {line}: {full} {why}; paths are relative to --data-dir {root}")
        group[i] = names.setdefault(name, len(names))
    return group, list(names), dropped


# -- the split ---------------------------------------------------------------------------------


def seeded_split(labels: np.ndarray, units: list[np.ndarray], test_fraction: float, describe_class) -> np.ndarray:
    """Test mask bool [N] of a split that keeps each unit (an array of image indices: a group, or
    one image) whole: per class (the class of a unit's first image), in a random order of seed
    ``SPLIT_SEED``, units go to the test side until it holds round(test_fraction x the class's
    images) images (at least 1), always leaving one unit for training. Raises DataError naming a
    class (``describe_class(c)``) with a single unit."""
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    by_class: dict[int, list[np.ndarray]] = {}
    for u in units:
        by_class.setdefault(int(labels[u[0]]), []).append(u)
    for c in sorted(by_class):
        us = by_class[c]
        if len(us) < 2:
            what = f"{len(us[0])} images, all in one group" if len(us[0]) > 1 else "1 image"
            raise DataError(
                f"{describe_class(c)} holds {what}: a class needs at least two (one to train on, one to "
                "test on), or give train/ and test/ folders"
            )
        target = max(1, round(test_fraction * sum(len(u) for u in us)))
        n_test = 0
        for k, j in enumerate(rng.permutation(len(us))):
            if n_test >= target or k == len(us) - 1:
                break
            test[us[j]] = True
            n_test += len(us[j])
    return test


@dataclass
class FolderData(ImageData):
    """ImageData of an image folder, with the files behind the rows and the groups of a groups file.

    ``train_files`` / ``test_files``: the relative path of each training / test image, row by row;
    ``train_groups``: int64 [N_train], the group (index into ``group_names``) of each training
    image, -1 for an image in no group; None without a groups file."""

    root: str = ""
    train_files: list[str] = field(default_factory=list)
    test_files: list[str] = field(default_factory=list)
    train_groups: torch.Tensor | None = None
    group_names: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict)

    def subset_train(self, n: int | None) -> "FolderData":
        sub = super().subset_train(n)
        if sub is self:
            return self
        return dataclasses.replace(
            sub, train_files=self.train_files[:n], train_groups=None if self.train_groups is None else self.train_groups[:n]
        )

    def split_record(self) -> dict:
        """What ``data_split.json`` holds: how the split was made (seed, test fraction, image size,
        channels, classes, groups file, what was skipped), and which files are the training images
        (in training order; after ``--train-subset N`` the N trained on) and the test images."""
        return {**self.record, "train": list(self.train_files), "test": list(self.test_files)}


def load_folder(
    data_dir=None,
    binarize: bool = False,
    download: bool = True,
    image_size: int | None = None,
    channels: int | None = None,
    test_fraction: float = 0.1,
    strict: bool = False,
    groups: str | None = None,
) -> FolderData:
    """An image folder as FolderData (module docstring): uint8 images [N, channels, image_size,
    image_size], class labels (zeros and ``has_labels`` False without class folders), the split,
    and the groups of ``groups``. ``binarize`` thresholds grey levels at 0.5; ``download`` is
    ignored. Prints one line (images, classes, what was skipped, groups) on stderr. Raises
    DataError for a folder that cannot be used and a bad groups file, in one line."""
    found = read_folder(data_dir, image_size, channels, strict)
    root, n = found.root, len(found.files)
    group = None
    group_names: list[str] = []
    dropped = 0
    if groups:
        group, group_names, dropped = read_groups(groups, root, found.files, {p for p, _ in found.bad})
    labels = found.labels if found.has_labels else np.zeros(n, dtype=np.int64)
    if (found.split != 2).all():
        test = found.split == 1
        if group is not None and (group[test] >= 0).any():
            i = int(np.flatnonzero(test & (group >= 0))[0])
            raise DataError(f"groups file {groups}: {found.files[i]} is a test image (under test/); groups hold training images only")
        how = "train/ and test/ folders"
    else:
        units: list[np.ndarray] = []
        if group is not None:
            order = np.argsort(group, kind="stable")
            g_sorted = group[order]
            starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
            for s, e in zip(starts, np.r_[starts[1:], len(order)]):
                if g_sorted[s] >= 0:
                    units.append(np.sort(order[s:e]))
            units += [np.array([i]) for i in np.flatnonzero(group < 0)]
            units.sort(key=lambda u: int(u[0]))
        else:
            units = [np.array([i]) for i in range(n)]

        def describe_class(c: int) -> str:
            return f"class folder {root / found.classes[c]}" if found.has_labels else f"{root}"

        test = seeded_split(labels, units, test_fraction, describe_class)
        how = f"seeded split: seed {SPLIT_SEED}, {test_fraction:.0%} {'of each class ' if found.has_labels else ''}held out"
    train_idx = np.flatnonzero(~test)
    train_idx = train_idx[np.random.default_rng(SPLIT_SEED).permutation(len(train_idx))]
    test_idx = np.flatnonzero(test)
    if not len(train_idx) or not len(test_idx):
        raise DataError(f"{root}: the split leaves no {'training' if not len(train_idx) else 'test'} images")
    images = found.images
    if binarize:
        images = np.where(images >= 128, 255, 0).astype(np.uint8)
    x_train = torch.from_numpy(np.ascontiguousarray(images[train_idx]))
    x_test = torch.from_numpy(np.ascontiguousarray(images[test_idx]))
    train_groups = None
    notes = ""
    if group is not None:
        g = group[train_idx]
        used = np.unique(g[g >= 0])
        remap = np.full(len(group_names), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        train_groups = torch.from_numpy(np.where(g >= 0, remap[np.maximum(g, 0)], -1))
        sizes = np.bincount(train_groups[train_groups >= 0].numpy(), minlength=len(used))
        group_names = [group_names[k] for k in used]
        singles, loose = int((sizes == 1).sum()), int((g < 0).sum())
        if not len(used):
            raise DataError(f"groups file {groups}: none of its images is a usable training image")
        lo, hi = int(sizes.min()), int(sizes.max())
        notes = (
            f"; groups: {len(used)} groups of {lo if lo == hi else f'{lo}-{hi}'} images from {groups}"
            + (f", {singles} of one image" if singles else "")
            + (f", {loose} training images in no group (not trained on)" if loose else "")
            + (f", {dropped} unreadable members left out" if dropped else "")
        )
    record = {
        "dataset": "folder",
        "root": str(root.resolve()),
        "how": how,
        "seed": SPLIT_SEED,
        "test_fraction": None if how.startswith("train/") else test_fraction,
        "image_size": found.image_size,
        "channels": found.channels,
        "classes": list(found.classes),
        "groups": str(groups) if groups else None,
        "skipped_unreadable": [[p, why] for p, why in found.bad],
        "skipped": {
            "hidden": len(found.skipped.hidden),
            "not_images": len(found.skipped.not_images),
            "empty_folders": list(found.skipped.empty_folders),
        },
        "n_train": int(len(train_idx)),
        "n_test": int(len(test_idx)),
    }
    if os.environ.get("RANK", "0") == "0":
        print(found.summary() + f"; {len(train_idx)} training and {len(test_idx)} test images ({how})" + notes, file=sys.stderr, flush=True)
    classes = list(found.classes) if found.has_labels else (list(found.classes) or ["images"])
    return FolderData(
        "folder",
        x_train,
        torch.from_numpy(labels[train_idx]),
        x_test,
        torch.from_numpy(labels[test_idx]),
        classes,
        source=f"{root} ({found.image_size}x{found.image_size} cache {found.cache_path})",
        binarized=bool(binarize),
        has_labels=found.has_labels,
        root=str(root),
        train_files=[found.files[i] for i in train_idx],
        test_files=[found.files[i] for i in test_idx],
        train_groups=train_groups,
        group_names=group_names,
        record=record,
    )


register_dataset(
    DatasetSpec(
        "folder",
        load_folder,
        folder_preset,
        None,
        None,
        HOW_TO_GET,
        options=("image_size", "channels", "test_fraction", "strict", "groups"),
    )
)
