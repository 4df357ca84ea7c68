"""Conv training throughput on this CPU (paper Table 4 networks): views/s of
simvae's real training step at the paper's 128 views per step and where the step's time goes
(making the views / forward / backward / Adam), for CIFAR-10-shaped (32x32) and CelebA-shaped
(64x64) images, in each precision and memory format asked for, so that the defaults (bf16
autocast where the CPU has it natively, conv weights in channels_last) are measured choices.
Image content does not change the speed, so the images are random uint8 of that shape. The last
line is one JSON object.

    python benchmarks/conv_throughput.py [--steps 4] [--warmup 2] [--shapes 32 64] [--threads N]
        [--methods simvae vae simclr] [--precisions fp32 bf16] [--formats channels_last contiguous]
        [--decoder-images 2560]

It also times one epoch of the post-hoc decoder fit (evaluation of the discriminative methods,
``simvae.evaluate.decoder_fit.fit_decoder``) on that many images, in each precision: the whole
call (encoding the images, the epoch on 90% of them, the validation pass on the other 10%), so
its images/s (trained images per second of the call) is a lower bound on the training rate.

bf16 is measured only where the CPU computes it natively (AVX-512 BF16 / AMX; emulated bf16 runs
many times slower), unless ``--force-bf16``. The configurations of one shape and method run
interleaved (A B A B ...) and each figure is the median over its rounds, so a drift of the
machine's speed does not favour whichever runs first. On a GPU use benchmarks/gpu_throughput.sh.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import machine_line, time_breakdown, time_train_steps  # noqa: E402


def synthetic(name: str, size: int, n: int = 600):
    from simvae.data import ImageData

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    return ImageData(name, images, labels, images[:64], labels[:64], ["0", "1"], f"random {size}x{size}")


def make_trainer(method: str, dataset: str, data, precision: str, memory_format: str, out: Path):
    """The real Trainer (its defaults put conv weights in channels_last); ``contiguous`` undoes that."""
    from simvae.run_config import build_run_config
    from simvae.train import Trainer

    run = build_run_config(
        {"train": {"method": method, "dataset": dataset, "device": "cpu", "precision": precision, "seed": 0, "epochs": 1}}
    )
    trainer = Trainer(run, out, data=data, progress=False)
    if memory_format == "contiguous":
        trainer.method.to(memory_format=torch.contiguous_format)
    return trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=4, help="timed steps per round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds per configuration")
    ap.add_argument("--shapes", type=int, nargs="+", default=[32, 64], choices=[32, 64])
    from simvae.methods import METHODS

    ap.add_argument("--methods", nargs="+", default=["simvae"], choices=sorted(METHODS))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--formats", nargs="+", default=["channels_last", "contiguous"], choices=["channels_last", "contiguous"])
    ap.add_argument("--force-bf16", action="store_true", help="time bf16 even where it is emulated")
    ap.add_argument("--decoder-images", type=int, default=2560, help="images of the timed post-hoc decoder epoch (0: skip)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from simvae.hardware import native_bf16

    precisions = [p for p in args.precisions if p == "fp32" or args.force_bf16 or native_bf16(torch.device("cpu"))]
    skipped = sorted(set(args.precisions) - set(precisions))
    if skipped and not precisions:
        ap.error("this CPU emulates bf16 (no AVX-512 BF16 / AMX): nothing to time; add fp32 to --precisions or pass --force-bf16")
    if skipped:
        print("bf16 skipped: this CPU emulates it (--force-bf16 to time it anyway)", file=sys.stderr)
    out = {
        "host": machine_line(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "bf16_skipped": bool(skipped),
        "runs": [],
    }
    for size in args.shapes:
        dataset = "cifar10" if size == 32 else "celeba"
        data = synthetic(dataset, size)
        for method in args.methods:
            configs = [(p, f) for p in precisions for f in args.formats]
            with tempfile.TemporaryDirectory() as tmp:
                trainers = {c: make_trainer(method, dataset, data, *c, Path(tmp) / f"{c[0]}-{c[1]}") for c in configs}
                steps: dict = {c: [] for c in configs}
                loads: dict = {c: [] for c in configs}
                for _ in range(args.rounds):
                    for c in configs:
                        timed = time_train_steps(trainers[c], args.steps, args.warmup)
                        steps[c].append(timed["median_step_s"])
                        loads[c].append(timed["load"])
                for c in configs:
                    trainer = trainers[c]
                    step_s = statistics.median(steps[c])
                    phases = time_breakdown(trainer, args.steps, args.warmup)
                    r = {
                        "shape": f"3x{size}x{size}",
                        "method": method,
                        "precision": c[0],
                        "memory_format": c[1],
                        "images_per_step": trainer.images_per_step,
                        "views_per_step": trainer.views_per_step,
                        "views_per_s": round(trainer.views_per_step / step_s, 1),
                        "images_per_s": round(trainer.images_per_step / step_s, 2),
                        "step_s": round(step_s, 3),
                        "phases_s": {k: round(v, 3) for k, v in phases.items()},
                        "other_load_cores": max((x for x in loads[c] if x is not None), default=None),
                    }
                    print(
                        f"{method} {r['shape']} {c[0]} {c[1]}: {r['views_per_s']} views/s, {r['images_per_s']} images/s "
                        f"({r['step_s']} s per step of {r['images_per_step']} images, {r['views_per_step']} views); "
                        f"phases {r['phases_s']}",
                        file=sys.stderr,
                        flush=True,
                    )
                    out["runs"].append(r)
        if args.decoder_images:
            out.setdefault("post_hoc_decoder", []).extend(time_decoder_fit(size, args.decoder_images, precisions))
    print(json.dumps(out))


def time_decoder_fit(size: int, n: int, precisions: list[str]) -> list[dict]:
    """Images/s of one post-hoc decoder epoch (the conv decoder on frozen 64-d codes), per precision."""
    import time

    from simvae.evaluate.decoder_fit import fit_decoder
    from simvae.methods.base import ModelSpec

    spec = ModelSpec(network="conv", image_shape=(3, size, size), latent_dim=64)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    proj = torch.randn(3 * size * size, 64, generator=torch.Generator().manual_seed(1)) / (3 * size * size) ** 0.5
    encode = lambda x: x.flatten(1) @ proj  # noqa: E731 (a fixed cheap encoder: the decoder's cost is timed)
    rows = []
    for _ in range(2):  # the first round warms up both precisions; the second is kept
        rows = []
        for precision in precisions:
            t = time.perf_counter()
            fit_decoder(encode, images, spec, "cpu", max_epochs=1, progress=False, precision=precision)
            seconds = time.perf_counter() - t
            rows.append(
                {
                    "shape": f"3x{size}x{size}",
                    "precision": precision,
                    "images": n,
                    "epoch_s": round(seconds, 2),
                    "images_per_s": round(n * 0.9 / seconds, 1),
                }
            )  # 10% of the images are held out for validation
    for r in rows:
        print(
            f"post-hoc conv decoder {r['shape']} {r['precision']}: {r['images_per_s']} images/s "
            f"({r['epoch_s']} s for one epoch of {r['images']} images)",
            file=sys.stderr,
            flush=True,
        )
    return rows


if __name__ == "__main__":
    main()
