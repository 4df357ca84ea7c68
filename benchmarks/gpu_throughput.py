#!/usr/bin/env python
"""SimVAE training throughput on a CUDA GPU: views/s and peak memory, as JSON.

Trains SimVAE with the real ``simvae.train.Trainer`` (views made on the GPU by
``Trainer.make_batch``) for a fixed number of steps after a warm-up, in bf16 autocast
(``--fp32`` adds an fp32 run), for

- the MLP networks (MNIST / Fashion-MNIST, paper Table 3), and
- the conv networks (paper Table 4) on every registered data set that uses them (CIFAR-10
  32x32, CelebA 64x64), channels_last.

Image content does not change the speed, so the data are Fashion-MNIST when found (--data-dir
or SIMVAE_DATA_DIR) and random uint8 images of the data set's shape otherwise.
Prints one JSON object (the last line); exits 2 with a message when no CUDA GPU is present.

    python benchmarks/gpu_throughput.py [--steps 200] [--warmup 20] [--batch-size 128] [--views 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def fail(message: str, code: int = 2) -> None:
    print(f"gpu_throughput: {message}", file=sys.stderr)
    print(json.dumps({"error": message}))
    sys.exit(code)


def synthetic(name: str, shape: tuple[int, int, int], n: int = 60000):
    import torch

    from simvae.data import ImageData

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ImageData(name, images, labels, images[:1000], labels[:1000], [str(i) for i in range(10)], "synthetic")


def get_data(dataset: str, data_dir: str | None):
    from simvae.data import DATASETS, load_dataset
    from simvae.errors import DataError

    try:
        return load_dataset(dataset, data_dir=data_dir, download=False)
    except DataError:
        return synthetic(dataset, DATASETS[dataset].image_shape)


def conv_network_status() -> tuple[list[str], str]:
    """(data sets using conv nets: CIFAR-10 32x32, CelebA 64x64; why none) — empty when the conv SimVAE cannot run."""
    from simvae.data import DATASETS
    from simvae.nets import build_encoder
    from simvae.presets import preset

    try:
        build_encoder("conv", (3, 32, 32), 128)
    except (ValueError, NotImplementedError, KeyError, TypeError) as e:
        return [], f"absent: simvae.nets has no conv network yet ({e})"
    names = [name for name in DATASETS if preset(name).network == "conv"]
    return names, "" if names else "absent: simvae.nets builds a conv network but no registered data set uses it"


def bench(
    dataset: str, data, steps: int, warmup: int, batch_size: int, views: int, bf16: bool, compile_: bool, device: str = "cuda"
) -> dict:
    import torch

    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    from simvae.presets import preset
    from simvae.run_config import build_run_config
    from simvae.train import Trainer

    run = build_run_config(
        {
            "train": {
                "method": "simvae",
                "dataset": dataset,
                "batch_size": batch_size,
                "device": device,
                "precision": "bf16" if bf16 else "fp32",
                "compile": compile_,
                "seed": 0,
                "epochs": 1,
            },
            "method": {"n_views": views},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        trainer = Trainer(run, Path(tmp), data=data, progress=False)
        n = len(trainer.data.train_images)
        g = torch.Generator(device=trainer.device).manual_seed(0)
        perm = torch.randperm(n, generator=g, device=trainer.device)
        per_epoch = n // batch_size

        def idx(s):
            k = s % per_epoch
            return perm[k * batch_size : (k + 1) * batch_size]

        for s in range(warmup):
            trainer.train_step(idx(s))
        sync()
        t = time.perf_counter()
        for s in range(warmup, warmup + steps):
            terms = trainer.train_step(idx(s))
        sync()
        seconds = time.perf_counter() - t
        loss = float(terms["loss"])
        n_params = sum(p.numel() for p in trainer.method.parameters())
        del trainer
    return {
        "dataset": dataset,
        "network": preset(dataset).network,
        "precision": "bf16" if bf16 else "fp32",
        "compile": compile_,
        "batch_size": batch_size,
        "n_views": views,
        "steps": steps,
        "views_per_s": round(steps * batch_size * views / seconds, 1),
        "step_ms": round(seconds / steps * 1e3, 3),
        "peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "parameters": n_params,
        "final_loss": round(loss, 4),
        "data": data.source,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    ap.add_argument("--views", type=int, default=10, help="J, views per image (default 10)")
    ap.add_argument("--fp32", action="store_true", help="also time fp32 (default: bf16 only)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the method (TrainConfig.compile)")
    ap.add_argument("--data-dir", default=os.environ.get("SIMVAE_DATA_DIR"))
    ap.add_argument("--dry-run-cpu", action="store_true", help=argparse.SUPPRESS)  # exercise the code path on CPU
    args = ap.parse_args(argv)

    try:
        import torch
    except ImportError:
        fail("PyTorch is not installed in this Python environment")
    device = "cpu" if args.dry_run_cpu else "cuda"
    if not torch.cuda.is_available() and not args.dry_run_cpu:
        why = (
            "this PyTorch build has no CUDA support"
            if torch.version.cuda is None
            else "no CUDA GPU is visible (torch.cuda.is_available() is False)"
        )
        fail(f"needs a CUDA GPU, but {why}; on a CPU-only machine run benchmarks/throughput.py instead")

    precisions = [True] + ([False] if args.fp32 else [])
    result = {
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else "none (--dry-run-cpu)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "runs": [],
    }
    data = get_data("fashion-mnist", args.data_dir)
    for bf16 in precisions:
        result["runs"].append(
            bench("fashion-mnist", data, args.steps, args.warmup, args.batch_size, args.views, bf16, args.compile, device)
        )
    conv_datasets, why = conv_network_status()
    if not conv_datasets:
        result["conv"] = why
        print(f"gpu_throughput: conv SimVAE skipped - {why}", file=sys.stderr)
    for conv_dataset in conv_datasets:
        conv_data = get_data(conv_dataset, args.data_dir)
        for bf16 in precisions:
            result["runs"].append(
                bench(conv_dataset, conv_data, args.steps, args.warmup, args.batch_size, args.views, bf16, args.compile, device)
            )
    for r in result["runs"]:
        print(
            f"gpu_throughput: {r['network']:4s} {r['precision']} batch {r['batch_size']}x{r['n_views']}: "
            f"{r['views_per_s']:.0f} views/s, {r['step_ms']:.2f} ms/step, peak {r['peak_memory_mib']} MiB",
            file=sys.stderr,
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
