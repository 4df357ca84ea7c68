"""Evaluation time as targets multiply: the probes of many targets trained
together as disjoint heads in one loop ("joint", what simvae does) against one loop per target
(the earlier behaviour, "separate").

Synthetic standardised representations with labels that depend on them, sized like
Fashion-MNIST (1 content target + 3 style targets, 10-d, 50,000 fit images) or CelebA
(gender + hair colour + 20 attributes + 3 style targets = 25 targets, 64-d, 162,770 fit
images). Each probe set is the headline one: an MLP and linear probes at three learning rates
per target, a fixed number of epochs (no early stop, so both modes do the same work). Prints
seconds per epoch of each mode and their ratio; ``--scale`` shrinks the image count (times are
per epoch and grow linearly with it).

    python benchmarks/eval_targets.py [--preset fashion|celeba] [--epochs 2] [--scale 0.1] [--mode both|joint|separate]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from simvae.evaluate.probes import train_probes

PRESETS = {"fashion": dict(n=50000, d=10, classes=[10, 2, 4, 9]), "celeba": dict(n=162770, d=64, classes=[2, 5] + [2] * 20 + [2, 4, 9])}


def make(n: int, d: int, classes: list[int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    ys = []
    for t, k in enumerate(classes):
        w = torch.randn(d, k, generator=g)
        y = (x @ w + 0.5 * torch.randn(n, k, generator=g)).argmax(1)
        if t == 1 and len(classes) > 10:  # hair colour: about a third of the images have no label
            y[torch.rand(n, generator=g) < 0.3] = -1
        ys.append(y)
    return x, torch.stack(ys, 1)


def heads_for(targets: list[int], lr: float = 3e-4) -> dict:
    heads = {}
    for t in targets:
        heads[f"t{t}/mlp"] = ("mlp", lr, t)
        heads.update({f"t{t}/linear_lr{i}": ("linear", lr * f, t) for i, f in enumerate((1, 3, 10))})
    return heads


def run(mode: str, x, y, classes, epochs: int) -> float:
    n = x.shape[0]
    fit, val = slice(0, int(0.8 * n)), slice(int(0.8 * n), n)
    t0 = time.perf_counter()
    groups = [list(range(len(classes)))] if mode == "joint" else [[t] for t in range(len(classes))]
    for targets in groups:
        train_probes(
            heads_for(targets),
            x[fit],
            y[fit],
            x[val],
            y[val],
            x[val],
            y[val],
            classes,
            max_epochs=epochs,
            patience=10**6,
            hidden=x.shape[1],
        )
    return (time.perf_counter() - t0) / epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="celeba")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--mode", choices=["both", "joint", "separate"], default="both")
    args = ap.parse_args()
    p = PRESETS[args.preset]
    n = max(1000, int(p["n"] / 0.8 * args.scale))
    x, y = make(n, p["d"], p["classes"])
    out = {
        "preset": args.preset,
        "images": n,
        "targets": len(p["classes"]),
        "dim": p["d"],
        "epochs": args.epochs,
        "threads": torch.get_num_threads(),
    }
    modes = ["joint", "separate"] if args.mode == "both" else [args.mode]
    run("joint", x[:256], y[:256], p["classes"], 1)  # warm-up: the first optimiser step imports several seconds of modules
    for mode in modes:
        out[f"{mode}_s_per_epoch"] = round(run(mode, x, y, p["classes"], args.epochs), 3)
        out[f"{mode}_s_per_epoch_full_size"] = round(out[f"{mode}_s_per_epoch"] / args.scale, 1)
    if len(modes) == 2:
        out["separate_over_joint"] = round(out["separate_s_per_epoch"] / out["joint_s_per_epoch"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
