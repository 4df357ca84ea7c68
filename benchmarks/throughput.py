#!/usr/bin/env python
"""SimVAE training throughput on this machine: simvae's own step against the usual pipeline.

Measures, in one run, augmented views per second of SimVAE training (the paper's MLP
networks, J = 10 views, 128 images per step, full Fashion-MNIST in memory) for

  (a) simvae's own training step and data path: ``simvae.train.Trainer.train_step`` on
      index batches (views made in one batched pass on the device), in fp32 and bf16 autocast;
  (b) the usual pipeline of the public reference code and popular SSL libraries: a torch
      ``Dataset`` whose ``__getitem__`` returns J views of one image, each made by
      torchvision per-image transforms (RandomResizedCrop(28, scale=(0.4, 1),
      ratio=(0.75, 1.3)) + RandomVerticalFlip(0.5) on a PIL image, then ToTensor), a
      ``DataLoader`` with worker processes, feeding the same networks and the same SimVAE
      loss (``simvae.methods.simvae.SimVAE``) in fp32 with Adam;
  (c) the machine's fp32 and bf16 matrix-multiply rates (torch.mm of 2048 x 2048 matrices,
      best of 7) and the step's achieved GFLOP/s in each precision as a fraction of that rate
      (``efficiency``, ``bf16_efficiency``), with FLOPs counted
      analytically: a Linear layer of in x out on n rows costs 2 n in out forward and
      4 n in out backward (gradients of its input and of its weights); the first encoder
      layer's input gradient is NOT counted (autograd does not compute it: the images do
      not require gradients), i.e. that layer counts 4 n in out.

It also breaks simvae's step down (augmentation / forward / backward / optimiser) and times
alternatives (Adam's for-loop, foreach and fused kernels, the Trainer using fused; one thread), so a miss of the
targets comes with where the time goes. Each headline measurement records how many cores
OTHER processes kept busy meanwhile (from /proc) and is repeated (--retries) when that
exceeds --busy-threshold. The last line printed is one JSON object.

    python benchmarks/throughput.py [--steps 60] [--warmup 10] [--threads N] [--bf16 auto|on|off]
        [--no-compile] [--no-reference] [--no-extras]

With torch.compile (inductor, CPU) it also times the compiled fp32 step: the compile's own time
(the first steps' excess over the eager step), the compiled step, and a 2-epoch run of full
Fashion-MNIST both ways with the compile included (``--no-compile`` skips it).

OpenMP threads wait passively, as in ``simvae train`` (``simvae.hardware.openmp_wait_policy``);
``OMP_WAIT_POLICY=ACTIVE`` (or ``GOMP_SPINCOUNT=N``) in the environment times OpenMP's spinning
instead. The thread count is torch's (one per core) unless ``--threads`` says otherwise.

Both step compositions are timed: the paper's 128 views per step (12 images x 10 views) and
the per-image batch of 128 images x 10 views. bf16 is timed only where the CPU computes it
natively (``--bf16 on`` forces it, time-boxed), since emulated bf16 runs many times slower.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from simvae.hardware import openmp_wait_policy

# as `simvae train` does, before PyTorch loads OpenMP: idle OpenMP threads sleep instead of spinning
# (OMP_WAIT_POLICY=ACTIVE or GOMP_SPINCOUNT=N in the environment measures the other policies)
WAIT_POLICY = openmp_wait_policy()

import torch  # noqa: E402

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def load() -> float:
    return os.getloadavg()[0]


_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_jiffies_total() -> int:
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return sum(f[:3]) + sum(f[5:8])  # user nice system (idle iowait skipped) irq softirq steal


def _busy_jiffies_mine() -> int:
    """CPU time of this process and its live descendants (DataLoader workers)."""
    total, todo, seen = 0, [os.getpid()], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime stime
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


class OtherLoad:
    """Cores kept busy by OTHER processes while a measurement runs (from /proc; None elsewhere)."""

    def __enter__(self):
        try:
            self.t, self.total, self.mine = time.perf_counter(), _busy_jiffies_total(), _busy_jiffies_mine()
        except OSError:
            self.t = None
        return self

    def __exit__(self, *exc):
        self.cores = None
        if self.t is not None:
            try:
                others = (_busy_jiffies_total() - self.total) - (_busy_jiffies_mine() - self.mine)
                self.cores = max(0.0, others / _HZ / (time.perf_counter() - self.t))
            except OSError:
                pass
        return False


def machine_line() -> str:
    try:
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or "unknown CPU"
    flags = ""
    try:
        cpu_flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
        flags = ",".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in cpu_flags)
    except (OSError, StopIteration):
        pass
    return (
        f"{name}; {os.cpu_count()} logical CPUs; torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}{'; ' + flags if flags else ''}); "
        f"{torch.get_num_threads()} intra-op threads"
    )


def matmul_gflops(n: int = 2048, dtype=torch.float32, repeats: int = 7) -> float:
    """Best-of-``repeats`` rate of torch.mm on n x n matrices, in GFLOP/s (2 n^3 FLOPs)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    c = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=c)  # warm up (MKL / oneDNN kernel selection)
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _r(x, nd: int = 2):
    return None if x is None else round(x, nd)


