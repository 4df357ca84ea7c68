"""Representations out: every image of a folder (or a data set) through a trained run's encoder.

``simvae embed RUN_DIR --data-dir DIR --out FILE`` (``embed_images`` in Python) writes, for every
image found, its representation: the posterior mean of q(z|x) for the generative methods (SimVAE,
VAE, beta-VAE, CR-VAE; also the posterior variance), the encoder's output for the discriminative
ones. Images are encoded un-augmented, in batches, with a progress bar on a terminal, on the GPU
when there is one (``--device``).

Outputs, one row per image found, rows in the same order everywhere:

- ``FILE.npy``: float32 [N, d] means (``np.load(..., allow_pickle=False)``);
- ``FILE.paths.txt``: the image of each row, one per line: its path relative to ``DIR`` for an
  image folder, ``train/<i>`` or ``test/<i>`` (the row of that split) for the other data sets;
- ``FILE.var.npy``: float32 [N, d] posterior variances (generative methods only);
- or, for ``FILE`` ending in ``.parquet``, one table (pyarrow): columns ``path``, ``label`` (the
  class name; only where the images have classes), ``mean`` and ``var`` (float32 fixed-size
  lists of d; ``var`` for generative methods only).

Images of an image folder are read as at training (``simvae.data.folder``: centre square resized
to the run's image size); those of another data set are resized to the run's size when they
differ (``Run.embed``). A channel count other than the run's is refused in one line
(``channels`` converts a folder's images explicitly).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from .data import ImageData, load_dataset
from .data import dataset as dataset_spec
from .errors import ConfigError, DataError
from .run import Run, load_run
from .run_config import RunConfig, load_data, load_run_config
from .rundir import DATA_SPLIT, atomic_write


def run_image_shape(run_dir: Path, cfg: RunConfig) -> tuple[int, int, int]:
    """The image shape [C, H, W] a run was trained on: its data set's fixed shape, else what its
    ``data_split.json`` records, else its config's ``image_size`` and ``channels``, else that of
    its training data (loaded)."""
    spec = dataset_spec(cfg.train.dataset)
    if spec.image_shape is not None:
        return tuple(spec.image_shape)  # type: ignore[return-value]
    split = run_dir / DATA_SPLIT
    if split.is_file():
        try:
            rec = json.loads(split.read_text())
            return int(rec["channels"]), int(rec["image_size"]), int(rec["image_size"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if cfg.train.image_size is not None and cfg.train.channels is not None:
        return cfg.train.channels, cfg.train.image_size, cfg.train.image_size
    return load_data(cfg.train).image_shape


def _placeholder(name: str, shape: tuple[int, int, int]) -> ImageData:
    empty = torch.zeros((0, *shape), dtype=torch.uint8)
    none = torch.zeros(0, dtype=torch.int64)
    return ImageData(name, empty, none, empty, none, ["images"], source="(not loaded)", has_labels=False)


def _images(
    cfg: RunConfig, shape: tuple[int, int, int], name: str, data_dir, channels: int | None, strict: bool, progress: bool
) -> tuple[np.ndarray | torch.Tensor, list[str], list[str] | None, str]:
    """(uint8 images [N, C, H, W], row names, class name of each row or None, where from)."""
    c, h, _ = shape
    if name == "folder":
        from .data.folder import read_folder

        found = read_folder(data_dir, image_size=h, channels=channels, strict=strict, progress=progress)
        print(found.summary(), file=sys.stderr, flush=True)
        if found.channels != c:
            kind = {1: "grey", 3: "colour"}
            raise DataError(
                f"the images in {found.root} are read as {kind[found.channels]} ({found.channels} channels) but "
                f"the run was trained on {kind[c]} images ({c}); pass --channels {c} to convert them"
            )
        labels = [found.classes[k] for k in found.labels] if found.has_labels else None
        return found.images, list(found.files), labels, str(found.root)
    if channels is not None:
        raise ConfigError(f"--channels applies to image folders (--dataset folder), not to '{name}'")
    data = load_dataset(name, data_dir if data_dir is not None else cfg.train.data_dir, download=cfg.train.download)
    images = torch.cat([data.train_images, data.test_images])
    ids = [f"train/{i}" for i in range(len(data.train_images))] + [f"test/{i}" for i in range(len(data.test_images))]
    labels = None
    if data.has_labels:
        labels = [data.classes[int(k)] for k in torch.cat([data.train_labels, data.test_labels])]
    return images, ids, labels, data.source or name


def encode_all(run: Run, images, batch_size: int = 1024, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(means float32 [N, d], variances float32 [N, d] or None) of ``images`` (uint8 [N, C, H, W],
    a tensor or a numpy array, memory-mapped or not), ``batch_size`` at a time."""
    from tqdm import tqdm

    means, variances = [], []
    with tqdm(
        total=len(images), desc="embed", unit="img", file=sys.stderr, disable=not progress, leave=False, mininterval=0.5, dynamic_ncols=True
    ) as bar:
        for s in range(0, len(images), batch_size):
            chunk = images[s : s + batch_size]
            x = torch.from_numpy(np.array(chunk)) if isinstance(chunk, np.ndarray) else chunk  # a copy: the map is read-only
            m, v = run.embed(x, batch_size)
            means.append(m.numpy().astype(np.float32, copy=False))
            if v is not None:
                variances.append(v.numpy().astype(np.float32, copy=False))
            bar.update(len(chunk))
    d = run.method.spec.latent_dim
    mean = np.concatenate(means) if means else np.zeros((0, d), np.float32)
    var = (np.concatenate(variances) if variances else None) if run.method.generative else None
    return mean, var


