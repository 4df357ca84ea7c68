"""Conv SimVAE training throughput on this CPU (paper Table 4 networks, issue #11 item 6):
views/s of simvae's real training step at the paper's 128 views per step (12 images x 10
views) and where the step's time goes (making the views / forward / backward / Adam), for
CIFAR-10-shaped (32x32) and CelebA-shaped (64x64) images. Image content does not change the
speed, so the images are random uint8 of that shape. The last line is one JSON object.

    python benchmarks/conv_throughput.py [--steps 3] [--warmup 1] [--shapes 32 64] [--threads N]

On a GPU use benchmarks/gpu_throughput.sh (bf16, channels_last, views made on the device).
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--shapes", type=int, nargs="+", default=[32, 64], choices=[32, 64])
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from simvae.run_config import build_run_config
    from simvae.train import Trainer

    out = {"host": machine_line(), "threads": torch.get_num_threads(), "torch": torch.__version__, "runs": []}
    for size in args.shapes:
        dataset = "cifar10" if size == 32 else "celeba"
        data = synthetic(dataset, size)
        run = build_run_config({"train": {"method": "simvae", "dataset": dataset, "device": "cpu", "precision": "fp32",
                                          "seed": 0, "epochs": 1}})
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(run, Path(tmp), data=data, progress=False)
            timed = time_train_steps(trainer, args.steps, args.warmup)
            phases = time_breakdown(trainer, args.steps, args.warmup)
        r = {"shape": f"3x{size}x{size}", "images_per_step": trainer.images_per_step, "views_per_step": trainer.views_per_step,
             "views_per_s": round(timed["views_per_s_median"], 2),
             "images_per_s": round(timed["views_per_s_median"] / trainer.views_per_step * trainer.images_per_step, 2),
             "step_s": round(timed["median_step_s"], 3), "phases_s": {k: round(v, 3) for k, v in phases.items()},
             "other_load_cores": timed["load"]}
        print(f"conv SimVAE {r['shape']}: {r['views_per_s']} views/s ({r['step_s']} s per step of "
              f"{r['images_per_step']} x 10 views); phases {r['phases_s']}", file=sys.stderr, flush=True)
        out["runs"].append(r)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