def linear_layers(module: torch.nn.Module) -> list[torch.nn.Linear]:
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


def step_flops(method, rows: int) -> tuple[float, float]:
    """Analytic FLOPs of one training step of the networks on ``rows`` views.

    Returns (counted, counted_plus_first_input_grad): forward 2 n in out + backward
    4 n in out per Linear, without (and with) the first encoder layer's input gradient.
    """
    enc, dec = linear_layers(method.encoder), linear_layers(method.decoder)
    total = sum(6 * rows * m.in_features * m.out_features for m in enc + dec)
    first = enc[0]
    skipped = 2 * rows * first.in_features * first.out_features
    return total - skipped, total


def gemm_shapes_gflops(method, rows: int, dtype=torch.float32, repeats: int = 5) -> float:
    """Rate of the step's own GEMMs (forward, input-grad and weight-grad of every Linear) in isolation."""
    flops, seconds = 0.0, 0.0
    for i, m in enumerate(linear_layers(method.encoder) + linear_layers(method.decoder)):
        x = torch.randn(rows, m.in_features).to(dtype)
        w = torch.randn(m.out_features, m.in_features).to(dtype)
        gy = torch.randn(rows, m.out_features).to(dtype)
        ops = [lambda x=x, w=w: torch.mm(x, w.t()), lambda gy=gy, x=x: torch.mm(gy.t(), x)]
        if i > 0:
            ops.append(lambda gy=gy, w=w: torch.mm(gy, w))
        for op in ops:
            op()
            best = math.inf
            for _ in range(repeats):
                t = time.perf_counter()
                op()
                best = min(best, time.perf_counter() - t)
            flops += 2 * rows * m.in_features * m.out_features
            seconds += best
    return flops / seconds / 1e9


# ------------------------------------------------------------------------------------------
# (a) simvae's own step
# ------------------------------------------------------------------------------------------

COMPOSITIONS = {
    "views128": {"views_per_step": 128},  # the paper's protocol: 12 images x 10 views
    "images128": {"batch_size": 128},  # the earlier default: 128 images x 10 views
}


def make_trainer(data, out: Path, size: dict, n_views: int, precision: str, seed: int = 0, compile: bool = False):
    from simvae.run_config import build_run_config
    from simvae.train import Trainer

    # the thread count set here (torch's default or --threads), not the Trainer's choice from the load
    run = build_run_config(
        {
            "train": {
                "method": "simvae",
                "dataset": "fashion-mnist",
                **size,
                "device": "cpu",
                "precision": precision,
                "seed": seed,
                "epochs": 1,
                "threads": torch.get_num_threads(),
                "compile": compile,
            },
            "method": {"n_views": n_views},
        }
    )
    return Trainer(run, out, data=data, progress=False)


