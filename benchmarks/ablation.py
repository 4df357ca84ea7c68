"""Choose a hyperparameter on a validation split of the training set (the test set is not touched).

    python benchmarks/ablation.py --method beta-vae --param method.beta --values 0.25 0.5 1 2 --epochs 2
    python benchmarks/ablation.py --method simclr --param train.lr --values 8e-5 3e-4 1e-3 --epochs 2
    python benchmarks/ablation.py --method simclr --param train.lr --values 8e-5 3e-4 1e-3 --epochs 1 \
        --dataset cifar10 --data-dir DIR
    python benchmarks/ablation.py --method simvae --param train.precision --values fp32 bf16 --epochs 1 \
        --dataset cifar10 --data-dir DIR --train-subset 10000

Where the paper leaves a value open (beta-VAE's beta) or tunes it per data set (SimCLR's
learning rate), the default is picked here. For each value the method is trained with the
shared settings (the data set's nets and latent size, 128 views per step; Fashion-MNIST by
default) on the training set minus a held-out validation split of 10,000 images, and scored by k-NN accuracy (best k in 1..15) and
linear-probe accuracy on that validation split. The last line printed is JSON, with the
value of best validation k-NN accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simvae.data import load_dataset
from simvae.evaluate import split_train_val
from simvae.evaluate.knn import knn_accuracies
from simvae.evaluate.probes import train_probe
from simvae.methods import METHODS
from simvae.run import load_run
from simvae.run_config import build_run_config
from simvae.train import train


def validation_scores(out: Path, data, fit, val, seed: int) -> dict:
    """k-NN (best k) and linear-probe accuracy on the held-out split, neighbours and probe fit on the fit split."""
    reps = load_run(out, data=data).encode(data.train_images)
    fx, fy, vx, vy = reps[fit], data.train_labels[fit], reps[val], data.train_labels[val]
    knn = float(knn_accuracies(fx, fy, vx, vy, 15, len(data.classes)).max())
    mean, std = fx.mean(0), fx.std(0) + 1e-8
    sub_fit, sub_val = split_train_val(len(fx), 5000, seed)  # the probe's early stopping uses part of the fit split
    lin = train_probe("linear", (fx[sub_fit] - mean) / std, fy[sub_fit], (fx[sub_val] - mean) / std, fy[sub_val],
                      (vx - mean) / std, vy, len(data.classes), max_epochs=50, patience=5, seed=seed)
    return {"val_knn_acc": knn, "val_linear_acc": lin["linear_acc"]}


def _value(text: str) -> float | str:
    """A --values item: a number where it reads as one (3e-4), else the word itself (bf16)."""
    try:
        return float(text)
    except ValueError:
        return text


def _label(value: float | str) -> str:
    return f"{value:g}" if isinstance(value, float) else value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True, choices=sorted(METHODS))
    ap.add_argument("--param", required=True, help="SECTION.KEY of the config, e.g. method.beta or train.lr")
    ap.add_argument("--values", nargs="+", type=_value, required=True, help="numbers, or words (e.g. fp32 bf16)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--network", choices=["mlp", "conv"], default=None, help="default: the data set's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-subset", type=int, default=None, help="train on the first N images of the fit split only")
    ap.add_argument("--views-per-step", type=int, default=None, help="default: the paper's 128")
    ap.add_argument("--out-dir", default=None, help="default runs/ablation-METHOD-KEY")
    args = ap.parse_args()
    section, _, key = args.param.partition(".")
    if section not in ("train", "method") or not key:
        ap.error(f"--param must be train.KEY or method.KEY, got {args.param!r}")
    out_dir = Path(args.out_dir or f"runs/ablation-{args.method}-{key}")

    data = load_dataset(args.dataset, args.data_dir)
    fit, val = split_train_val(len(data.train_images), 10000, args.seed)
    # Train on the fit split only: the validation images are never seen in training.
    import dataclasses

    train_idx = fit if args.train_subset is None else fit[:args.train_subset]
    fit_data = dataclasses.replace(data, train_images=data.train_images[train_idx], train_labels=data.train_labels[train_idx])
    results = {}
    for value in args.values:
        values = {"train": {"dataset": args.dataset, "data_dir": args.data_dir, "network": args.network,
                            "method": args.method, "epochs": args.epochs, "seed": args.seed,
                            **({"views_per_step": args.views_per_step} if args.views_per_step else {})},
                  "method": {}}
        values[section][key] = value
        run = build_run_config(values)  # strict: an unknown key is refused with a suggestion
        out = out_dir / f"{key}-{_label(value)}"
        train(run, out, overwrite=True, data=fit_data, progress=True)
        results[value] = validation_scores(out, data, fit, val, args.seed)
        print(f"{key} {_label(value)}: validation k-NN {results[value]['val_knn_acc']:.4f}, "
              f"linear {results[value]['val_linear_acc']:.4f}", flush=True)
    best = max(results, key=lambda v: results[v]["val_knn_acc"])
    print(f"\n{args.method}, {args.dataset}, {args.epochs} epochs on {len(train_idx)} training images, validation split "
          "of 10,000 training images\n")
    print(f"| {key} | validation k-NN | validation linear |\n|---|---|---|")
    for v, r in results.items():
        print(f"| {_label(v)} | {r['val_knn_acc']:.4f} | {r['val_linear_acc']:.4f} |")
    print(json.dumps({"method": args.method, "dataset": args.dataset, "param": args.param, "epochs": args.epochs, "train_images": len(train_idx),
                      "results": {_label(v): r for v, r in results.items()}, "best": best}))


if __name__ == "__main__":
    main()
