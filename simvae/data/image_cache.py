"""Image files on disk: which files and folders count, and a decoded, memory-mapped cache of them.

One module serves every data set read from image files (image folders, CelebA, CIFAR-10's image
folders):

- **What counts** (``scan_image_tree``): a file is an image when Pillow has a decoder for its
  extension (PNG, JPEG, WebP, BMP, GIF, TIFF, ...; ``image_suffixes()``). Hidden entries (names
  starting with '.', e.g. ``.ipynb_checkpoints/``, ``.DS_Store``), other files and class folders
  without an image are skipped and counted (``Skipped``), never read as images or classes.
  ``split_classes`` checks that the ``train/`` and ``test/`` folders hold the same classes.
- **The cache** (``CacheEntry``): images are decoded once, by a process pool over chunks of
  files (``decode_into``, with a progress bar on a terminal), into a uint8 [N, C, H, W] ``.npy``
  that later loads memory-map (no copy, start in seconds). An entry lives in
  ``$SIMVAE_CACHE_DIR/<kind>/`` (see ``simvae.cache``) as ``<kind>-<key>.npy`` plus a ``.npz`` of
  metadata arrays; the key hashes the names, sizes and modification times of the source files
  and the preprocessing, so a changed source builds a new entry (and the superseded one of the
  same source is removed). Both files are written under temporary names and renamed, the
  metadata last: an entry is complete only once its ``.npz`` is in place, so an interrupted build
  is never read. Builders hold an exclusive lock (``.<stem>.lock``): a second process (a DDP
  rank, a parallel run) waits for the first and then opens what it wrote.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..cache import CACHE_ENV, cache_dir
from ..errors import DataError

CHUNK = 1000  # images per task of the decoding pool

# Formats Pillow identifies but cannot decode without an outside handler or program.
_UNDECODABLE = {".bufr", ".grib", ".h5", ".hdf", ".mpeg", ".mpg"}


@functools.lru_cache(maxsize=None)
def image_suffixes() -> frozenset[str]:
    """File extensions (lower case, with the dot) read as images: those Pillow has a decoder for
    (asked once, on first use: it loads every Pillow plugin)."""
    from PIL import Image

    Image.init()
    found = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return frozenset((found | {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}) - _UNDECODABLE)


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in image_suffixes()


# -- which files -------------------------------------------------------------------------------


@dataclass
class Skipped:
    """What a scan left out, by kind: hidden entries, files that are not images, folders without
    an image (paths relative to the scanned folder)."""

    hidden: list[str] = field(default_factory=list)
    not_images: list[str] = field(default_factory=list)
    empty_folders: list[str] = field(default_factory=list)

    def merge(self, other: "Skipped", prefix: str = "") -> None:
        self.hidden += [prefix + p for p in other.hidden]
        self.not_images += [prefix + p for p in other.not_images]
        self.empty_folders += [prefix + p for p in other.empty_folders]

    def describe(self) -> str:
        """'2 hidden entries (.ipynb_checkpoints, ...), 1 file that is not an image (notes.txt)', or ''."""
        parts = []
        for items, one, many in (
            (self.hidden, "hidden entry", "hidden entries"),
            (self.not_images, "file that is not an image", "files that are not images"),
            (self.empty_folders, "folder without images", "folders without images"),
        ):
            if items:
                shown = ", ".join(items[:2]) + (", ..." if len(items) > 2 else "")
                parts.append(f"{len(items)} {one if len(items) == 1 else many} ({shown})")
        return ", ".join(parts)


def _walk_images(folder: Path, rel: str, skipped: Skipped) -> list[str]:
    """Image files under ``folder`` (recursively, sorted), as paths relative to the scan root
    (``rel`` is ``folder``'s); hidden entries and other files are counted in ``skipped``."""
    out: list[str] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        raise DataError(f"cannot list folder {folder}: {e.strerror or e}") from None
    for e in entries:
        path = f"{rel}{e.name}"
        if is_hidden(e.name):
            skipped.hidden.append(path)
        elif e.is_dir():
            out += _walk_images(Path(e.path), path + "/", skipped)
        elif is_image_name(e.name):
            out.append(path)
        else:
            skipped.not_images.append(path)
    return out


def scan_image_tree(folder: Path) -> tuple[dict[str, list[str]], list[str], Skipped]:
    """The images of ``folder``: ({class folder name: its image paths, recursively}, images lying
    in ``folder`` itself, what was skipped). Paths are relative to ``folder``, sorted. Class
    folders without an image are left out (counted in ``Skipped.empty_folders``).
    Raises DataError when ``folder`` cannot be listed."""
    skipped = Skipped()
    classes: dict[str, list[str]] = {}
    loose: list[str] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        raise DataError(f"cannot list folder {folder}: {e.strerror or e}") from None
    for e in entries:
        if is_hidden(e.name):
            skipped.hidden.append(e.name)
        elif e.is_dir():
            found = _walk_images(Path(e.path), e.name + "/", skipped)
            if found:
                classes[e.name] = found
            else:
                skipped.empty_folders.append(e.name + "/")
        elif is_image_name(e.name):
            loose.append(e.name)
        else:
            skipped.not_images.append(e.name)
    return classes, loose, skipped


def split_classes(root: Path, splits: Sequence[str] = ("train", "test")) -> tuple[list[str], dict[str, list[tuple[str, int]]], Skipped]:
    """(classes, {split: [(path relative to ``root``, class index)]}, skipped) of the class
    folders ``root/<split>/<class>/``, classes sorted by name. Hidden folders are never classes;
    a class folder empty in every split is skipped and counted.

    Raises DataError naming the folder when a split has a class folder the other lacks, when a
    class folder is empty in one split and not in another, or when a split has no class folder."""
    found, skipped = {}, Skipped()
    for split in splits:
        classes, loose, sk = scan_image_tree(root / split)
        skipped.merge(sk, f"{split}/")
        if loose and classes:
            raise DataError(
                f"{root / split} holds {len(loose)} images beside its class folders "
                f"({loose[0]}, ...); move them into a class folder or remove them"
            )
        found[split] = classes
    empty = {
        s: {p.rstrip("/").split("/", 1)[1] for p in skipped.empty_folders if p.startswith(f"{s}/") and p.count("/") == 2} for s in splits
    }
    names = sorted(set().union(*(set(c) for c in found.values())))
    for split in splits:
        for name in names:
            if name in found[split]:
                continue
            other = next(s for s in splits if name in found[s])
            if name in empty[split]:
                raise DataError(
                    f"class folder {root / split / name} holds no images but {root / other / name} does; "
                    "put its test images in it or remove the class from every split"
                )
            raise DataError(
                f"{root / split} has no class folder '{name}' (which {root / other} has); train and test must hold the same classes"
            )
    if not names:
        raise DataError(
            f"{root / splits[0]} holds no images in class folders" + (f" (skipped: {skipped.describe()})" if skipped.describe() else "")
        )
    items = {s: [(f"{s}/{p}", c) for c, name in enumerate(names) for p in found[s][name]] for s in splits}
    return names, items, skipped


# -- the cache key -----------------------------------------------------------------------------


def file_stats(root: Path, rel_paths: Iterable[str]) -> list[tuple[str, int, int]]:
    """(relative path, size in bytes, mtime in ns) of each file. Raises DataError for one that
    has gone."""
    out = []
    for p in rel_paths:
        try:
            st = os.stat(root / p)
        except OSError as e:
            raise DataError(f"cannot read {root / p}: {e.strerror or e}") from None
        out.append((p, st.st_size, st.st_mtime_ns))
    return out


def source_key(header: str, entries: Iterable[tuple[str, int, int]], n_hex: int = 20) -> str:
    """A hash of ``header`` (the preprocessing: sizes, version) and the sorted (name, size, mtime)
    ``entries`` of the source files: the key of a cache entry."""
    h = hashlib.sha256(f"{header}\n".encode())
    for name, size, mtime in sorted(entries):
        h.update(f"{name}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()[:n_hex]


# -- decoding in parallel ----------------------------------------------------------------------


def n_workers() -> int:
    """Processes of the decoding pool: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _reason(e: BaseException, path: str) -> str:
    text = str(e).replace(f" {path!r}", "").replace(repr(path), "the file").replace(path, "the file")
    return f"{type(e).__name__}: {text}"


def _decode_chunk(out_path: str, start: int, paths: list[str], read: Callable[[str], np.ndarray]) -> list[tuple[str, str]]:
    """Decode ``paths`` with ``read`` into rows ``start..`` of the .npy at ``out_path``; returns
    (path, reason) of each file that could not be used (its row stays zero)."""
    out = np.load(out_path, mmap_mode="r+")
    bad = []
    for k, p in enumerate(paths):
        try:
            out[start + k] = read(p)
        except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
            bad.append((p, _reason(e, p)))
    out.flush()
    del out
    return bad


def decode_into(
    out_path: Path,
    paths: list[str],
    read: Callable[[str], np.ndarray],
    shape: tuple[int, int, int],
    desc: str,
    progress: bool,
    chunk: int | None = None,
    workers: int | None = None,
    stop_on_bad: bool = False,
) -> list[tuple[str, str]]:
    """Create the uint8 [len(paths), *shape] .npy ``out_path`` and decode every image into it with
    ``read(path) -> uint8 [C, H, W]``, in chunks, in a process pool when there are several chunks
    and CPUs (``read`` must then be picklable: a module-level function or a ``functools.partial``
    of one). Returns the sorted (path, reason) of the files ``read`` failed on (their rows stay
    zero); with ``stop_on_bad`` it stops at the first chunk holding one. ``chunk`` (images per
    task) and ``workers`` default to ``CHUNK`` and ``n_workers()``."""
    from tqdm import tqdm

    chunk = chunk or CHUNK

    np.lib.format.open_memmap(out_path, mode="w+", dtype=np.uint8, shape=(len(paths), *shape)).flush()
    chunks = [(i, paths[i : i + chunk]) for i in range(0, len(paths), chunk)]
    workers = min(n_workers() if workers is None else workers, len(chunks))
    bad: list[tuple[str, str]] = []
    with tqdm(
        total=len(paths), desc=desc, unit="img", file=sys.stderr, disable=not progress, dynamic_ncols=True, mininterval=0.5, leave=False
    ) as bar:
        if workers <= 1:
            for start, part in chunks:
                bad += _decode_chunk(str(out_path), start, part, read)
                bar.update(len(part))
                if bad and stop_on_bad:
                    break
            return sorted(bad)
        from concurrent.futures import ProcessPoolExecutor, as_completed

        pool = ProcessPoolExecutor(max_workers=workers)
        try:
            futures = {pool.submit(_decode_chunk, str(out_path), s, c, read): len(c) for s, c in chunks}
            for f in as_completed(futures):
                bad += f.result()
                bar.update(futures[f])
                if bad and stop_on_bad:
                    break
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        if bad and stop_on_bad:
            pool.shutdown(wait=True, cancel_futures=True)
        else:
            pool.shutdown()
    return sorted(bad)


def compact(path: Path, keep: np.ndarray) -> None:
    """Rewrite the .npy at ``path`` with only the rows ``keep`` (sorted indices), chunk by chunk."""
    src = np.load(path, mmap_mode="r")
    tmp = path.with_name(path.name + ".compact")
    dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=src.dtype, shape=(len(keep), *src.shape[1:]))
    for s in range(0, len(keep), CHUNK):
        dst[s : s + CHUNK] = src[keep[s : s + CHUNK]]
    dst.flush()
    del dst, src
    os.replace(tmp, path)


def describe_bad(bad: Sequence[tuple[str, str]], n_total: int, show: int = 3) -> str:
    """'2 of the 100 images cannot be used: a.jpg (OSError: ...); b.png (...)'."""
    shown = "; ".join(f"{p} ({why})" for p, why in bad[:show])
    return f"{len(bad)} of the {n_total} images cannot be used: {shown}{'; ...' if len(bad) > show else ''}"


# -- the cache entry ---------------------------------------------------------------------------


@contextlib.contextmanager
def exclusive(path: Path, waiting: str | None = None):
    """Hold an exclusive lock on ``path`` (created) while the block runs; ``waiting`` is printed to
    stderr when another process holds it (this one then waits). A no-op where file locks are not
    available. The kernel releases the lock of a process that dies."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if waiting:
                print(waiting, file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()


@dataclass
class CacheEntry:
    """One cached set of decoded images: ``<kind>-<key>.npy`` (uint8 [N, C, H, W]) and
    ``<kind>-<key>.npz`` (metadata arrays; ``shape`` [4] and ``source`` always) in
    ``cache_dir(kind)``."""

    kind: str
    key: str

    @property
    def folder(self) -> Path:
        return cache_dir(self.kind)

    @property
    def stem(self) -> str:
        return f"{self.kind}-{self.key}"

    @property
    def images_path(self) -> Path:
        return self.folder / f"{self.stem}.npy"

    @property
    def meta_path(self) -> Path:
        return self.folder / f"{self.stem}.npz"

    def open(self, validate: Callable[[np.ndarray, dict], bool] | None = None) -> tuple[np.ndarray, dict] | None:
        """(memory-mapped images uint8 [N, C, H, W], metadata) of the complete entry, else None
        (absent, half written, or damaged by hand or a full disk: built again)."""
        images_path, meta_path = self.images_path, self.meta_path
        if not (images_path.is_file() and meta_path.is_file()):
            return None
        try:
            with np.load(meta_path, allow_pickle=False) as z:
                meta = {k: z[k] for k in z.files}
            images = np.load(images_path, mmap_mode="r")
            if images.dtype != np.uint8 or tuple(images.shape) != tuple(int(v) for v in meta["shape"]):
                return None
            if validate is not None and not validate(images, meta):
                return None
        except (OSError, ValueError, KeyError, EOFError):
            return None
        return images, meta

    def get(
        self, build: Callable[[Path], dict], source: str, validate: Callable[[np.ndarray, dict], bool] | None = None
    ) -> tuple[np.ndarray, dict]:
        """The entry, built first when it is not complete: ``build(tmp_images_path)`` writes the
        images .npy at that path (``decode_into``) and returns the metadata arrays. ``source``
        names what the entry was built from (a folder and its preprocessing): entries of the same
        source that this one supersedes are removed. Raises what ``build`` raises (nothing is
        left behind then) and DataError when the entry cannot be read back."""
        cached = self.open(validate)
        if cached is not None:
            return cached
        with exclusive(
            self.folder / f".{self.stem}.lock", f"simvae: waiting for another process that is building the image cache {self.images_path}"
        ):
            cached = self.open(validate)  # another process may have built it meanwhile
            if cached is None:
                for left in self.folder.glob(f".{self.stem}.*.tmp*"):  # of a killed build
                    left.unlink(missing_ok=True)
                self._build(build, source)
                cached = self.open(validate)
        if cached is None:
            raise DataError(
                f"the image cache just written to {self.images_path} cannot be read back; is "
                f"{self.folder} full? Delete it or point {CACHE_ENV} elsewhere"
            )
        return cached

    def _build(self, build: Callable[[Path], dict], source: str) -> None:
        tmp = self.folder / f".{self.stem}.npy.{os.getpid()}.tmp"
        tmp_meta = self.folder / f".{self.stem}.npz.{os.getpid()}.tmp"
        try:
            meta = dict(build(tmp))
            images = np.load(tmp, mmap_mode="r")
            meta["shape"] = np.array(images.shape, dtype=np.int64)
            del images
            meta["source"] = np.array(source)
            with open(tmp_meta, "wb") as fh:
                np.savez(fh, **meta)
            os.replace(tmp, self.images_path)
            os.replace(tmp_meta, self.meta_path)  # written last: an entry without it is never used
        finally:
            for p in (tmp, tmp_meta, tmp.with_name(tmp.name + ".compact")):
                p.unlink(missing_ok=True)
        self._remove_superseded(source)

    def _remove_superseded(self, source: str) -> None:
        """Delete the other entries of the same ``source`` (its files have changed since)."""
        for meta in self.folder.glob(f"{self.kind}-*.npz"):
            if meta == self.meta_path:
                continue
            try:
                with np.load(meta, allow_pickle=False) as z:
                    same = str(z["source"]) == source
            except (OSError, ValueError, KeyError, EOFError):
                continue
            if same:
                meta.unlink(missing_ok=True)
                meta.with_suffix(".npy").unlink(missing_ok=True)


def as_tensor(images: np.ndarray):
    """A torch uint8 tensor over a (read-only) memory map, without a copy or torch's warning."""
    import warnings

    import torch

    with warnings.catch_warnings():  # read-only map: torch warns that writing to it is undefined
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(images)