def time_compiled(data, out: Path, size: dict, n_views: int, precision: str, steps: int, eager_step_s: float) -> dict:
    """``torch.compile`` (inductor) of the training step: the first step's extra time (the compile,
    against the eager median step ``eager_step_s``), the compiled median step, and both over a
    2-epoch run of full Fashion-MNIST (steps per epoch x 2 x step, plus the compile once)."""
    trainer = make_trainer(data, out, size, n_views, precision, compile=True)
    idx = index_batches(len(trainer.data.train_images), trainer.images_per_step, 3)
    t = time.perf_counter()
    for i in idx:  # the first calls compile (a recompilation may follow on the second)
        float(trainer.train_step(i)["loss"])
    compile_s = max(0.0, time.perf_counter() - t - 3 * eager_step_s)
    r = time_train_steps(trainer, steps, 2)
    two_epochs = 2 * trainer.steps_per_epoch
    return {
        "compile_seconds": compile_s,
        "views_per_s": r["views_per_s"],
        "median_step_s": r["median_step_s"],
        "two_epoch_seconds_eager": two_epochs * eager_step_s,
        "two_epoch_seconds_compiled": compile_s + two_epochs * r["median_step_s"],
        "load": r["load"],
    }


def index_batches(n_images: int, batch_size: int, count: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_images, generator=g)
    per_epoch = n_images // batch_size
    out = []
    for s in range(count):
        if s and s % per_epoch == 0:
            perm = torch.randperm(n_images, generator=g)
        k = s % per_epoch
        out.append(perm[k * batch_size : (k + 1) * batch_size])
    return out


def time_train_steps(trainer, steps: int, warmup: int, budget_s: float | None = None) -> dict:
    """Warm up, then time ``steps`` calls of the real ``trainer.train_step`` (per-step times kept);
    with ``budget_s``, stop early once that many seconds have passed (time-boxed)."""
    idxs = index_batches(len(trainer.data.train_images), trainer.images_per_step, warmup + steps)
    last = None
    t_start = time.perf_counter()
    for idx in idxs[:warmup]:
        last = trainer.train_step(idx)
        if budget_s and time.perf_counter() - t_start > budget_s:
            break
    per_step = []
    with OtherLoad() as other:
        t_all = time.perf_counter()
        for idx in idxs[warmup:]:
            t = time.perf_counter()
            last = trainer.train_step(idx)
            float(last["loss"])  # materialise (as fit's divergence check does every step)
            per_step.append(time.perf_counter() - t)
            if budget_s and time.perf_counter() - t_start > budget_s and len(per_step) >= 2:
                break
        total = time.perf_counter() - t_all
    views = len(per_step) * trainer.views_per_step
    return {
        "seconds": total,
        "steps": len(per_step),
        "views_per_s": views / total,
        "median_step_s": statistics.median(per_step),
        "views_per_s_median": trainer.views_per_step / statistics.median(per_step),
        "loss": float(last["loss"]),
        "load": other.cores,
    }


def time_breakdown(trainer, steps: int, warmup: int = 3) -> dict:
    """The real step's phases (``Trainer.make_batch / forward / backward / update``), timed one by
    one, and what is left of a whole ``train_step`` (Python and allocator overhead between them)."""
    idxs = index_batches(len(trainer.data.train_images), trainer.images_per_step, 2 * (warmup + steps), seed=1)
    phases = {k: 0.0 for k in ("make_batch", "forward", "backward", "optimizer")}
    for s, idx in enumerate(idxs[: warmup + steps]):
        t0 = time.perf_counter()
        batch = trainer.make_batch(idx)
        t1 = time.perf_counter()
        terms = trainer.forward(batch)
        t2 = time.perf_counter()
        trainer.backward(terms)
        t3 = time.perf_counter()
        trainer.update()
        t4 = time.perf_counter()
        if s >= warmup:
            for k, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[k] += dt
    whole = time_train_steps(trainer, steps, warmup)["median_step_s"]
    out = {k: v / steps for k, v in phases.items()}
    out["whole_step_median"] = whole
    return out


