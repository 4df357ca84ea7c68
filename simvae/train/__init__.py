"""Training: the run folder's set-up, the one loop (``loop.py``), its callbacks and group sources.

``train(run, out)`` trains a fresh run or continues one (``resume=True``); a finished run is
extended by resuming it with more epochs (``extend_run``), recorded in ``config_history.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from ..checkpoint import CHECKPOINT_NAME, is_finished, load_checkpoint
from ..data import ImageData
from ..dist import is_main_process
from ..errors import ConfigError, RunDirError
from ..run_config import NEUTRAL_TRAIN_KEYS, RunConfig, experiment_keys, load_run_config
from ..rundir import CONFIG, DATA_SPLIT, LOCK_NAME, RunLock, atomic_write_json, clear_run_files
from ..rundir import HISTORY as HISTORY_NAME
from .callbacks import Callback, TrainingInterrupted
from .loop import Trainer

__all__ = [
    "Callback",
    "Trainer",
    "TrainingInterrupted",
    "train",
    "prepare_run_dir",
    "extend_run",
    "load_run_config",
    "resume_run_config",
    "run_state",
    "HISTORY_NAME",
]


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
            raise RunDirError(
                f"cannot resume: {out} has no checkpoint yet (it was stopped before its first one); "
                f"start it again with 'simvae train --out {out} --overwrite' (its own config is reused)"
            )
        return False
    if cfg_path.exists() and not overwrite:
        try:
            same = json.loads(cfg_path.read_text()) == run.to_dict()
        except (OSError, json.JSONDecodeError):
            same = False
        what = "this run already" if same else "a different run"
        raise RunDirError(f"{out} holds {what}; pass --resume {out} to continue it, --overwrite to replace it, or choose another --out")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"run folder {out} is not writable: {e.strerror or e}") from None
    return created


def _remove_if_empty(out: Path) -> None:
    """Remove a folder this process created and left empty (but for its lock file)."""
    if out.is_dir() and all(p.name == LOCK_NAME for p in out.iterdir()):
        (out / LOCK_NAME).unlink(missing_ok=True)
        out.rmdir()


def check_checkpoint_config(out: Path, run: RunConfig) -> None:
    """Refuse to resume when ``out``'s config.json differs from the config its checkpoint was trained
    with in a key that changes the experiment (the run's record must be what ran; ``--resume
    --epochs N`` is the one change made through the tool, recorded in config_history.jsonl).
    Raises RunDirError naming the keys."""
    ckpt = load_checkpoint(out / CHECKPOINT_NAME)
    saved = ckpt.get("config")
    if not isinstance(saved, Mapping):
        return
    now, then = experiment_keys(run.to_dict()), experiment_keys(saved)
    differ = [k for k in sorted(set(now) | set(then)) if k != "train.epochs" and now.get(k) != then.get(k)]
    if differ:
        shown = ", ".join(f"{k} {then.get(k, '(absent)')} -> {now.get(k, '(absent)')}" for k in differ[:4])
        raise RunDirError(
            f"{out / CONFIG} differs from the config its checkpoint was trained with ({shown}"
            f"{', ...' if len(differ) > 4 else ''}); put the old values back, or start a new run with "
            f"these settings (another --out, or --overwrite)"
        )


def train(
    run: RunConfig,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    data: ImageData | None = None,
    progress: bool = True,
    on_epoch_end=None,
    on_start=None,
) -> dict:
    """Train ``run`` into folder ``out`` (or continue it) and return the training summary.

    Raises RunDirError for an unusable folder, ConfigError/DataError before any training for
    bad options or data (a folder this call created is removed again), DivergenceError, and
    TrainingInterrupted on SIGINT/SIGTERM (after writing a checkpoint)."""
    out = Path(out)
    main = is_main_process()
    created = prepare_run_dir(out, run, resume, overwrite) if main else False
    with contextlib.ExitStack() as stack:
        if main:  # one process writes a run folder at a time; a second is refused in one line
            try:
                stack.enter_context(RunLock(out, "simvae train"))
            except RunDirError:
                if created:
                    _remove_if_empty(out)
                raise
        try:
            if main and resume:
                check_checkpoint_config(out, run)
            trainer = Trainer(run, out, data=data, progress=progress, resume=resume)  # loads data, checks sizes
        except BaseException:
            if created:
                stack.close()
                _remove_if_empty(out)  # a refused run leaves no empty folder behind
            raise
        if main and not resume:
            if overwrite:
                clear_run_files(out)
            trainer.run.save(out / CONFIG)  # as resolved (image folders: the image size and channels used)
            split_record = getattr(trainer.data, "split_record", None)
            if split_record is not None:  # image folders: which files are training and test images
                atomic_write_json(out / DATA_SPLIT, split_record())
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
    return {
        "epoch": epoch,
        "epoch_step": epoch_step,
        "step": int(ckpt["step"]),
        "epochs_planned": cfg.train.epochs,
        "finished": is_finished(epoch, epoch_step, cfg.train.epochs),
    }


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
        fh.write(
            json.dumps(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "after_epoch": state["epoch"],
                    "change": {"train.epochs": [run.train.epochs, epochs]},
                }
            )
            + "\n"
        )
    new.save(out / "config.json")
    return new


def resume_run_config(
    out: str | Path,
    train: Mapping[str, Any] | None = None,
    method: Mapping[str, Any] | None = None,
    eval: Mapping[str, Any] | None = None,
    text: bool = False,
    main_process: bool = True,
) -> tuple[RunConfig | None, str | None]:
    """The config to continue run folder ``out`` with, and the line to print (None: nothing).

    A resumed run keeps the experiment it started with: ``train`` options may only be those that do
    not change it (``NEUTRAL_TRAIN_KEYS``: threads, device, checkpointing, ...) or ``epochs`` (to
    extend a finished run, recorded in config_history.jsonl); evaluation options are accepted (the
    evaluation after training uses them); method options are refused. Returns (None, message) for a
    finished run that is not extended. Raises ConfigError naming the refused options, RunDirError
    for a folder without a run or checkpoint."""
    import dataclasses

    from ..config import replace
    from ..run_config import TrainConfig, assemble_run_config

    out = Path(out)
    train, method, eval = dict(train or {}), dict(method or {}), dict(eval or {})
    extend = train.pop("epochs", None)
    refused = [k for k in train if k not in NEUTRAL_TRAIN_KEYS] + list(method)
    if refused:
        raise ConfigError(
            f"--resume continues the experiment {out} started: "
            f"{', '.join('--' + k.replace('_', '-') for k in refused)} would change it (it accepts "
            "--epochs, --threads, --device, checkpoint and evaluation options); start a new run with "
            "--out, or replace this one with --overwrite"
        )
    run = load_run_config(out)
    if not (out / CHECKPOINT_NAME).is_file():
        raise RunDirError(
            f"cannot resume: {out} has no checkpoint yet (it was stopped before its first one); "
            f"start it again with 'simvae train --out {out} --overwrite' (its own config is reused)"
        )
    if train or eval:
        base = run.to_dict()
        run = assemble_run_config(base, train, None, eval, text=text, where=f"options of --resume {out}")
    state = run_state(out)  # (a checkpoint of another method is refused here)
    if main_process:  # refused before anything is printed or written (config_history.jsonl, config.json):
        with RunLock(out, "simvae train"):  # another process writing the folder, or
            check_checkpoint_config(out, run)  # a config.json edited since its checkpoint
    if extend is not None:
        from ..config import from_text

        epochs = from_text(TrainConfig, "epochs", extend) if text else extend
        if main_process:
            extended = extend_run(out, int(epochs))
            run = dataclasses.replace(run, train=replace(run.train, epochs=extended.train.epochs))
        else:
            run = dataclasses.replace(run, train=replace(run.train, epochs=int(epochs)))
    elif state["finished"]:
        return None, (
            f"{out} is finished ({state['epoch']} of {state['epochs_planned']} epochs, step {state['step']}): "
            f"nothing to resume. Extend it with 'simvae train --resume {out} --epochs N', or evaluate it with "
            f"'simvae evaluate {out}'"
        )
    if train or eval:
        if main_process:
            run.save(out / CONFIG)  # the options that ran, recorded (none of them changes the experiment)
    where = f"epoch {state['epoch']}" + (f" + {state['epoch_step']} steps" if state["epoch_step"] else "")
    return run, f"resuming {out} from {where} (step {state['step']}) of {run.train.epochs} epochs"
