"""A run folder: the name of every file it may hold, one atomic writer, and its lock.

Every module that writes into a run folder takes the file's name from here (``RUN_FILES``) and
writes it with ``atomic_write`` (a temporary file in the same folder, flushed, fsynced, then
renamed over the old one: a reader never sees half a file, and a failed write leaves the old
file and no temporary one). ``--overwrite`` removes exactly what is listed here
(``clear_run_files``). A new run-folder file is one entry in ``RUN_FILES``.

While a process writes a run folder it holds ``RunLock`` (an exclusive ``flock`` on
``RUN_DIR/.lock``, which records its pid): a second process is refused in one line, and the lock
of a process that was killed goes with it (the kernel releases a ``flock`` when its holder dies),
so a stale lock file never blocks a run.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import RunDirError


@dataclass(frozen=True)
class RunFile:
    name: str
    what: str
    stage: str  # "train" (written by training), "eval" (by an evaluation), "report" (figures, reports)


RUN_FILES: dict[str, RunFile] = {
    f.name: f
    for f in (
        RunFile("config.json", "the fully resolved config (train, method, eval); --config accepts it", "train"),
        RunFile("metrics.jsonl", "one line per epoch: each loss term, images/s, views/s, wall time", "train"),
        RunFile("steps.jsonl", "the loss terms averaged over every ~2% of an epoch (the per-step loss curve)", "train"),
        RunFile("checkpoint.pt", "the last checkpoint (model, optimiser, every RNG state, epoch, step)", "train"),
        RunFile("train_summary.json", "where the run stands, step size, wall time, throughput, device, provenance", "train"),
        RunFile("config_history.jsonl", "changes to the config after the start (a run extended with --resume --epochs N)", "train"),
        RunFile("data_split.json", "image folders: which images are training and test images (the seeded split)", "train"),
        RunFile("metrics.json", "the headline evaluation's metrics (the full protocol where there is one)", "eval"),
        RunFile("decoder.pt", "(discriminative methods) the post-hoc decoder and its validation error", "eval"),
        RunFile("report.md", "the headline evaluation's report: config, wall time, metrics, figures", "report"),
        RunFile("reconstructions.png", "test images above their reconstructions", "report"),
        RunFile("latent_map.png", "t-SNE map of test representations coloured by class", "report"),
        RunFile("loss_curve.png", "the loss terms over training", "report"),
        RunFile("samples.png", "class-conditional samples, ten per class (methods with a decoder)", "report"),
        RunFile("augmentations.png", "test images, augmented views and their reconstructions", "report"),
        RunFile("traversal.png", "decoded steps along the top principal directions of the representation", "report"),
    )
}
RUN_FOLDERS = {
    "eval": "every evaluation, one folder per settings (eval/NAME/metrics.json, report, figures)",
    "logs": "experiment logs (--logger: csv, tensorboard)",
    "comparison": "an old `simvae compare` output",
}
LOCK_NAME = ".lock"

CONFIG, CHECKPOINT, SUMMARY, METRICS, REPORT, DECODER = (
    "config.json",
    "checkpoint.pt",
    "train_summary.json",
    "metrics.json",
    "report.md",
    "decoder.pt",
)
METRICS_LOG, STEPS_LOG, HISTORY, DATA_SPLIT = "metrics.jsonl", "steps.jsonl", "config_history.jsonl", "data_split.json"


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:.1f} MB"


def atomic_write(path: str | Path, data: bytes | str | Callable[[Any], None]) -> Path:
    """Write ``data`` (bytes, text, or a function writing to a binary file object) to ``path``
    through a temporary file in the same folder, renamed over ``path`` once flushed and synced.

    Raises RunDirError in one line (naming the folder, and for a full disk the space needed and
    free) when the write fails; the previous ``path`` is then kept and no temporary file is left."""
    path = Path(path)
    if callable(data):
        buf = io.BytesIO()
        data(buf)
        data = buf.getvalue()
    payload = data.encode() if isinstance(data, str) else bytes(data)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        kept = f"; the previous {path.name} is kept" if path.exists() else ""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise RunDirError(
                f"no space left on the device of {path.parent} to write {path.name} "
                f"({_mb(len(payload))} needed, {_mb(_free_bytes(path.parent))} free){kept}; free some "
                "space and run the command again"
            ) from None
        raise RunDirError(f"cannot write {path}: {e.strerror or e}{kept}") from None
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented JSON text (``atomic_write``)."""
    return atomic_write(path, json.dumps(obj, indent=2) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` written with ``atomic_write``."""
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))


def clear_run_files(out: str | Path) -> list[str]:
    """Remove every file and folder a run writes (``RUN_FILES``, ``RUN_FOLDERS``) from ``out``, and
    left-over temporary files; anything else stays. Returns the names removed."""
    out = Path(out)
    removed = []
    for name in RUN_FILES:
        if (out / name).is_file():
            (out / name).unlink()
            removed.append(name)
    for name in RUN_FOLDERS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
            removed.append(name + "/")
    for tmp in out.glob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)
    return removed


class RunLock:
    """An exclusive lock on run folder ``out`` while this process writes it (a context manager).

    ``acquire()`` raises RunDirError naming the process that holds it. Re-entrant within one
    process (a lock already held by this process is shared, released by its last holder).
    Where ``fcntl`` is missing (not POSIX) it does nothing."""

    _held: dict[str, list] = {}

    def __init__(self, out: str | Path, what: str = "simvae"):
        self.out, self.what = Path(out), what
        self.key = str(self.out.resolve())

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        held = RunLock._held.get(self.key)
        if held is not None:
            held[1] += 1
            return self
        path = self.out / LOCK_NAME
        if not self.out.is_dir():
            raise RunDirError(f"run folder {self.out} does not exist")
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunDirError(f"{self.out} is in use by {holder}; wait for it to finish, or choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()} ({self.what}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        fh.flush()
        RunLock._held[self.key] = [fh, 1]
        return self

    def release(self) -> None:
        held = RunLock._held.get(self.key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            RunLock._held.pop(self.key)
            held[0].close()  # closing the file releases the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
