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


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


class StepClock:
    """Seconds per training step, from recent steps only.

    The first ``warmup`` steps are not timed (allocator, kernel selection and caches make them
    slow), nor is the first step after ``pause()`` (the gap before it holds an epoch's end:
    checkpoint, validation). ``per_step`` is the mean of the timed steps that ended in the last
    ``window_s`` seconds (at least the last two), so it follows a machine that gets busier or
    quieter during the run."""

    def __init__(self, warmup: int = 5, window_s: float = 60.0):
        from collections import deque

        self.window_s = window_s
        self.skip = max(1, warmup)
        self.prev: float | None = None
        self.recent: deque = deque()  # (end time, seconds) of timed steps
        self.recent_sum = 0.0
        self.timed_steps, self.timed_s = 0, 0.0

    def pause(self) -> None:
        self.prev = None

    def tick(self, now: float) -> None:
        """A step ended at ``now`` (``time.monotonic()``)."""
        if self.skip > 0:
            self.skip -= 1
            self.prev = now if self.skip == 0 else None
            return
        if self.prev is None:
            self.prev = now
            return
        dt, self.prev = now - self.prev, now
        self.recent.append((now, dt))
        self.recent_sum += dt
        self.timed_steps += 1
        self.timed_s += dt
        while len(self.recent) > 2 and self.recent[0][0] < now - self.window_s:
            self.recent_sum -= self.recent.popleft()[1]

    @property
    def per_step(self) -> float | None:
        """Seconds per step over the recent window; None before a step was timed."""
        return self.recent_sum / len(self.recent) if self.recent else None


