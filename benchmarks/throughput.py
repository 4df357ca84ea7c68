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
  (c) the machine's fp32 (and bf16) matrix-multiply rate (torch.mm of 2048 x 2048 matrices,
      best of 7; for fp32 the mean of that measured just before and just after the fp32
      steps, as this shared machine's speed drifts) and the step's achieved GFLOP/s, with FLOPs counted
      analytically: a Linear layer of in x out on n rows costs 2 n in out forward and
      4 n in out backward (gradients of its input and of its weights); the first encoder
      layer's input gradient is NOT counted (autograd does not compute it: the images do
      not require gradients), i.e. that layer counts 4 n in out.

It also breaks simvae's step down (augmentation / forward / backward / optimiser) and times
alternatives (Adam's for-loop, foreach and fused kernels, the Trainer using fused; one thread), so a miss of the
targets comes with where the time goes. Each headline measurement records how many cores
OTHER processes kept busy meanwhile (from /proc) and is repeated (--retries) when that
exceeds --busy-threshold. The last line printed is one JSON object.

    python benchmarks/throughput.py [--steps 60] [--warmup 10] [--threads N]
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
from contextlib import nullcontext
from pathlib import Path

import torch

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
    return (f"{name}; {os.cpu_count()} logical CPUs; torch {torch.__version__} "
            f"({torch.backends.cpu.get_cpu_capability()}{'; ' + flags if flags else ''}); "
            f"{torch.get_num_threads()} intra-op threads")


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
    return 2 * n ** 3 / best / 1e9


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

def make_trainer(data, out: Path, batch_size: int, n_views: int, bf16: bool, seed: int = 0):
    from simvae.run_config import build_run_config
    from simvae.train import Trainer

    run = build_run_config({"train": {"method": "simvae", "dataset": "fashion-mnist", "batch_size": batch_size,
                                      "device": "cpu", "bf16": bf16, "seed": seed, "epochs": 1},
                            "method": {"n_views": n_views}})
    return Trainer(run, out, data=data, progress=False)


def index_batches(n_images: int, batch_size: int, count: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_images, generator=g)
    per_epoch = n_images // batch_size
    out = []
    for s in range(count):
        if s and s % per_epoch == 0:
            perm = torch.randperm(n_images, generator=g)
        k = s % per_epoch
        out.append(perm[k * batch_size:(k + 1) * batch_size])
    return out


def time_train_steps(trainer, steps: int, warmup: int) -> dict:
    """Warm up, then time ``steps`` calls of ``trainer.train_step`` (per-step times kept)."""
    idxs = index_batches(len(trainer.data.train_images), trainer.run.train.batch_size, warmup + steps)
    last = None
    for idx in idxs[:warmup]:
        last = trainer.train_step(idx)
    per_step = []
    with OtherLoad() as other:
        t_all = time.perf_counter()
        for idx in idxs[warmup:]:
            t = time.perf_counter()
            last = trainer.train_step(idx)
            float(last["loss"])  # materialise (as fit's divergence check does every step)
            per_step.append(time.perf_counter() - t)
        total = time.perf_counter() - t_all
    views = steps * trainer.run.train.batch_size * trainer.method.n_views
    return {"seconds": total, "views_per_s": views / total, "median_step_s": statistics.median(per_step),
            "views_per_s_median": trainer.run.train.batch_size * trainer.method.n_views / statistics.median(per_step),
            "loss": float(last["loss"]), "load": other.cores}


def time_breakdown(trainer, steps: int, warmup: int = 3) -> dict:
    """train_step cut in phases: view sampling, image gather, view rendering, forward, backward, Adam."""
    from simvae.augment import apply_views, sample_view_params, to_float

    tc = trainer.run.train
    idxs = index_batches(len(trainer.data.train_images), tc.batch_size, warmup + steps, seed=1)
    j = trainer.method.n_views
    phases = {k: 0.0 for k in ("sample_params", "gather_images", "render_views", "make_batch_total",
                               "forward", "backward", "optimizer")}
    for s, idx in enumerate(idxs):
        t0 = time.perf_counter()
        params = sample_view_params(len(idx), j, trainer.data.image_shape[1:], trainer.aug_spec, trainer.generator,
                                    trainer.device)
        t1 = time.perf_counter()
        images = to_float(trainer.images[idx])
        t2 = time.perf_counter()
        apply_views(images, params)
        t3 = time.perf_counter()
        batch = trainer.make_batch(idx)  # the real one (draws fresh parameters; same cost as the three above)
        t4 = time.perf_counter()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if tc.bf16 else nullcontext()
        with autocast:
            terms = trainer.model(batch)
        t5 = time.perf_counter()
        trainer.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        t6 = time.perf_counter()
        trainer.optimizer.step()
        trainer.method.after_step()
        t7 = time.perf_counter()
        if s >= warmup:
            for k, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6)):
                phases[k] += dt
    return {k: v / steps for k, v in phases.items()}