def _npy_bytes(a: np.ndarray):
    return lambda fh: np.save(fh, np.ascontiguousarray(a), allow_pickle=False)


def write_outputs(out: Path, ids: list[str], labels: list[str] | None, mean: np.ndarray, var: np.ndarray | None) -> list[Path]:
    """Write the files of the module docstring for ``out``; returns their paths. Raises
    DataError for a path that cannot be written on one line (a newline in it) and ConfigError
    when parquet is asked for without pyarrow."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError("writing a .parquet file needs pyarrow: pip install pyarrow (or --out FILE.npy)") from None
        d = mean.shape[1]
        cols = {"path": pa.array(ids, pa.string())}
        if labels is not None:
            cols["label"] = pa.array(labels, pa.string())
        cols["mean"] = pa.FixedSizeListArray.from_arrays(pa.array(mean.reshape(-1), pa.float32()), d)
        if var is not None:
            cols["var"] = pa.FixedSizeListArray.from_arrays(pa.array(var.reshape(-1), pa.float32()), d)
        table = pa.table(cols)

        def write(fh):
            pq.write_table(table, fh)

        return [atomic_write(out, write)]
    bad = next((p for p in ids if "\n" in p or "\r" in p), None)
    if bad is not None:
        raise DataError(
            f"the image path {bad!r} holds a line break, which FILE.paths.txt cannot list; rename it or write --out FILE.parquet"
        )
    base = out.with_suffix("") if out.suffix.lower() == ".npy" else out
    written = [
        atomic_write(base.with_name(base.name + ".npy"), _npy_bytes(mean)),
        atomic_write(base.with_name(base.name + ".paths.txt"), "".join(f"{p}\n" for p in ids)),
    ]
    var_path = base.with_name(base.name + ".var.npy")
    if var is not None:
        written.append(atomic_write(var_path, _npy_bytes(var)))
    else:
        var_path.unlink(missing_ok=True)  # of an earlier run: it would not match these rows
    return written


def embed_images(
    run_dir,
    out,
    data_dir=None,
    dataset: str | None = None,
    device: str = "auto",
    batch_size: int = 1024,
    channels: int | None = None,
    strict: bool = False,
    progress: bool | None = None,
) -> dict:
    """Embed every image of ``data_dir`` (default: the run's own data folder) with the run in
    ``run_dir`` and write ``out`` (module docstring). ``dataset``: how to read ``data_dir``
    (default: the run's data set). Returns {"n", "dim", "variances", "files", "source"}. Raises
    RunDirError for a folder without a run, DataError for images that cannot be read or have
    another channel count than the run's, ConfigError for bad options."""
    run_dir = Path(run_dir)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if channels not in (None, 1, 3):
        raise ConfigError(f"--channels must be 1 or 3, got {channels}")
    progress = sys.stderr.isatty() if progress is None else progress
    cfg = load_run_config(run_dir)
    name = dataset or cfg.train.dataset
    dataset_spec(name)  # an unknown name: ConfigError with the closest one
    shape = run_image_shape(run_dir, cfg)
    if data_dir is None and name == cfg.train.dataset:
        data_dir = cfg.train.data_dir
    images, ids, labels, source = _images(cfg, shape, name, data_dir, channels, strict, progress)
    run = load_run(run_dir, device=device, data=_placeholder(cfg.train.dataset, shape))
    mean, var = encode_all(run, images, batch_size, progress)
    files = write_outputs(Path(out), ids, labels, mean, var)
    return {
        "n": int(mean.shape[0]),
        "dim": int(mean.shape[1]),
        "variances": var is not None,
        "files": [str(f) for f in files],
        "source": source,
        "device": str(run.device),
    }