class Progress(Callback):
    """A tqdm bar on a terminal; elsewhere (a log file, CI) a plain line every ``every_s``
    seconds and at each epoch's end, instead of thousands of bar redraws.

    It estimates the training time left from the speed of recent steps (``StepClock``: warm-up
    steps and epoch ends left out): once after ``first_estimate_s`` seconds of timed steps (or
    1/20 of the run's steps, for short runs), then again whenever the estimate moved by more than
    ``revise_by`` (a fraction) from what the last printed estimate implies now, at most once a
    minute; the bar and the log lines show the time left."""

    def __init__(
        self,
        enabled: bool = True,
        every_s: float = 120.0,
        stream=None,
        warmup_steps: int = 5,
        first_estimate_s: float = 5.0,
        revise_by: float = 0.25,
        min_revision_s: float = 30.0,
    ):
        self.enabled, self.every_s = enabled, every_s
        self.stream = stream or sys.stderr
        self.bar = None
        self.warmup_steps, self.first_estimate_s = warmup_steps, first_estimate_s
        self.revise_by, self.min_revision_s = revise_by, min_revision_s
        self.clock: StepClock | None = None
        self.announced: tuple[float, float] | None = None  # (when, seconds left then) of the last printed estimate

    @property
    def tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def _start_epoch(self, trainer) -> None:
        self.t_epoch, self.steps_in_life, self.last_line = time.monotonic(), 0, time.monotonic()
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        if self.clock is not None:
            self.clock.pause()
        if self.enabled and trainer.dist.main and self.tty:
            from tqdm import tqdm

            tc = trainer.run.train
            self.bar = tqdm(
                total=trainer.steps_per_epoch,
                initial=trainer.epoch_step,
                desc=f"epoch {trainer.epoch + 1}/{tc.epochs}",
                leave=False,
                dynamic_ncols=True,
                mininterval=0.5,
                file=self.stream,
            )

    def on_train_start(self, trainer) -> None:
        left = trainer.steps_per_epoch * trainer.run.train.epochs - trainer.step
        # a short run still gets an estimate: its warm-up is at most a quarter of it
        self.clock = StepClock(warmup=min(self.warmup_steps, max(1, left // 4)))
        self._start_epoch(trainer)

    def _say(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=self.stream)
        else:
            print(msg, file=self.stream, flush=True)

    def seconds_left(self, trainer) -> float | None:
        """Training time left at the recent speed (None before the first timed steps)."""
        per_step = self.clock.per_step if self.clock is not None else None
        if per_step is None:
            return None
        return (trainer.steps_per_epoch * trainer.run.train.epochs - trainer.step) * per_step

    def _estimate(self, trainer, now: float) -> None:
        """Print the first estimate once enough steps were timed, and a revised one when it moved."""
        clock, left = self.clock, self.seconds_left(trainer)
        if left is None:
            return
        total_steps = trainer.steps_per_epoch * trainer.run.train.epochs
        per_step = f"{1e3 * clock.per_step:.0f} ms per step"
        if self.announced is None:
            if clock.timed_s >= self.first_estimate_s or clock.timed_steps >= max(1, total_steps // 20):
                self.announced = (now, left)
                self._say(f"estimated training time: {_minutes(left)} more ({per_step}, warm-up steps not counted)")
            return
        when, said = self.announced
        implied = max(0.0, said - (now - when))  # what the last estimate says is left now
        if now - when >= 60 and abs(left - implied) > self.revise_by * max(implied, 1e-9) and abs(left - implied) >= self.min_revision_s:
            self.announced = (now, left)
            self._say(
                f"revised training time estimate: {_minutes(left)} more (the last estimate implied "
                f"{_minutes(implied)}; now {per_step} over the last minute)"
            )

    def on_step_end(self, trainer, terms) -> None:
        if not self.enabled:
            return
        if self.clock is None:
            self.on_train_start(trainer)
        now = time.monotonic()
        self.clock.tick(now)
        self.steps_in_life += 1
        if trainer.dist.main:
            self._estimate(trainer, now)
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
        s = trainer.epoch_step
        if s % 20 == 0 or s == trainer.steps_per_epoch:
            shown = global_mean({k: v / self.count for k, v in self.sums.items()})  # collective: every process
            per_step = self.clock.per_step
            if per_step is None:  # still warming up: the epoch's mean so far
                per_step = max(now - self.t_epoch, 1e-9) / self.steps_in_life
            views_per_s = trainer.views_per_step / per_step
            run_left = (trainer.steps_per_epoch * trainer.run.train.epochs - trainer.step) * per_step
            if self.bar is not None:
                self.bar.set_postfix(
                    {**{k: f"{float(v):.4g}" for k, v in shown.items()}, "views/s": f"{views_per_s:.0f}", "left": _minutes(run_left)},
                    refresh=False,
                )
            elif trainer.dist.main and now - self.last_line >= self.every_s:
                self.last_line = now
                eta = (trainer.steps_per_epoch - s) * per_step
                print(
                    f"epoch {trainer.epoch + 1}/{trainer.run.train.epochs}: step {s}/{trainer.steps_per_epoch} "
                    f"{_format_terms(shown)} | {views_per_s:.0f} views/s "
                    f"| epoch ends in {_minutes(eta)}, training in {_minutes(run_left)}",
                    file=self.stream,
                    flush=True,
                )

    def on_epoch_end(self, trainer, record) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.enabled and trainer.dist.main:
            terms = {k: v for k, v in record.items() if k in trainer.term_names}
            left = self.seconds_left(trainer)
            print(
                f"epoch {record['epoch']}/{trainer.run.train.epochs}: {_format_terms(terms)} | "
                f"{record['views_per_s']:.0f} views/s | {record['epoch_seconds']:.1f}s"
                + (f" | training ends in {_minutes(left)}" if left and trainer.epoch < trainer.run.train.epochs else ""),
                file=self.stream,
                flush=True,
            )
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
                rec = {
                    "step": trainer.step,
                    "epoch": round(trainer.step / trainer.steps_per_epoch, 4),
                    **{k: float(v) for k, v in means.items()},
                }
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
                        f"{where}; try a lower --lr" + (" or --precision fp32" if trainer.precision == "bf16" else "")
                    )


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


class ThreadTuner(Callback):
    """Revise the intra-op thread count while training, as other processes come and go.

    Every ``every_s`` seconds it measures the cores that other processes kept busy
    (``simvae.hardware.CpuLoad``) and sets one thread per core they left free
    (``simvae.hardware.threads_for``): fewer at once when they take more (two threads that share
    their cores with another busy process ran several times slower than one), more only when two
    measurements in a row agree. The first measurement covers the start-up (data loading), so a
    training that starts beside another one begins with the right count. A count that was asked
    for (``--threads``, ``OMP_NUM_THREADS``) is left alone. Changes are printed on the main
    process and kept in the choice (``choice.changes``: [step, threads]; ``choice.reason``)."""

    def __init__(self, choice, every_s: float = 5.0, stream=None):
        self.choice, self.every_s = choice, every_s
        self.stream = stream or sys.stderr
        self.last = time.monotonic()
        self.wants_more = 0

    @property
    def changes(self) -> list[list[int]]:
        return self.choice.changes if self.choice is not None else []

    @property
    def active(self) -> bool:
        return self.choice is not None and self.choice.adaptive and self.choice.load is not None

    def on_train_start(self, trainer) -> None:
        if self.active:
            if self.choice.load.seconds() < 0.5:  # too short a start-up to tell: measure a moment
                time.sleep(0.25)
            self.check(trainer)

    def on_step_end(self, trainer, terms) -> None:
        if self.active and time.monotonic() - self.last >= self.every_s:
            self.check(trainer)

    def check(self, trainer) -> None:
        from ..hardware import threads_for, wait_policy_in_effect

        self.last = time.monotonic()
        choice = self.choice
        others = choice.load.others()
        if others is None:
            return
        target = threads_for(choice.cores, others)
        if target > choice.threads:
            self.wants_more += 1
            if self.wants_more < 2:
                return
        self.wants_more = 0
        if target == choice.threads:
            return
        before = choice.threads
        choice.set(
            target,
            f"{choice.cores} usable cores, {others:.1f} busy with other processes at step {trainer.step}; "
            f"{wait_policy_in_effect()}; revised while training",
        )
        choice.changes.append([trainer.step, target])
        if trainer.dist.main:
            from tqdm import tqdm

            # tqdm.write: above a progress bar on a terminal (not through it); a plain line elsewhere
            tqdm.write(
                f"simvae: threads {before} -> {target} at step {trainer.step}: other processes kept {others:.1f} of "
                f"{choice.cores} cores busy",
                file=self.stream,
            )
            self.stream.flush()


# -- experiment logs (--logger) ---------------------------------------------------------------

LOGS_DIR = "logs"  # RUN_DIR/logs/: steps.csv and epochs.csv, tensorboard/, wandb/
LOGGERS = ("csv", "tensorboard", "wandb")
LOGGER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}  # logger -> the package it needs


def missing_logger_package(names) -> str | None:
    """The one-line complaint for the first logger in ``names`` whose package is not installed
    (None when all are): checked before training starts."""
    import importlib.util

    for name in names:
        package = LOGGER_PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            return (
                f"--logger {name} needs the '{package}' package, which is not installed here: "
                f"pip install 'simvae[{name}]' (or leave {name} out of --logger)"
            )
    return None


class CsvWriter:
    """``RUN_DIR/logs/steps.csv`` and ``epochs.csv``: one row per logging interval / epoch, a
    column per value (the header grows when a value first appears)."""

    def __init__(self, folder: Path, resume_step: int):
        self.folder = folder
        self.files = {"steps": folder / "steps.csv", "epochs": folder / "epochs.csv"}
        self.columns: dict[str, list[str]] = {}
        for kind, path in self.files.items():
            self.columns[kind] = self._truncate(path, resume_step)

    @staticmethod
    def _truncate(path: Path, resume_step: int) -> list[str]:
        """Keep the rows up to ``resume_step`` (a resumed run logs again what came after its
        checkpoint; a fresh one starts empty). Returns the header kept."""
        import csv

        if resume_step <= 0 or not path.is_file():
            path.unlink(missing_ok=True)
            return []
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            rows = [r for r in reader if r.get("step") and float(r["step"]) <= resume_step]
        CsvWriter._write_all(path, columns, rows)
        return columns

    @staticmethod
    def _write_all(path: Path, columns: list[str], rows: list[dict]) -> None:
        import csv

        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns)
            w.writeheader()
            w.writerows(rows)

    def write(self, kind: str, step: int, values: dict[str, float]) -> None:
        import csv

        path, row = self.files[kind], {"step": step, **values}
        columns = self.columns[kind]
        new = [k for k in row if k not in columns]
        if new:  # a new column: rewrite the file with the wider header (rare: the first rows)
            old_rows = []
            if path.is_file():
                with open(path, newline="") as fh:
                    old_rows = list(csv.DictReader(fh))
            columns += new
            self._write_all(path, columns, old_rows)
        with open(path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=columns).writerow(row)

    def close(self) -> None: ...


class TensorBoardWriter:
    """``RUN_DIR/logs/tensorboard/``: scalars for TensorBoard (``torch.utils.tensorboard``); a
    resumed run purges the events after its checkpoint's step."""

    def __init__(self, folder: Path, resume_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder / "tensorboard"), purge_step=resume_step if resume_step > 0 else None)

    def write(self, kind: str, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        if kind == "epochs":
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbWriter:
    """Weights & Biases in offline mode, into ``RUN_DIR/logs/wandb/`` (``wandb sync`` uploads it);
    a resumed run continues the same wandb run (its id is kept in ``logs/wandb_id``)."""

    def __init__(self, folder: Path, resume_step: int, name: str, config: dict):
        import wandb

        id_file = folder / "wandb_id"
        run_id = id_file.read_text().strip() if resume_step > 0 and id_file.is_file() else wandb.util.generate_id()
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(project="simvae", name=name, id=run_id, resume="allow", dir=str(folder), mode="offline", config=config)

    def write(self, kind: str, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


def knn_accuracy(ref_x: torch.Tensor, ref_y: torch.Tensor, query_x: torch.Tensor, query_y: torch.Tensor, k: int, n_classes: int) -> float:
    """Accuracy of the majority vote of the ``k`` nearest reference points (Euclidean distance,
    ties to the smallest label): ref_x [n, d], ref_y int64 [n], query_x [m, d], query_y [m].

    A small copy of ``simvae.evaluate.knn`` (the training layer does not import evaluation):
    distances in float64 after centring on the reference mean, for a per-epoch validation
    figure, not the reported evaluation."""
    mean = ref_x.double().mean(0)
    ref, query = ref_x.double() - mean, query_x.double() - mean
    d = torch.addmm(ref.pow(2).sum(1)[None, :], query, ref.T, alpha=-2)
    nearest = ref_y[d.topk(min(k, ref.shape[0]), dim=1, largest=False).indices]
    votes = torch.nn.functional.one_hot(nearest, n_classes).sum(1)
    return float((votes.argmax(1) == query_y).float().mean())


class ValidationKnn:
    """A fixed, seeded split of the training images: ``queries`` images classified by their
    ``k`` nearest among ``references`` others, in the posterior means (``method.encode``) of the
    un-augmented images. Cheap (7,000 encodings and one distance matrix an epoch) and the same
    images every epoch, so the figures of a run's epochs compare. Not the evaluation's k-NN
    (which chooses k on validation and classifies the test set)."""

    def __init__(self, data, queries: int = 2000, references: int = 5000, k: int = 10, seed: int = 0):
        n = len(data.train_images)
        labels = data.train_labels
        keep = torch.nonzero(labels >= 0).flatten()
        order = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(seed))]
        n_query = min(queries, len(order) // 3)
        self.query = order[:n_query]
        self.reference = order[n_query : n_query + references]
        self.k, self.n_classes = k, len(data.classes)
        self.usable = bool(getattr(data, "has_labels", True)) and n_query >= 1 and len(self.reference) >= 1 and n > 0
        self.images, self.labels = data.train_images, labels

    def _encode(self, trainer, idx: torch.Tensor) -> torch.Tensor:
        from ..augment import to_float

        out = []
        with torch.no_grad():
            for s in range(0, len(idx), 1000):
                x = self.images[idx[s : s + 1000]].to(trainer.device)
                out.append(trainer.method.encode(to_float(x) if x.dtype == torch.uint8 else x.float()).float().cpu())
        return torch.cat(out)

    def __call__(self, trainer) -> float | None:
        if not self.usable:
            return None
        ref_x, query_x = self._encode(trainer, self.reference), self._encode(trainer, self.query)
        return knn_accuracy(ref_x, self.labels[self.reference], query_x, self.labels[self.query], self.k, self.n_classes)


class ExperimentLogs(Callback):
    """The experiment logs asked for with ``--logger`` (csv, tensorboard, wandb), written by the
    main process under ``RUN_DIR/logs/``:

    - every ``every`` steps (default: 1/200 of an epoch, at least every step): the loss terms
      averaged over those steps (``train/<term>``), the learning rate (``train/lr``), the speed
      over those steps (``train/views_per_s``) and the intra-op threads (``train/threads``);
    - every epoch: the epoch's record (``epoch/<term>``, ``epoch/views_per_s``, ...) and a
      validation k-NN accuracy (``val/knn_acc``, see ``ValidationKnn``).

    Raises ConfigError when a logger's package is not installed (``missing_logger_package``)."""

    def __init__(self, out: Path, names, every: int | None = None, validation: bool = True):
        from ..errors import ConfigError

        self.out, self.every, self.validation = Path(out), every, validation
        self.names = list(dict.fromkeys(names))
        unknown = [n for n in self.names if n not in LOGGERS]
        if unknown:
            raise ConfigError(f"unknown logger '{unknown[0]}'; choose from {', '.join(LOGGERS)}")
        problem = missing_logger_package(self.names)
        if problem:
            raise ConfigError(problem)
        self.writers: list = []
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.knn: ValidationKnn | None = None

    def on_train_start(self, trainer) -> None:
        if self.every is None:
            self.every = max(1, trainer.steps_per_epoch // 200)
        self.t_last = time.monotonic()
        self.sums, self.count = {}, 0
        if not trainer.dist.main:
            return
        folder = self.out / LOGS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            if name == "csv":
                self.writers.append(CsvWriter(folder, trainer.step))
            elif name == "tensorboard":
                self.writers.append(TensorBoardWriter(folder, trainer.step))
            elif name == "wandb":
                self.writers.append(WandbWriter(folder, trainer.step, self.out.name, trainer.run.to_dict()))
        if self.validation:
            self.knn = ValidationKnn(trainer.data, seed=trainer.run.train.seed)

    def _write(self, kind: str, step: int, values: dict[str, float]) -> None:
        for w in self.writers:
            w.write(kind, step, values)

    def on_step_end(self, trainer, terms) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        if trainer.step % self.every and trainer.epoch_step != trainer.steps_per_epoch:
            return
        means = global_mean({k: v / self.count for k, v in self.sums.items()})  # collective: every process
        now = time.monotonic()
        if trainer.dist.main and self.writers:
            values = {f"train/{k}": float(v) for k, v in means.items()}
            values["train/lr"] = float(trainer.optimizer.param_groups[0]["lr"])
            values["train/views_per_s"] = self.count * trainer.views_per_step / max(now - self.t_last, 1e-9)
            values["train/threads"] = float(torch.get_num_threads())
            values["train/epoch"] = trainer.step / trainer.steps_per_epoch
            self._write("steps", trainer.step, values)
        self.sums, self.count, self.t_last = {}, 0, now

    def on_epoch_end(self, trainer, record) -> None:
        if trainer.dist.main and self.writers:
            values = {
                f"epoch/{k}": float(v)
                for k, v in record.items()
                if k not in ("epoch", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)
            }
            values["epoch/epoch"] = float(record["epoch"])
            if self.knn is not None:
                acc = self.knn(trainer)
                if acc is not None:
                    values["val/knn_acc"] = acc
            self._write("epochs", trainer.step, values)
        self.t_last = time.monotonic()  # the validation is not training speed

    def on_train_end(self, trainer) -> None:
        for w in self.writers:
            w.close()
        self.writers = []


def experiment_logs(out: Path, names) -> list[Callback]:
    """The ``--logger`` callbacks of a run (none when ``names`` is empty)."""
    return [ExperimentLogs(out, names)] if names else []
