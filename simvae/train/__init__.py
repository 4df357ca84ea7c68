"""Training: the run folder's set-up, the one loop (``loop.py``), its callbacks and group sources.

``train(run, out)`` trains a fresh run or continues one (``resume=True``); a finished run is
extended by resuming it with more epochs (``extend_run``), recorded in ``config_history.jsonl``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from ..checkpoint import CHECKPOINT_NAME, is_finished, load_checkpoint
from ..data import ImageData
from ..dist import is_main_process
from ..errors import RunDirError
from ..run_config import RunConfig, load_run_config
from .callbacks import Callback, TrainingInterrupted
from .loop import SUMMARY_NAME, Trainer

__all__ = ["Callback", "Trainer", "TrainingInterrupted", "train", "prepare_run_dir", "extend_run", "load_run_config",
           "RUN_FILES", "HISTORY_NAME"]

HISTORY_NAME = "config_history.jsonl"
RUN_FILES = ("config.json", "metrics.jsonl", "steps.jsonl", CHECKPOINT_NAME, SUMMARY_NAME, "metrics.json", "report.md",
             "reconstructions.png", "latent_map.png", "loss_curve.png", "decoder.pt", HISTORY_NAME)


def prepare_run_dir(out: Path, run: RunConfig, resume: bool, overwrite: bool) -> bool:
    """Refuse unusable folders before any work: not a folder, not writable, or holding another
    run. Returns True when this call created the folder (so a refused run can remove it)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} exists and is not a folder")
    cfg_path = out / "config.json"
    if resume:
        if not cfg_path.is_file():
            raise RunDirError(f"cannot resume: {out} holds no run (no config.json)")
        if not (out / CHECKPOINT_NAME).is_file():
            raise RunDirError(f"cannot resume: {out} has no checkpoint yet (it was stopped before its first one); "
                              f"start it again with 'simvae train --out {out} --overwrite' (its own config is reused)")
        return False
    if cfg_path.exists() and not overwrite:
        try:
            same = json.loads(cfg_path.read_text()) == run.to_dict()
        except (OSError, json.JSONDecodeError):
            same = False
        what = "this run already" if same else "a different run"
        raise RunDirError(f"{out} holds {what}; pass --resume {out} to continue it, --overwrite to replace it, "
                          "or choose another --out")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"run folder {out} is not writable: {e.strerror or e}") from None
    return created


def _clear_run_files(out: Path) -> None:
    for name in RUN_FILES:
        p = out / name
        if p.is_file():
            p.unlink()
    comparison = out / "comparison"
    if comparison.is_dir():
        shutil.rmtree(comparison)


def train(run: RunConfig, out: str | Path, resume: bool = False, overwrite: bool = False,
          data: ImageData | None = None, progress: bool = True, on_epoch_end=None, on_start=None) -> dict:
    """Train ``run`` into folder ``out`` (or continue it) and return the training summary.

    Raises RunDirError for an unusable folder, ConfigError/DataError before any training for
    bad options or data (a folder this call created is removed again), DivergenceError, and
    TrainingInterrupted on SIGINT/SIGTERM (after writing a checkpoint)."""
    out = Path(out)
    main = is_main_process()
    created = prepare_run_dir(out, run, resume, overwrite) if main else False
    try:
        trainer = Trainer(run, out, data=data, progress=progress, resume=resume)  # loads data, checks sizes
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a refused run leaves no empty folder behind
        raise
    if main and not resume:
        if overwrite:
            _clear_run_files(out)
        run.save(out / "config.json")
    if trainer.dist.world > 1:
        import torch.distributed as dist

        dist.barrier()
    if on_start is not None:
        on_start(trainer)
    return trainer.fit(on_epoch_end)


def run_state(out: str | Path) -> dict:
    """Where a run folder's checkpoint stands: epoch (completed), epoch_step, step, epochs planned,
    finished. Raises RunDirError/CheckpointError when there is no usable checkpoint."""
    out = Path(out)
    cfg = load_run_config(out)
    path = out / CHECKPOINT_NAME
    if not path.is_file():
        raise RunDirError(f"{out} has no checkpoint yet")
    ckpt = load_checkpoint(path)
    if ckpt.get("method") is not None and ckpt["method"] != cfg.train.method:
        from ..errors import CheckpointError

        raise CheckpointError(f"{path} holds a '{ckpt['method']}' model, not '{cfg.train.method}'")
    epoch, epoch_step = int(ckpt["epoch"]), int(ckpt["epoch_step"])
    return {"epoch": epoch, "epoch_step": epoch_step, "step": int(ckpt["step"]), "epochs_planned": cfg.train.epochs,
            "finished": is_finished(epoch, epoch_step, cfg.train.epochs)}


def extend_run(out: str | Path, epochs: int) -> RunConfig:
    """Raise a run's planned epochs to ``epochs`` (config.json rewritten, the change appended to
    ``config_history.jsonl``) and return the new config. Raises ConfigError when ``epochs`` is not
    above the epochs already trained."""
    import dataclasses

    from ..errors import ConfigError

    out = Path(out)
    run = load_run_config(out)
    state = run_state(out)
    if epochs <= state["epoch"]:
        raise ConfigError(f"--epochs {epochs} must be more than the {state['epoch']} epochs {out} has already trained")
    if epochs == run.train.epochs:
        return run
    from ..config import replace

    new = dataclasses.replace(run, train=replace(run.train, epochs=epochs))
    with open(out / HISTORY_NAME, "a") as fh:
        fh.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "after_epoch": state["epoch"],
                             "change": {"train.epochs": [run.train.epochs, epochs]}}) + "\n")
    new.save(out / "config.json")
    return new