def time_optimizer_variants(trainer, repeats: int = 20) -> dict:
    """Seconds per Adam step on the trainer's parameters for the for-loop, foreach and fused kernels."""
    params = trainer.method.trainable_parameters()
    for p in params:
        if p.grad is None:
            p.grad = torch.randn_like(p) * 1e-3
    lr = trainer.run.train.lr
    result = {}
    for name, kwargs in (("for-loop (default on CPU)", {"foreach": False}), ("foreach", {"foreach": True}),
                         ("fused", {"fused": True})):
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
        self.transform = transforms.Compose([
            transforms.RandomResizedCrop(28, scale=(0.4, 1.0), ratio=(0.75, 1.3)),
            transforms.RandomVerticalFlip(0.5),
            transforms.ToTensor(),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.fromarray(self.images[i], mode="L")
        return torch.stack([self.transform(img) for _ in range(self.n_views)]), 0  # [J, 1, 28, 28]


def reference_loader(data, n_views: int, batch_size: int, workers: int):
    ds = MultiViewDataset(data.train_images, n_views)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                                       persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None)


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
    return {"seconds": total, "views_per_s": steps * batch_size * n_views / total, "waiting_for_data_s": wait,
            "loss": loss, "load": other.cores}


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
    ap.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    ap.add_argument("--views", type=int, default=10, help="J, views per image (default 10)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference pipeline (default 2)")
    ap.add_argument("--data-dir", default=os.environ.get("SIMVAE_DATA_DIR", DEFAULT_DATA_DIR))
    ap.add_argument("--no-extras", action="store_true", help="skip the breakdown and the alternatives")
    ap.add_argument("--profile", action="store_true", help="also print torch.profiler's top operators of the fp32 step")
    ap.add_argument("--busy-threshold", type=float, default=0.25,
                    help="repeat a headline measurement when other processes kept more cores than this busy (default 0.25)")
    ap.add_argument("--retries", type=int, default=2, help="repeats of a disturbed headline measurement (default 2)")
    ap.add_argument("--retry-wait", type=float, default=30.0, help="seconds to wait before a repeat (default 30)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from simvae.data import load_dataset

    print(f"machine: {machine_line()}")
    load_start = load()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    data = load_dataset("fashion-mnist", data_dir=args.data_dir, download=False)
    print(f"data: Fashion-MNIST {tuple(data.train_images.shape)} uint8 in memory ({data.source})")
    b, j = args.batch_size, args.views
    rows = b * j

    res: dict = {}
    extras: dict = {}

    def quiet(measure, what: str):
        """Run ``measure`` again (up to --retries times, after a pause) while other processes were busy."""
        for attempt in range(args.retries + 1):
            r = measure()
            busy = r.get("load")
            if busy is None or busy <= args.busy_threshold or attempt == args.retries:
                if busy is not None and busy > args.busy_threshold:
                    print(f"  warning: {what} measured while other processes kept {busy:.2f} cores busy", flush=True)
                return r
            print(f"  {what}: other processes kept {busy:.2f} cores busy; waiting {args.retry_wait:.0f} s and "
                  f"measuring again ({attempt + 1}/{args.retries})", flush=True)
            time.sleep(args.retry_wait)

    with tempfile.TemporaryDirectory() as tmp:
        # ---- headline measurements first, close together in time --------------------------
        trainer = make_trainer(data, Path(tmp) / "fp32", b, j, bf16=False)
        flops, flops_all = step_flops(trainer.method, rows)
        print(f"timing simvae fp32 ({args.steps} steps) ...", flush=True)

        def measure_fp32():
            # this machine's speed drifts (shared host): the fp32 matmul rate is measured right
            # before and right after the fp32 steps, and the efficiency uses the mean of the two
            before = matmul_gflops(2048)
            r = time_train_steps(trainer, args.steps, args.warmup)
            r["matmul"] = [before, matmul_gflops(2048)]
            return r

        fp32 = quiet(measure_fp32, "simvae fp32")
        res["matmul_gflops"] = sum(fp32["matmul"]) / 2
        res["matmul_gflops_before_after"] = [round(x, 1) for x in fp32["matmul"]]
        bf16_trainer = make_trainer(data, Path(tmp) / "bf16", b, j, bf16=True)
        print(f"timing simvae bf16 ({args.steps} steps) ...", flush=True)
        bf16 = quiet(lambda: time_train_steps(bf16_trainer, args.steps, args.warmup), "simvae bf16")
        print(f"timing reference pipeline ({args.workers} workers, {args.steps} steps) ...", flush=True)
        ref = quiet(lambda: time_reference(data, j, b, args.workers, args.steps, max(3, args.warmup // 2)),
                    "reference pipeline")

        # ---- diagnostics ---------------------------------------------------------------------
        res["matmul_bf16_gflops"] = matmul_gflops(2048, torch.bfloat16)
        res["gemm_shapes_gflops"] = max(gemm_shapes_gflops(trainer.method, rows) for _ in range(2))
        res["gemm_shapes_bf16_gflops"] = gemm_shapes_gflops(trainer.method, rows, torch.bfloat16)
        if not args.no_extras:
            print("timing the step's phases, Adam variants, 1 thread ...", flush=True)
            extras["breakdown_fp32"] = time_breakdown(trainer, max(10, args.steps // 3))
            extras["breakdown_bf16"] = time_breakdown(bf16_trainer, max(10, args.steps // 3))
            extras["adam"] = time_optimizer_variants(trainer)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            idxs = index_batches(len(trainer.data.train_images), b, 5, seed=2)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for idx in idxs:
                    trainer.train_step(idx)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        del trainer, bf16_trainer

        if not args.no_extras and torch.get_num_threads() > 1:
            # one intra-op thread (leaves a core free: what a busy machine gives)
            n_threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                trainer = make_trainer(data, Path(tmp) / "t1", b, j, bf16=False)
                extras["fp32_1_thread"] = time_train_steps(trainer, max(10, args.steps // 3), 3)
                del trainer
            finally:
                torch.set_num_threads(n_threads)

        if not args.no_extras:
            extras["reference_data_only_views_per_s"] = time_reference_data_only(data, j, b, args.workers,
                                                                                  max(10, args.steps // 3))

    step_gflops = flops / fp32["seconds"] * args.steps / 1e9
    step_gflops_bf16 = flops / bf16["seconds"] * args.steps / 1e9
    best = max(fp32["views_per_s"], bf16["views_per_s"])
    out = {
        "simvae_views_per_s": round(fp32["views_per_s"], 1),
        "simvae_bf16_views_per_s": round(bf16["views_per_s"], 1),
        "reference_views_per_s": round(ref["views_per_s"], 1),
        "speedup": round(fp32["views_per_s"] / ref["views_per_s"], 3),
        "speedup_best": round(best / ref["views_per_s"], 3),
        "step_gflops": round(step_gflops, 2),
        "step_gflops_bf16": round(step_gflops_bf16, 2),
        "matmul_gflops": round(res["matmul_gflops"], 2),
        "matmul_gflops_before_after": res["matmul_gflops_before_after"],
        "matmul_bf16_gflops": round(res["matmul_bf16_gflops"], 2),
        "gemm_shapes_gflops": round(res["gemm_shapes_gflops"], 2),
        "efficiency": round(step_gflops / res["matmul_gflops"], 3),
        "efficiency_vs_gemm_shapes": round(step_gflops / res["gemm_shapes_gflops"], 3),
        "efficiency_median_step": round(flops / fp32["median_step_s"] / 1e9 / res["matmul_gflops"], 3),
        "simvae_views_per_s_median": round(fp32["views_per_s_median"], 1),
        "simvae_bf16_views_per_s_median": round(bf16["views_per_s_median"], 1),
        "step_gflop": round(flops / 1e9, 3),
        "flop_count": "6*n*in*out per Linear, first encoder layer's input gradient excluded",
        "steps": args.steps, "warmup": args.warmup, "batch_size": b, "n_views": j, "threads": torch.get_num_threads(),
        "workers": args.workers,
        # CPU cores kept busy by other processes during each measurement (this machine has os.cpu_count())
        "other_cores_busy": {"fp32": _r(fp32["load"]), "bf16": _r(bf16["load"]), "reference": _r(ref["load"])},
        "loadavg_start": round(load_start, 2), "loadavg_end": round(load(), 2), "cpus": os.cpu_count(),
        "disturbed": [name for name, r in (("fp32", fp32), ("bf16", bf16), ("reference", ref))
                      if r["load"] is not None and r["load"] > args.busy_threshold],
        "torch": torch.__version__,
    }

    # ---- readable table -----------------------------------------------------------------
    print()
    print(f"{'configuration':58s} {'views/s':>10s} {'step ms':>9s} {'GFLOP/s':>9s} {'others':>6s}")
    print("-" * 96)

    def row(name, views_per_s, gflops=None, ld=None):
        ms = rows / views_per_s * 1e3
        print(f"{name:58s} {views_per_s:10.0f} {ms:9.1f} {'' if gflops is None else f'{gflops:9.1f}':>9s} "
              f"{'' if ld is None else f'{ld:6.2f}':>6s}")

    row("(a) simvae Trainer.train_step, fp32", fp32["views_per_s"], step_gflops, fp32["load"])
    row("(a) simvae Trainer.train_step, bf16 autocast", bf16["views_per_s"], step_gflops_bf16, bf16["load"])
    if "fp32_1_thread" in extras:
        r = extras["fp32_1_thread"]
        row("    same, fp32, 1 intra-op thread", r["views_per_s"], flops / rows * r["views_per_s"] / 1e9, r["load"])
    row(f"(b) reference: Dataset + torchvision per image, {args.workers} workers", ref["views_per_s"],
        flops / rows * ref["views_per_s"] / 1e9, ref["load"])
    if "reference_data_only_views_per_s" in extras:
        row("    reference DataLoader alone (no training)", extras["reference_data_only_views_per_s"])
    print("-" * 96)
    print("others = CPU cores kept busy by other processes during the measurement "
          f"(of {os.cpu_count()}; this benchmark itself uses all of them)")
    print(f"(b) reference step waited {ref['waiting_for_data_s'] / ref['seconds']:.0%} of its time for the DataLoader")
    print(f"(c) torch.mm 2048^2: fp32 {res['matmul_gflops']:.1f} GFLOP/s (mean of {res['matmul_gflops_before_after']} "
          "measured just before and after the fp32 steps), "
          f"bf16 {res['matmul_bf16_gflops']:.1f} GFLOP/s; "
          f"the step's own GEMM shapes alone: fp32 {res['gemm_shapes_gflops']:.1f}, "
          f"bf16 {res['gemm_shapes_bf16_gflops']:.1f} GFLOP/s")
    print(f"    step = {flops / 1e9:.2f} GFLOP ({flops_all / 1e9:.2f} with the first layer's input gradient) on {rows} views;"
          f" efficiency fp32 = {out['efficiency']:.2f} of torch.mm ({out['efficiency_median_step']:.2f} from the median step),"
          f" {out['efficiency_vs_gemm_shapes']:.2f} of its own GEMMs")
    print(f"    speedup fp32 / reference = {out['speedup']:.2f}x, best precision / reference = {out['speedup_best']:.2f}x")
    for name in ("breakdown_fp32", "breakdown_bf16"):
        if name in extras:
            bd = extras[name]
            step = bd["make_batch_total"] + bd["forward"] + bd["backward"] + bd["optimizer"]
            parts = ", ".join(f"{k} {bd[k] * 1e3:.1f} ms ({bd[k] / step:.0%})"
                              for k in ("make_batch_total", "forward", "backward", "optimizer"))
            print(f"    {name}: step {step * 1e3:.1f} ms = {parts}; make_batch = sample_params "
                  f"{bd['sample_params'] * 1e3:.1f} + gather {bd['gather_images'] * 1e3:.1f} + "
                  f"render {bd['render_views'] * 1e3:.1f} ms")
    if "adam" in extras:
        print("    Adam step: " + ", ".join(f"{k} {v * 1e3:.1f} ms" if isinstance(v, float) else f"{k} {v}"
                                           for k, v in extras["adam"].items()))
    if not args.no_extras:
        out["breakdown_fp32_ms"] = {k: round(v * 1e3, 2) for k, v in extras["breakdown_fp32"].items()}
        out["breakdown_bf16_ms"] = {k: round(v * 1e3, 2) for k, v in extras["breakdown_bf16"].items()}
        out["adam_step_ms"] = {k: (round(v * 1e3, 2) if isinstance(v, float) else v) for k, v in extras["adam"].items()}
        if "fp32_1_thread" in extras:
            out["simvae_1_thread_views_per_s"] = round(extras["fp32_1_thread"]["views_per_s"], 1)
        out["reference_data_only_views_per_s"] = round(extras["reference_data_only_views_per_s"], 1)
    targets = out["efficiency"] >= 0.7 and out["speedup_best"] >= 3
    print(f"targets (efficiency >= 0.7, speedup_best >= 3): {'met' if targets else 'NOT met'}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