def time_optimizer_variants(trainer, repeats: int = 20) -> dict:
    """Seconds per Adam step on the trainer's parameters for the for-loop, foreach and fused kernels."""
    params = trainer.method.trainable_parameters()
    for p in params:
        if p.grad is None:
            p.grad = torch.randn_like(p) * 1e-3
    lr = trainer.run.train.lr
    result = {}
    for name, kwargs in (("for-loop (default on CPU)", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        backup = [p.detach().clone() for p in params]
        try:
            opt = torch.optim.Adam(params, lr=lr, **kwargs)
            for _ in range(3):
                opt.step()
            t = time.perf_counter()
            for _ in range(repeats):
                opt.step()
            result[name] = (time.perf_counter() - t) / repeats
        except (RuntimeError, TypeError) as e:  # fused unsupported on this build/device
            result[name] = f"unavailable: {e}".splitlines()[0]
        finally:
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)
    return result


# ------------------------------------------------------------------------------------------
# (b) the usual pipeline: per-image torchvision transforms in DataLoader workers
# ------------------------------------------------------------------------------------------


class MultiViewDataset(torch.utils.data.Dataset):
    """J torchvision-augmented views of each image, made one image and one view at a time."""

    def __init__(self, images_uint8: torch.Tensor, n_views: int):
        from torchvision import transforms

        self.images = images_uint8[:, 0].numpy()  # [N, 28, 28] uint8, as torchvision's FashionMNIST holds them
        self.n_views = n_views
        self.transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(28, scale=(0.4, 1.0), ratio=(0.75, 1.3)),
                transforms.RandomVerticalFlip(0.5),
                transforms.ToTensor(),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.fromarray(self.images[i], mode="L")
        return torch.stack([self.transform(img) for _ in range(self.n_views)]), 0  # [J, 1, 28, 28]


def reference_loader(data, n_views: int, batch_size: int, workers: int):
    ds = MultiViewDataset(data.train_images, n_views)
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
    )


def time_reference(data, n_views: int, batch_size: int, workers: int, steps: int, warmup: int) -> dict:
    from simvae.methods import Batch, ModelSpec, build_method

    torch.manual_seed(0)
    method = build_method("simvae", ModelSpec(tuple(data.image_shape), 10, "mlp"), {"n_views": n_views})
    opt = torch.optim.Adam(method.parameters(), lr=8e-5)
    loader = reference_loader(data, n_views, batch_size, workers)
    it = iter(loader)

    def step(views):
        b = views.shape[0]
        batch = Batch(views[:, 0], views, lambda per_image, dim: torch.randn(b * per_image, dim))
        terms = method(batch)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        return float(terms["loss"].detach())

    for _ in range(warmup):
        step(next(it)[0])
    with OtherLoad() as other:
        t = time.perf_counter()
        wait = 0.0
        for _ in range(steps):
            t_w = time.perf_counter()
            views = next(it)[0]
            wait += time.perf_counter() - t_w
            loss = step(views)
        total = time.perf_counter() - t
    del it, loader
    return {
        "seconds": total,
        "views_per_s": steps * batch_size * n_views / total,
        "waiting_for_data_s": wait,
        "loss": loss,
        "load": other.cores,
    }


