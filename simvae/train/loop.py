"""The one training loop, for every method, on one process or many (DDP via torchrun).

indices shuffled -> a group source makes the step's groups of J samples on the device ->
method(batch)["loss"] -> Adam. A method contributes only its networks and its loss; the
progress display, logs, checkpoints, divergence guard and interrupt handling are callbacks
(``callbacks.py``). A step holds ``views_per_step`` samples (the paper's 128) or
``batch_size`` images, global across processes.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..allocator import retain_freed_memory
from ..checkpoint import (
    CHECKPOINT_NAME,
    FORMAT_VERSION,
    atomic_torch_save,
    is_finished,
    load_checkpoint,
    load_model_state,
    rng_state,
    set_rng_state,
)
from ..data import ImageData
from ..dist import global_mean, init_distributed
from ..errors import ConfigError, DivergenceError
from ..hardware import autocast, resolve_device, resolve_precision
from ..methods import Method, build_method
from ..nets import use_fast_layout
from ..run_config import RunConfig, load_data, model_spec, resolve_data_shape, step_size
from ..rundir import SUMMARY as SUMMARY_NAME  # noqa: E402
from ..rundir import atomic_write_json
from .callbacks import Callback, Checkpoints, DivergenceGuard, MetricsLog, Progress, StopOnSignal
from .groups import GroupSource, group_source_for


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """A run's training state (so a fresh start and a resume share one code path) and its step.

    Raises ConfigError before any training when the step size does not fit the data or the
    number of processes, and CheckpointError when a resumed checkpoint is unusable.
    """

    def __init__(
        self,
        run: RunConfig,
        out: Path,
        data: ImageData | None = None,
        progress: bool = True,
        resume: bool = False,
        source: GroupSource | None = None,
    ):
        self.run, self.out, self.progress = run, Path(out), progress
        tc = run.train
        self.dist = init_distributed(tc.device)
        if self.dist.world > 1 and torch.cuda.is_available() and tc.device != "cpu":
            self.device = torch.device(f"cuda:{self.dist.local_rank}")
            torch.cuda.set_device(self.device)
        else:
            self.device = resolve_device(tc.device)
        if self.device.type == "cpu":
            retain_freed_memory()  # big activations reused step to step instead of page-faulted in
        from ..hardware import configure_threads  # intra-op threads: one per core left free (ThreadTuner revises)

        self.thread_choice = configure_threads(tc.threads)
        self.images_per_step, self.views_per_step = step_size(run)
        if data is None:
            data = load_data(tc)
        self.data = data = data.subset_train(tc.train_subset)
        self.run = run = resolve_data_shape(run, data)  # image folders: the size and channels decoded, recorded
        self._check_step_size(len(data.train_images))
        self.precision = resolve_precision(tc.precision, self.device)
        seed_everything(tc.seed)
        self.method: Method = build_method(tc.method, model_spec(run, data.image_shape), run.method.model_dump()).to(self.device)
        use_fast_layout(self.method, self.method.spec.network, self.device)  # channels_last where it wins
        # fused Adam: one kernel for all parameters (Adam's step went 14 -> 2 ms per step on CPU)
        self.optimizer = torch.optim.Adam(self.method.trainable_parameters(), lr=tc.lr, fused=self.device.type in ("cpu", "cuda"))
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(tc.seed)
        self.epoch, self.step, self.epoch_step = 0, 0, 0
        self.epoch_perm: torch.Tensor | None = None
        self.epoch_sums: dict[str, torch.Tensor] = {}  # running sums of this process's loss terms this epoch
        self.epoch_steps_done = 0
        self.train_seconds = 0.0
        self.resumed_from: dict | None = None
        if resume:
            self._restore(load_checkpoint(self.out / CHECKPOINT_NAME, map_location=self.device))
        self.model: torch.nn.Module = self.method
        if self.dist.world > 1:
            self.model = DistributedDataParallel(self.method)
        if tc.compile:
            self.model = torch.compile(self.model)
        self.source = source or group_source_for(run, data, self.method, self.device, self.dist, self.images_per_step)
        self.steps_per_epoch = len(self.source) // self.images_per_step  # the last partial batch is dropped
        self.term_names: set[str] = set()

    def _check_step_size(self, n_train: int) -> None:
        tc, ips, world = self.run.train, self.images_per_step, self.dist.world
        what = (
            f"batch_size {ips}"
            if tc.batch_size is not None
            else f"{ips} images per step ({tc.views_per_step} views per step // {self.views_per_step // ips} per image)"
        )
        if ips % world:
            raise ConfigError(
                f"{what} must be divisible by the number of processes ({world}); choose --views-per-step or --batch-size to fit"
            )
        if ips > n_train:
            raise ConfigError(
                f"{what} is larger than the training set ({n_train} images); lower --views-per-step / --batch-size or raise --train-subset"
            )
        from ..methods import METHODS

        need = METHODS[tc.method].min_batch_size
        if ips // world < need:
            raise ConfigError(
                f"method '{tc.method}' needs at least {need} images per process in a batch; "
                f"got {what} over {world} process" + ("es" if world > 1 else "")
            )

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "method": self.run.train.method,
            "config": self.run.to_dict(),
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(self.generator),
            "epoch": self.epoch,
            "step": self.step,
            "epoch_step": self.epoch_step,
            "epoch_perm": self.epoch_perm,
            "train_seconds": self.train_seconds,
            "epoch_sums": dict(self.epoch_sums),
            "epoch_steps_done": self.epoch_steps_done,
        }

    def save_checkpoint(self) -> None:
        """Write the checkpoint (main process) and the summary; refuses to overwrite the last good
        checkpoint with non-finite parameters (DivergenceError)."""
        bad = [name for name, p in self.method.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:  # a finite loss with a non-finite gradient: never overwrite the last good checkpoint
            kept = self.out / CHECKPOINT_NAME
            raise DivergenceError(
                f"training diverged by step {self.step} (epoch {self.epoch + 1}): parameters "
                f"{', '.join(bad[:3])} became non-finite; "
                + (f"the last good checkpoint is kept in {kept}" if kept.exists() else "no checkpoint had been written yet")
                + "; try a lower --lr"
            )
        if self.dist.main:
            atomic_torch_save(self.state(), self.out / CHECKPOINT_NAME)
            self.write_summary()

    def _restore(self, ckpt: dict) -> None:
        load_model_state(self.method, ckpt["model"], self.run.train.method, ckpt.get("method"), self.out / CHECKPOINT_NAME)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        _match_state_layout(self.optimizer)
        set_rng_state(ckpt["rng"], self.generator)
        self.epoch, self.step, self.epoch_step = ckpt["epoch"], ckpt["step"], ckpt["epoch_step"]
        self.epoch_perm = ckpt["epoch_perm"]
        self.train_seconds = float(ckpt.get("train_seconds", 0.0))
        self.epoch_sums = dict(ckpt.get("epoch_sums", {}))
        self.epoch_steps_done = int(ckpt.get("epoch_steps_done", 0))
        self.resumed_from = {"epoch": self.epoch, "epoch_step": self.epoch_step, "step": self.step}

    # -- one step ----------------------------------------------------------------------------
    def train_step(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimiser step on the global batch of images ``idx`` [images_per_step]; returns this
        process's loss terms (detached, float32)."""
        terms = self.forward(self.make_batch(idx))
        self.backward(terms)
        self.update()
        return {k: v.detach().float() for k, v in terms.items()}

    # the step's phases, also timed one by one by benchmarks/throughput.py
    def make_batch(self, idx: torch.Tensor):
        """This process's groups of the global batch ``idx`` (views, noise) from the group source."""
        return self.source.batch(idx, self.method.n_views, self.generator)

    def forward(self, batch) -> dict[str, torch.Tensor]:
        with autocast(self.precision, self.device):
            return self.model(batch)

    def backward(self, terms: dict[str, torch.Tensor]) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()

    def lr_at(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based) of the run: ``lr`` x a linear warm-up
        over the first ``warmup_fraction`` of the steps, then constant (the paper's) or cosine decay
        to 0 at the last step. A function of the step alone, so a resumed run follows it exactly."""
        import math

        tc = self.run.train
        total = max(1, self.steps_per_epoch * tc.epochs)
        warm = int(round(tc.warmup_fraction * total))
        if step < warm:
            return tc.lr * (step + 1) / warm
        if tc.schedule == "cosine":
            return tc.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
        return tc.lr

    def update(self) -> None:
        if self.run.train.schedule != "constant" or self.run.train.warmup_fraction:
            lr = self.lr_at(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.optimizer.step()
        self.method.after_step()

    # -- the loop ----------------------------------------------------------------------------
    def default_callbacks(self) -> list[Callback]:
        tc = self.run.train
        # a check reads the loss on the host: free on the CPU, a pipeline stall on a GPU
        every = tc.divergence_check_every or (1 if self.device.type == "cpu" else 25)
        guard = DivergenceGuard(every)
        checkpoints = Checkpoints(guard)
        from .callbacks import ThreadTuner, experiment_logs

        return [
            Progress(self.progress),
            MetricsLog(self.out),
            guard,
            checkpoints,
            StopOnSignal(checkpoints, every),
            ThreadTuner(self.thread_choice),
            *experiment_logs(self.out, tc.logger),
        ]

    def fit(self, on_epoch_end=None, callbacks: list[Callback] | None = None) -> dict:
        """Train to ``epochs`` and return the summary. ``on_epoch_end(trainer, record)`` may return
        extra values for the epoch's record (e.g. a validation k-NN accuracy); its time is not
        counted as training time. Raises DivergenceError, and TrainingInterrupted (a
        KeyboardInterrupt) on SIGINT/SIGTERM after writing a checkpoint."""
        tc = self.run.train
        callbacks = self.default_callbacks() if callbacks is None else callbacks
        ips = self.images_per_step
        start_time = time.monotonic() - self.train_seconds
        for cb in callbacks:
            cb.on_train_start(self)
        try:
            while self.epoch < tc.epochs:
                if self.epoch_perm is None:
                    self.epoch_perm = torch.randperm(len(self.source), generator=self.generator, device=self.device)
                    self.epoch_step = 0
                    self.epoch_sums, self.epoch_steps_done = {}, 0
                t_epoch, steps_done = time.monotonic(), 0
                for s in range(self.epoch_step, self.steps_per_epoch):
                    terms = self.train_step(self.epoch_perm[s * ips : (s + 1) * ips])
                    self.term_names.update(terms)
                    self.step += 1
                    self.epoch_step = s + 1
                    steps_done += 1
                    self.epoch_steps_done += 1
                    for k, v in terms.items():
                        self.epoch_sums[k] = self.epoch_sums.get(k, 0.0) + v
                    self.train_seconds = time.monotonic() - start_time
                    for cb in callbacks:
                        cb.on_step_end(self, terms)
                epoch_seconds = time.monotonic() - t_epoch
                self.epoch += 1
                self.epoch_perm, self.epoch_step = None, 0
                self.train_seconds = time.monotonic() - start_time
                # each process's terms are means over its equal share of the global batch, so the
                # global batch's figure is their mean over processes
                means = global_mean({k: v / max(self.epoch_steps_done, 1) for k, v in self.epoch_sums.items()})
                record = {
                    "epoch": self.epoch,
                    "step": self.step,
                    **{k: float(v) for k, v in means.items()},
                    "epoch_seconds": round(epoch_seconds, 3),
                    "images_per_s": round(steps_done * ips / max(epoch_seconds, 1e-9), 1),
                    "views_per_s": round(steps_done * self.views_per_step / max(epoch_seconds, 1e-9), 1),
                    "wall_seconds": round(self.train_seconds, 3),
                }
                if on_epoch_end is not None:
                    t_cb = time.monotonic()
                    record.update(on_epoch_end(self, record) or {})
                    start_time += time.monotonic() - t_cb  # evaluation time is not training time
                for cb in callbacks:
                    cb.on_epoch_end(self, record)
        finally:
            for cb in callbacks:
                cb.on_train_end(self)
        return self.write_summary() if self.dist.main else self.summary()

    def summary(self) -> dict:
        """Where the run stands (epoch, step, finished or not) and what it cost."""
        tc = self.run.train
        from ..hardware import provenance

        return {
            "method": tc.method,
            "dataset": tc.dataset,
            "epochs": self.epoch,
            "epochs_planned": tc.epochs,
            "epoch_step": self.epoch_step,
            "steps": self.step,
            "finished": is_finished(self.epoch, self.epoch_step, tc.epochs),
            "train_images": len(self.data.train_images),
            "n_views": self.method.n_views,
            "images_per_step": self.images_per_step,
            "views_per_step": self.views_per_step,
            "train_seconds": round(self.train_seconds, 3),
            "train_images_per_s": round(self.step * self.images_per_step / max(self.train_seconds, 1e-9), 1),
            "train_views_per_s": round(self.step * self.views_per_step / max(self.train_seconds, 1e-9), 1),
            "device": str(self.device),
            "processes": self.dist.world,
            "precision": self.precision,
            "threads": torch.get_num_threads(),
            "threads_reason": self.thread_choice.reason,
            "threads_changes": self.thread_choice.changes,
            "torch": torch.__version__,
            "data_source": self.data.source,
            **provenance(),
        }

    def write_summary(self) -> dict:
        summary = self.summary()
        atomic_write_json(self.out / SUMMARY_NAME, summary)
        return summary


def _match_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each optimiser state tensor its parameter's memory layout, in place.

    ``Optimizer.load_state_dict`` keeps the strides the state was saved with; fused Adam works on
    raw storage, so a checkpoint saved with contiguous weights and resumed with channels_last ones
    (or the reverse, when the layout rule changes between versions) would pair the wrong elements."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, t in optimizer.state.get(p, {}).items():
                if torch.is_tensor(t) and t.shape == p.shape and t.stride() != p.stride():
                    optimizer.state[p][key] = torch.empty_like(p, dtype=t.dtype).copy_(t)
