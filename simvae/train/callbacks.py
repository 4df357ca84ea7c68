"""What happens around the training step: progress, logs, checkpoints, divergence, interrupts.

The loop (``loop.Trainer.fit``) calls every callback at the same points on every process:
``on_train_start``, ``on_step_end`` (after each optimiser step, with that step's loss terms),
``on_epoch_end`` (with the epoch's record) and ``on_train_end``. Figures shown or logged are
the global batch's: callbacks that need them call the collective ``global_mean`` at the same
step on every process, and only the main process writes or prints.
(pythae's ``trainers/training_callbacks.py`` is the model.)
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from ..checkpoint import CHECKPOINT_NAME
from ..dist import global_mean, world_size
from ..errors import DivergenceError

METRICS_LOG = "metrics.jsonl"  # one record per epoch
STEPS_LOG = "steps.jsonl"  # the loss terms averaged over every few steps (the per-step loss curve)


class Callback:
    def on_train_start(self, trainer) -> None: ...

    def on_step_end(self, trainer, terms: dict[str, torch.Tensor]) -> None: ...

    def on_epoch_end(self, trainer, record: dict) -> None: ...

    def on_train_end(self, trainer) -> None: ...


def _format_terms(terms: dict) -> str:
    return " ".join(f"{k}={float(v):.4g}" for k, v in terms.items())


class Progress(Callback):
    """A tqdm bar on a terminal; elsewhere (a log file, CI) a plain line every ``every_s``
    seconds and at each epoch's end, instead of thousands of bar redraws."""

    def __init__(self, enabled: bool = True, every_s: float = 120.0, stream=None):
        self.enabled, self.every_s = enabled, every_s
        self.stream = stream or sys.stderr
        self.bar = None

    @property
    def tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def _start_epoch(self, trainer) -> None:
        self.t_epoch, self.steps_in_life, self.last_line = time.monotonic(), 0, time.monotonic()
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        if self.enabled and trainer.dist.main and self.tty:
            from tqdm import tqdm

            tc = trainer.run.train
            self.bar = tqdm(total=trainer.steps_per_epoch, initial=trainer.epoch_step, desc=f"epoch {trainer.epoch + 1}/{tc.epochs}",
                            leave=False, dynamic_ncols=True, mininterval=0.5, file=self.stream)

    def on_train_start(self, trainer) -> None:
        self._start_epoch(trainer)

    def on_step_end(self, trainer, terms) -> None:
        if not self.enabled:
            return
        if self.bar is None and not hasattr(self, "t_epoch"):
            self._start_epoch(trainer)
        self.steps_in_life += 1
        if not getattr(self, "estimated", False) and trainer.dist.main and (
                self.steps_in_life >= max(1, min(50, trainer.steps_per_epoch // 4))
                or time.monotonic() - self.t_epoch >= 15):
            self.estimated = True
            per_step = (time.monotonic() - self.t_epoch) / self.steps_in_life
            left = trainer.steps_per_epoch * trainer.run.train.epochs - trainer.step
            msg = f"estimated training time: {left * per_step / 60:.1f} min more ({1e3 * per_step:.0f} ms per step)"
            if self.bar is not None:
                self.bar.write(msg, file=self.stream)
            else:
                print(msg, file=self.stream, flush=True)
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
        s = trainer.epoch_step
        if s % 20 == 0 or s == trainer.steps_per_epoch:
            shown = global_mean({k: v / self.count for k, v in self.sums.items()})  # collective: every process
            rate = self.steps_in_life * trainer.images_per_step / max(time.monotonic() - self.t_epoch, 1e-9)
            if self.bar is not None:
                self.bar.set_postfix({**{k: f"{float(v):.4g}" for k, v in shown.items()},
                                      "views/s": f"{rate * trainer.views_per_step / trainer.images_per_step:.0f}"},
                                     refresh=False)
            elif trainer.dist.main and time.monotonic() - self.last_line >= self.every_s:
                self.last_line = time.monotonic()
                eta = (trainer.steps_per_epoch - s) * trainer.images_per_step / max(rate, 1e-9)
                print(f"epoch {trainer.epoch + 1}/{trainer.run.train.epochs}: step {s}/{trainer.steps_per_epoch} "
                      f"{_format_terms(shown)} | {rate * trainer.views_per_step / trainer.images_per_step:.0f} views/s "
                      f"| epoch ends in {eta / 60:.1f} min", file=self.stream, flush=True)

    def on_epoch_end(self, trainer, record) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.enabled and trainer.dist.main:
            terms = {k: v for k, v in record.items() if k in trainer.term_names}
            print(f"epoch {record['epoch']}/{trainer.run.train.epochs}: {_format_terms(terms)} | "
                  f"{record['views_per_s']:.0f} views/s | {record['epoch_seconds']:.1f}s", file=self.stream, flush=True)
        if trainer.epoch < trainer.run.train.epochs:
            self._start_epoch(trainer)

    def on_train_end(self, trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MetricsLog(Callback):
    """``metrics.jsonl``: a record per epoch; ``steps.jsonl``: the global loss terms averaged
    over every ``every`` steps (so a short run still has a loss curve per step)."""

    def __init__(self, out: Path, every: int | None = None):
        self.out, self.every = Path(out), every
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def on_train_start(self, trainer) -> None:
        if self.every is None:
            self.every = max(1, trainer.steps_per_epoch // 50)
        if trainer.dist.main:  # a resumed run re-logs what came after its checkpoint
            _truncate_jsonl(self.out / METRICS_LOG, "epoch", trainer.epoch)
            _truncate_jsonl(self.out / STEPS_LOG, "step", trainer.step)

    def on_step_end(self, trainer, terms) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        if trainer.step % self.every == 0:
            means = global_mean({k: v / self.count for k, v in self.sums.items()})  # collective
            if trainer.dist.main:
                rec = {"step": trainer.step, "epoch": round(trainer.step / trainer.steps_per_epoch, 4),
                       **{k: float(v) for k, v in means.items()}}
                with open(self.out / STEPS_LOG, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")
            self.sums, self.count = {}, 0

    def on_epoch_end(self, trainer, record) -> None:
        if trainer.dist.main:
            with open(self.out / METRICS_LOG, "a") as fh:
                fh.write(json.dumps(record) + "\n")


def _truncate_jsonl(path: Path, key: str, keep_upto: int) -> None:
    """Keep the lines of ``path`` whose ``key`` is <= keep_upto (none for a fresh run)."""
    lines = path.read_text().splitlines() if path.is_file() and keep_upto > 0 else []
    kept = [line for line in lines if line.strip() and json.loads(line).get(key, 0) <= keep_upto]
    path.write_text("".join(line + "\n" for line in kept))


class DivergenceGuard(Callback):
    """Stop on the first non-finite loss term, naming the step and the term. Reading a loss on
    the host is free on a CPU but stalls a GPU's pipeline, so the check runs every ``every``
    steps (and always before a checkpoint: ``flush``)."""

    def __init__(self, every: int):
        self.every = every
        self.pending: list[tuple[int, dict]] = []

    def on_step_end(self, trainer, terms) -> None:
        self.pending.append((trainer.step, terms))
        if len(self.pending) >= self.every:
            self.flush(trainer)

    def on_epoch_end(self, trainer, record) -> None:
        self.flush(trainer)

    def flush(self, trainer) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        stacked = torch.stack([torch.stack(list(t.values())) for _, t in pending])
        if bool(torch.isfinite(stacked).all()):
            return
        for step, terms in pending:
            for name, v in terms.items():
                if not math.isfinite(float(v)):
                    kept = trainer.out / CHECKPOINT_NAME
                    where = f"the last good checkpoint is kept in {kept}" if kept.exists() else "no checkpoint had been written yet"
                    raise DivergenceError(
                        f"training diverged at step {step} (epoch {trainer.epoch + 1}): loss term '{name}' is {float(v)}; "
                        f"{where}; try a lower --lr" + (" or --precision fp32" if trainer.precision == "bf16" else ""))


class Checkpoints(Callback):
    """A checkpoint every ``checkpoint_every`` epochs and at the end; within an epoch every
    ``checkpoint_every_steps`` steps or ``checkpoint_minutes`` minutes (0: off)."""

    def __init__(self, guard: DivergenceGuard):
        self.guard = guard
        self.last = time.monotonic()

    def save(self, trainer) -> None:
        self.guard.flush(trainer)
        trainer.save_checkpoint()
        self.last = time.monotonic()

    def on_step_end(self, trainer, terms) -> None:
        tc = trainer.run.train
        if trainer.epoch_step >= trainer.steps_per_epoch:
            return  # the epoch's end decides
        due = bool(tc.checkpoint_every_steps) and trainer.step % tc.checkpoint_every_steps == 0
        if tc.checkpoint_minutes and not due:  # only the main process writes: no need to agree
            due = time.monotonic() - self.last >= 60 * tc.checkpoint_minutes
        if due:
            self.save(trainer)

    def on_epoch_end(self, trainer, record) -> None:
        tc = trainer.run.train
        if trainer.epoch % tc.checkpoint_every == 0 or trainer.epoch >= tc.epochs:
            self.save(trainer)


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by the loop after SIGINT/SIGTERM, once the interrupted step's checkpoint is written."""

    def __init__(self, signum: int, checkpoint: Path | None):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.checkpoint = signum, checkpoint


class StopOnSignal(Callback):
    """SIGINT (Ctrl-C) and SIGTERM finish the current step, write a checkpoint, and stop with
    ``TrainingInterrupted``, so that ``simvae train --resume RUN`` continues from that step.
    Under DDP the processes agree on the step to stop at (a max-reduction of the flag, on the
    training device so that nccl can reduce it), every ``every`` steps: a collective read on the
    host stalls a GPU's pipeline, so a GPU run stops within a few steps of the signal."""

    def __init__(self, checkpoints: Checkpoints, every: int = 1):
        self.checkpoints, self.every = checkpoints, max(1, every)
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        if self.signum is not None:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.signum = signum

    def on_train_start(self, trainer) -> None:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = {}

    def on_step_end(self, trainer, terms) -> None:
        stop = self.signum is not None
        if world_size() > 1:
            if trainer.step % self.every:
                return
            flag = torch.tensor([float(self.signum or 0)], dtype=torch.float64, device=trainer.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop, self.signum = bool(flag.item()), int(flag.item()) or None
        if stop:
            self.checkpoints.save(trainer)
            self._restore()
            raise TrainingInterrupted(self.signum or signal.SIGINT, trainer.out / CHECKPOINT_NAME)

    def on_train_end(self, trainer) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}