def time_reference_data_only(data, n_views: int, batch_size: int, workers: int, steps: int) -> float:
    """Views/s the DataLoader alone delivers (no training competing for the cores)."""
    it = iter(reference_loader(data, n_views, batch_size, workers))
    next(it)
    t = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * batch_size * n_views / (time.perf_counter() - t)


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60, help="timed training steps per configuration (default 60)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--views", type=int, default=10, help="J, views per image (default 10)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference pipeline (default 2)")
    ap.add_argument("--data-dir", default=os.environ.get("SIMVAE_DATA_DIR", DEFAULT_DATA_DIR))
    ap.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="time bf16 autocast too: auto = only where the CPU has native bf16 (default)",
    )
    ap.add_argument("--bf16-seconds", type=float, default=60.0, help="time box of each bf16 measurement (default 60)")
    ap.add_argument("--no-reference", action="store_true", help="skip the per-image torchvision pipeline")
    ap.add_argument("--no-extras", action="store_true", help="skip the breakdown, Adam variants and 1-thread timing")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile (inductor) timing")
    ap.add_argument(
        "--busy-threshold",
        type=float,
        default=0.25,
        help="repeat a headline measurement when other processes kept more cores than this busy (default 0.25)",
    )
    ap.add_argument("--retries", type=int, default=1, help="repeats of a disturbed headline measurement (default 1)")
    ap.add_argument("--retry-wait", type=float, default=20.0, help="seconds to wait before a repeat (default 20)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from simvae.data import load_dataset
    from simvae.hardware import cpu_has_native_bf16, host_description

    native = cpu_has_native_bf16()
    print(f"host: {host_description()}")
    print(f"machine: {machine_line()}; OpenMP wait policy: {WAIT_POLICY}; {torch.get_num_threads()} intra-op threads")
    load_start = load()
    data = load_dataset("fashion-mnist", data_dir=args.data_dir, download=False)
    print(f"data: Fashion-MNIST {tuple(data.train_images.shape)} uint8 in memory ({data.source})")
    j = args.views
    do_bf16 = args.bf16 == "on" or (args.bf16 == "auto" and native)
    bf16_note = (
        "timed"
        if do_bf16 and native
        else f"timed, time-boxed to {args.bf16_seconds:.0f} s: this CPU only emulates bf16"
        if do_bf16
        else "skipped: this CPU has no native bf16 (AVX-512 BF16 / AMX), where bf16 autocast is emulated and "
        "runs many times slower than fp32; --bf16 on times it anyway, time-boxed"
    )
    print(f"bf16: {bf16_note}")

    def quiet(measure, what: str):
        """Run ``measure`` again (up to --retries times, after a pause) while other processes were busy."""
        for attempt in range(args.retries + 1):
            r = measure()
            busy = r.get("load")
            if busy is None or busy <= args.busy_threshold or attempt == args.retries:
                if busy is not None and busy > args.busy_threshold:
                    print(f"  warning: {what} measured while other processes kept {busy:.2f} cores busy", flush=True)
                return r
            print(
                f"  {what}: other processes kept {busy:.2f} cores busy; waiting {args.retry_wait:.0f} s and "
                f"measuring again ({attempt + 1}/{args.retries})",
                flush=True,
            )
            time.sleep(args.retry_wait)

    out: dict = {"host": host_description(), "cpu_native_bf16": native, "bf16": bf16_note, "compositions": {}}
    print()
    print(f"{'configuration':52s} {'views/s':>9s} {'step ms':>9s} {'GFLOP/s':>9s} {'others':>6s}")
    print("-" * 90)
    with tempfile.TemporaryDirectory() as tmp:
        mm = matmul_gflops(2048)
        out["matmul_gflops"] = round(mm, 2)
        mm_bf16 = matmul_gflops(2048, torch.bfloat16) if do_bf16 else None
        out["matmul_gflops_bf16"] = _r(mm_bf16)
        print(f"GEMM rate (torch.mm 2048 x 2048, best of 7): fp32 {mm:.0f} GFLOP/s" + (f", bf16 {mm_bf16:.0f} GFLOP/s" if mm_bf16 else ""))
        for name, size in COMPOSITIONS.items():
            trainer = make_trainer(data, Path(tmp) / name, size, j, "fp32")
            rows = trainer.views_per_step
            flops, _ = step_flops(trainer.method, rows)
            fp32 = quiet(lambda t=trainer: time_train_steps(t, args.steps, args.warmup), f"{name} fp32")
            gf = flops / fp32["median_step_s"] / 1e9
            comp = {
                "images_per_step": trainer.images_per_step,
                "views_per_step": rows,
                "fp32_views_per_s": round(fp32["views_per_s"], 1),
                "fp32_step_ms_median": round(fp32["median_step_s"] * 1e3, 2),
                "step_gflop": round(flops / 1e9, 3),
                "step_gflops": round(gf, 2),
                "efficiency": round(gf / mm, 3),
                "other_cores_busy": _r(fp32["load"]),
            }
            print(
                f"{name + f' ({trainer.images_per_step} x {j}), fp32':52s} {fp32['views_per_s']:9.0f} "
                f"{fp32['median_step_s'] * 1e3:9.1f} {gf:9.1f} {fp32['load'] or 0:6.2f}",
                flush=True,
            )
            if not args.no_extras:
                bd = time_breakdown(trainer, max(10, args.steps // 3))
                parts = bd["make_batch"] + bd["forward"] + bd["backward"] + bd["optimizer"]
                bd["overhead"] = max(0.0, bd["whole_step_median"] - parts)
                comp["breakdown_ms"] = {k: round(v * 1e3, 2) for k, v in bd.items()}
                print(
                    "    where the time goes: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in bd.items() if k != "whole_step_median"),
                    flush=True,
                )
                if torch.get_num_threads() > 1:
                    n_threads = torch.get_num_threads()
                    torch.set_num_threads(1)
                    try:
                        t1 = make_trainer(data, Path(tmp) / f"{name}-t1", size, j, "fp32")
                        r1 = time_train_steps(t1, max(10, args.steps // 3), 3)
                        comp["fp32_1_thread_views_per_s"] = round(r1["views_per_s"], 1)
                        print(f"{'    same, 1 intra-op thread':52s} {r1['views_per_s']:9.0f} {r1['median_step_s'] * 1e3:9.1f}", flush=True)
                        del t1
                    finally:
                        torch.set_num_threads(n_threads)
            if do_bf16:
                tb = make_trainer(data, Path(tmp) / f"{name}-bf16", size, j, "bf16")
                rb = time_train_steps(tb, args.steps, min(args.warmup, 3), budget_s=None if native else args.bf16_seconds)
                gf_b = flops / rb["median_step_s"] / 1e9
                comp["bf16_views_per_s"] = round(rb["views_per_s"], 1)
                comp["bf16_steps_timed"] = rb["steps"]
                comp["bf16_step_gflops"] = round(gf_b, 2)
                comp["bf16_efficiency"] = round(gf_b / mm_bf16, 3)
                print(
                    f"{name + ', bf16 autocast':52s} {rb['views_per_s']:9.0f} {rb['median_step_s'] * 1e3:9.1f} {gf_b:9.1f}",
                    flush=True,
                )
                del tb
            if not args.no_compile:
                rc = quiet(
                    lambda n=name, sz=size, st=fp32["median_step_s"]: time_compiled(
                        data, Path(tmp) / f"{n}-compiled", sz, j, "fp32", args.steps, st
                    ),
                    f"{name} compiled",
                )
                gf_c = flops / rc["median_step_s"] / 1e9
                comp["compiled"] = {
                    "views_per_s": round(rc["views_per_s"], 1),
                    "step_ms_median": round(rc["median_step_s"] * 1e3, 2),
                    "step_gflops": round(gf_c, 2),
                    "compile_seconds": round(rc["compile_seconds"], 1),
                    "two_epoch_seconds_eager": round(rc["two_epoch_seconds_eager"], 1),
                    "two_epoch_seconds_compiled": round(rc["two_epoch_seconds_compiled"], 1),
                }
                print(
                    f"{name + ', fp32, torch.compile (inductor)':52s} {rc['views_per_s']:9.0f} {rc['median_step_s'] * 1e3:9.1f} "
                    f"{gf_c:9.1f} {rc['load'] or 0:6.2f}\n"
                    f"    compile {rc['compile_seconds']:.1f} s; a 2-epoch run of full Fashion-MNIST: eager "
                    f"{rc['two_epoch_seconds_eager']:.0f} s, compiled {rc['two_epoch_seconds_compiled']:.0f} s (compile included)",
                    flush=True,
                )
            out["compositions"][name] = comp
            if name == "images128" and not args.no_extras:
                out["adam_step_ms"] = {
                    k: (round(v * 1e3, 2) if isinstance(v, float) else v) for k, v in time_optimizer_variants(trainer).items()
                }
            del trainer
        if not args.no_reference:
            ref = quiet(lambda: time_reference(data, j, 128, args.workers, args.steps, max(3, args.warmup // 2)), "reference pipeline")
            out["reference_views_per_s"] = round(ref["views_per_s"], 1)
            out["speedup_images128"] = round(out["compositions"]["images128"]["fp32_views_per_s"] / ref["views_per_s"], 3)
            print(f"{'reference: Dataset + torchvision per image, 128 x 10':52s} {ref['views_per_s']:9.0f}", flush=True)
    print("-" * 90)
    out.update(
        {
            "steps": args.steps,
            "warmup": args.warmup,
            "threads": torch.get_num_threads(),
            "wait_policy": WAIT_POLICY,
            "loadavg_start": round(load_start, 2),
            "loadavg_end": round(load(), 2),
            "torch": torch.__version__,
        }
    )
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
