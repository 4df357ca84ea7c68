"""The one training loop, for every method, on one process or many (DDP via torchrun).

data (uint8 on the device) -> indices shuffled -> J views per image, batched on the
device -> method(batch)["loss"] -> Adam. A method contributes only its networks and
its loss. The run folder receives the resolved config, a per-epoch metrics log
(``metrics.jsonl``), the last checkpoint, and a training summary.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .allocator import retain_freed_memory
from .augment import apply_views, sample_view_params, to_float
from .checkpoint import CHECKPOINT_NAME, FORMAT_VERSION, atomic_torch_save, load_checkpoint, load_model_state, rng_state, set_rng_state
from .data import DATASETS, ImageData, load_dataset
from .errors import ConfigError, DivergenceError, RunDirError
from .methods import Batch, Method, ModelSpec, build_method
from .run_config import RunConfig, build_run_config

RUN_FILES = ("config.json", "metrics.jsonl", CHECKPOINT_NAME, "train_summary.json", "metrics.json", "report.md",
             "reconstructions.png", "latent_map.png", "loss_curve.png", "decoder.pt")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for but CUDA is not available here; use --device cpu")
    return torch.device(name)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group torchrun set up (env://); a single process needs none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_name != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def model_spec(run: RunConfig, data_shape) -> ModelSpec:
    ds = DATASETS[run.train.dataset]
    return ModelSpec(tuple(data_shape), run.train.latent_dim or ds.default_latent_dim, ds.network)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_run_dir(out: Path, run: RunConfig, resume: bool, overwrite: bool) -> None:
    """Refuse unusable folders before any work: not writable, or holding another run."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} exists and is not a folder")
    cfg_path = out / "config.json"
    if resume:
        if not cfg_path.is_file():
            raise RunDirError(f"cannot resume: {out} holds no run (no config.json)")
        if not (out / CHECKPOINT_NAME).is_file():
            raise RunDirError(f"cannot resume: {out} has no checkpoint yet; start it again with --overwrite")
        return
    if cfg_path.exists() and not overwrite:
        try:
            same = json.loads(cfg_path.read_text()) == run.to_dict()
        except (OSError, json.JSONDecodeError):
            same = False
        what = "this run already" if same else "a different run"
        raise RunDirError(f"{out} holds {what}; pass --resume {out} to continue it, --overwrite to replace it, "
                          "or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"run folder {out} is not writable: {e.strerror or e}") from None
    if overwrite:
        for name in RUN_FILES:
            p = out / name
            if p.is_file():
                p.unlink()


class Trainer:
    """Holds a run's state so that a fresh start and a resume share one code path."""

    def __init__(self, run: RunConfig, out: Path, data: ImageData | None = None, progress: bool = True,
                 resume: bool = False):
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
        if tc.batch_size % self.dist.world:
            raise ConfigError(f"batch_size {tc.batch_size} must be divisible by the number of processes ({self.dist.world})")
        if data is None:
            data = load_dataset(tc.dataset, tc.data_dir, tc.binarize, download=tc.download)
        data = data.subset_train(tc.train_subset)
        if tc.batch_size > len(data.train_images):
            raise ConfigError(f"batch_size {tc.batch_size} is larger than the training set ({len(data.train_images)} images); "
                              "lower --batch-size or raise --train-subset")
        self.data = data
        from .methods import METHODS

        need = METHODS[tc.method].min_batch_size
        if tc.batch_size // self.dist.world < need:
            raise ConfigError(f"method '{tc.method}' needs at least {need} images per process in a batch; "
                              f"got batch_size {tc.batch_size} over {self.dist.world} process(es)")
        self.aug_spec = DATASETS[tc.dataset].augment
        seed_everything(tc.seed)
        self.method: Method = build_method(tc.method, model_spec(run, data.image_shape), _asdict(run.method)).to(self.device)
        if self.device.type == "cuda":
            self.method.to(memory_format=torch.channels_last)  # conv weights in the tensor-core layout
        # fused Adam: one kernel for all parameters (Adam's step went 14 -> 2 ms per step on CPU)
        self.optimizer = torch.optim.Adam(self.method.trainable_parameters(), lr=tc.lr,
                                          fused=self.device.type in ("cpu", "cuda"))
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(tc.seed)
        self.epoch, self.step, self.epoch_step = 0, 0, 0
        self.epoch_perm: torch.Tensor | None = None
        self.epoch_sums: dict[str, torch.Tensor] = {}  # running sums of the loss terms of this epoch
        self.epoch_steps_done = 0
        self.train_seconds = 0.0
        if resume:
            self._restore(load_checkpoint(self.out / CHECKPOINT_NAME, map_location=self.device))
        self.model: torch.nn.Module = self.method
        if self.dist.world > 1:
            self.model = DistributedDataParallel(self.method)
        if tc.compile:
            self.model = torch.compile(self.model)
        self.images = data.train_images.to(self.device)  # uint8, whole set, once
        self.last_ckpt_time = time.monotonic()

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "format": FORMAT_VERSION, "method": self.run.train.method, "config": self.run.to_dict(),
            "model": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(self.generator), "epoch": self.epoch, "step": self.step,
            "epoch_step": self.epoch_step, "epoch_perm": self.epoch_perm, "train_seconds": self.train_seconds,
            "epoch_sums": dict(self.epoch_sums), "epoch_steps_done": self.epoch_steps_done,
        }

    def save_checkpoint(self) -> None:
        bad = [name for name, p in self.method.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:  # a finite loss with a non-finite gradient: never overwrite the last good checkpoint
            kept = self.out / CHECKPOINT_NAME
            raise DivergenceError(f"training diverged by step {self.step} (epoch {self.epoch + 1}): parameters "
                                  f"{', '.join(bad[:3])} became non-finite; "
                                  + (f"the last good checkpoint is kept in {kept}" if kept.exists() else "no checkpoint had been written yet")
                                  + "; try a lower --lr")
        if self.dist.main:
            atomic_torch_save(self.state(), self.out / CHECKPOINT_NAME)
        self.last_ckpt_time = time.monotonic()

    def _restore(self, ckpt: dict) -> None:
        load_model_state(self.method, ckpt["model"], self.run.train.method, ckpt.get("method"), self.out / CHECKPOINT_NAME)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"], self.generator)
        self.epoch, self.step, self.epoch_step = ckpt["epoch"], ckpt["step"], ckpt["epoch_step"]
        self.epoch_perm = ckpt["epoch_perm"]
        self.train_seconds = float(ckpt.get("train_seconds", 0.0))
        self.epoch_sums = dict(ckpt.get("epoch_sums", {}))
        self.epoch_steps_done = int(ckpt.get("epoch_steps_done", 0))

    # -- one step ----------------------------------------------------------------------------
    def make_batch(self, idx: torch.Tensor) -> Batch:
        """Views for the global batch ``idx``, sliced to this process (same draws as one process)."""
        n_global, r, w = idx.shape[0], self.dist.rank, self.dist.world
        j = self.method.n_views
        params = sample_view_params(n_global, j, self.data.image_shape[1:], self.aug_spec, self.generator, self.device)
        b = n_global // w
        images = to_float(self.images[idx[r * b:(r + 1) * b]])
        views = apply_views(images, params[r * b * j:(r + 1) * b * j])
        gen, device = self.generator, self.device

        def randn(per_image: int, dim: int) -> torch.Tensor:
            noise = torch.randn(n_global * per_image, dim, generator=gen, device=device)
            return noise[r * b * per_image:(r + 1) * b * per_image]

        return Batch(images, views, randn)

    def train_step(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = self.make_batch(idx)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.run.train.bf16 else nullcontext()
        with autocast:
            terms = self.model(batch)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optimizer.step()
        self.method.after_step()
        return {k: v.detach().float() for k, v in terms.items()}

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, on_epoch_end=None) -> dict:
        """Train to ``epochs``. ``on_epoch_end(trainer, record)`` may return extra values for the
        epoch's log record (e.g. a validation k-NN accuracy); its time is not counted as training."""
        tc = self.run.train
        n = len(self.data.train_images)
        steps_per_epoch = n // tc.batch_size  # drop the last partial batch: every group has the same size
        j = self.method.n_views
        # a check reads the loss on the host: free on the CPU, a pipeline stall on a GPU
        check_every = tc.divergence_check_every or (1 if self.device.type == "cpu" else 25)
        log_path = self.out / "metrics.jsonl"
        if self.dist.main:
            _truncate_log(log_path, self.epoch)  # a resumed run re-logs the epochs after its checkpoint
        start_time = time.monotonic() - self.train_seconds
        while self.epoch < tc.epochs:
            if self.epoch_perm is None:
                self.epoch_perm = torch.randperm(n, generator=self.generator, device=self.device)
                self.epoch_step = 0
                self.epoch_sums, self.epoch_steps_done = {}, 0
            sums = self.epoch_sums
            pending: list[tuple[int, dict]] = []
            t_epoch = time.monotonic()
            steps_done = 0  # in this process's life (for the rate)
            bar = _progress(range(self.epoch_step, steps_per_epoch), self.progress and self.dist.main,
                            f"epoch {self.epoch + 1}/{tc.epochs}", steps_per_epoch, self.epoch_step)
            for s in bar:
                idx = self.epoch_perm[s * tc.batch_size:(s + 1) * tc.batch_size]
                terms = self.train_step(idx)
                pending.append((self.step, terms))
                self.step += 1
                self.epoch_step = s + 1
                steps_done += 1
                self.epoch_steps_done += 1
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                if len(pending) >= check_every:
                    self._check_finite(pending)
                    pending.clear()
                if bar is not None and hasattr(bar, "set_postfix") and (s % 20 == 0 or s == steps_per_epoch - 1):
                    el = time.monotonic() - t_epoch
                    rate = steps_done * tc.batch_size / max(el, 1e-9)
                    bar.set_postfix({**{k: f"{float(v) / self.epoch_steps_done:.4g}" for k, v in sums.items()},
                                     "img/s": f"{rate:.0f}", "views/s": f"{rate * j:.0f}"}, refresh=False)
                if self._mid_epoch_checkpoint_due() and s + 1 < steps_per_epoch:
                    self._check_finite(pending)
                    pending.clear()
                    self.train_seconds = time.monotonic() - start_time
                    self.save_checkpoint()
            self._check_finite(pending)
            epoch_seconds = time.monotonic() - t_epoch
            self.epoch += 1
            self.epoch_perm, self.epoch_step = None, 0
            self.train_seconds = time.monotonic() - start_time
            record = {"epoch": self.epoch, "step": self.step,
                      **{k: float(v) / max(self.epoch_steps_done, 1) for k, v in sums.items()},
                      "epoch_seconds": round(epoch_seconds, 3),
                      "images_per_s": round(steps_done * tc.batch_size / max(epoch_seconds, 1e-9), 1),
                      "views_per_s": round(steps_done * tc.batch_size * j / max(epoch_seconds, 1e-9), 1),
                      "wall_seconds": round(self.train_seconds, 3)}
            if on_epoch_end is not None:
                t_cb = time.monotonic()
                record.update(on_epoch_end(self, record) or {})
                start_time += time.monotonic() - t_cb  # evaluation time is not training time
            if self.dist.main:
                with open(log_path, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                if self.progress:
                    print(_epoch_line(record), file=sys.stderr, flush=True)
            if self.epoch % tc.checkpoint_every == 0 or self.epoch == tc.epochs:
                self.save_checkpoint()
        summary = self.summary()
        if self.dist.main:
            (self.out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def _mid_epoch_checkpoint_due(self) -> bool:
        tc = self.run.train
        if tc.checkpoint_every_steps and self.step % tc.checkpoint_every_steps == 0:
            return True
        return bool(tc.checkpoint_minutes) and time.monotonic() - self.last_ckpt_time >= 60 * tc.checkpoint_minutes

    def _check_finite(self, pending: list[tuple[int, dict]]) -> None:
        """Stop on the first non-finite loss term, naming the step and the term."""
        if not pending:
            return
        stacked = torch.stack([torch.stack(list(t.values())) for _, t in pending])
        if bool(torch.isfinite(stacked).all()):
            return
        for step, terms in pending:
            for name, v in terms.items():
                if not math.isfinite(float(v)):
                    kept = (self.out / CHECKPOINT_NAME)
                    where = f"the last good checkpoint is kept in {kept}" if kept.exists() else "no checkpoint had been written yet"
                    raise DivergenceError(
                        f"training diverged at step {step + 1} (epoch {self.epoch + 1}): loss term '{name}' is {float(v)}; "
                        f"{where}; try a lower --lr or --bf16 off")

    def summary(self) -> dict:
        tc = self.run.train
        images_seen = self.step * tc.batch_size
        return {"method": tc.method, "dataset": tc.dataset, "epochs": self.epoch, "steps": self.step,
                "train_images": len(self.data.train_images), "n_views": self.method.n_views,
                "train_seconds": round(self.train_seconds, 3),
                "train_images_per_s": round(images_seen / max(self.train_seconds, 1e-9), 1),
                "train_views_per_s": round(images_seen * self.method.n_views / max(self.train_seconds, 1e-9), 1),
                "device": str(self.device), "processes": self.dist.world, "bf16": tc.bf16,
                "torch": torch.__version__, "data_source": self.data.source}


def _truncate_log(path: Path, epochs_kept: int) -> None:
    """Keep the log lines of epochs 1..epochs_kept (all of them for a fresh run: none)."""
    lines = path.read_text().splitlines() if path.is_file() and epochs_kept > 0 else []
    kept = [line for line in lines if line.strip() and json.loads(line).get("epoch", 0) <= epochs_kept]
    path.write_text("".join(line + "\n" for line in kept))


def _asdict(cfg) -> dict:
    import dataclasses

    return dataclasses.asdict(cfg)


def _epoch_line(r: dict) -> str:
    terms = " ".join(f"{k}={v:.4g}" for k, v in r.items()
                     if k not in ("epoch", "step", "epoch_seconds", "images_per_s", "views_per_s", "wall_seconds"))
    return f"epoch {r['epoch']}: {terms} | {r['views_per_s']:.0f} views/s | {r['epoch_seconds']:.1f}s"


def _progress(it, enabled: bool, desc: str, total: int, initial: int):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, total=total, initial=initial, leave=False, dynamic_ncols=True, mininterval=0.5)


def train(run: RunConfig, out: str | Path, resume: bool = False, overwrite: bool = False,
          data: ImageData | None = None, progress: bool = True, on_epoch_end=None) -> dict:
    """Train ``run`` into folder ``out`` (or continue it) and return the training summary."""
    out = Path(out)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if is_main:
        prepare_run_dir(out, run, resume, overwrite)
    trainer = Trainer(run, out, data=data, progress=progress, resume=resume)  # loads data, checks sizes
    if is_main and not resume:
        run.save(out / "config.json")
    if trainer.dist.world > 1:
        dist.barrier()
    return trainer.fit(on_epoch_end)


def load_run_config(out: str | Path) -> RunConfig:
    path = Path(out) / "config.json"
    if not path.is_file():
        raise RunDirError(f"{out} is not a run folder (no config.json)")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path} is not valid JSON ({e.msg}); the run folder is damaged") from None
    return build_run_config(values, where=str(path))
