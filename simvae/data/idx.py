"""Reader for the IDX format of MNIST and Fashion-MNIST (gzipped or not).

Layout (big-endian): magic = 0x00 0x00 <dtype=0x08 for uint8> <ndim>, then ndim
uint32 sizes, then the data. Images are idx3 (magic 2051), labels idx1 (2049).
Every way a file can be wrong ends in a DataError naming the file.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .checks import check_counts

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            raw = fh.read()
        if head == b"\x1f\x8b":
            return gzip.decompress(raw)
        return raw
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {path}: {e} (the file is damaged or not a gzip/IDX file; download it again)") from None


def read_idx(path: str | Path, expected_magic: int) -> torch.Tensor:
    """Read one IDX file as a uint8 tensor of its stated shape.

    Raises DataError naming the file when it cannot be read, has the wrong magic number, or its
    size is not exactly what its header states (truncated, or with bytes left over)."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 8:
        raise DataError(f"{path}: truncated file ({len(data)} bytes; an IDX file has at least an 8-byte header)")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        kind = "images (idx3)" if expected_magic == IMAGES_MAGIC else "labels (idx1)"
        raise DataError(
            f"{path}: wrong magic number {magic} (expected {expected_magic} for {kind}); "
            "the file is not an IDX file of this kind or is damaged"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header ({len(data)} bytes, need {header})")
    shape = struct.unpack(">" + "I" * ndim, data[4:header])
    count = math.prod(shape)  # exact: np.prod of four uint32 sizes can wrap around int64
    if len(data) - header < count:
        raise DataError(
            f"{path}: truncated file: header promises {count} bytes of data {tuple(shape)}, found {len(data) - header}; download it again"
        )
    if len(data) - header > count:
        raise DataError(
            f"{path}: {len(data) - header - count} bytes more than the {count} bytes of data {tuple(shape)} "
            "its header promises (a damaged file or a wrong header); download it again"
        )
    arr = np.frombuffer(data, dtype=np.uint8, count=count, offset=header).reshape(shape)
    return torch.from_numpy(arr.copy())


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 1, H, W] uint8 and labels [N] int64, with matching counts checked.

    Raises DataError for a damaged file, wrong dimensions, or counts that differ. Label values are
    checked against the data set's classes by the caller (``checks.check_labels``)."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected 3 dimensions (N, H, W), found shape {tuple(images.shape)}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected 1 dimension (N,), found shape {tuple(labels.shape)}")
    check_counts(images.shape[0], labels.shape[0], images_path, labels_path)
    return images.unsqueeze(1).contiguous(), labels.long()


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as an IDX file (used by tests and to make small data sets)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC if array.ndim == 1 else 0x800 + array.ndim
    payload = struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload, compresslevel=1) if compress else payload)
