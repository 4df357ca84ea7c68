"""Choose beta-VAE's beta on a validation split of Fashion-MNIST (the test set is not touched).

    python benchmarks/beta_ablation.py --epochs 3 --betas 0.25 0.5 1 2 4 8

The paper does not state beta. For each beta, beta-VAE is trained with the shared settings
(MLP nets, latent 10, batch 128, Adam 8e-5, likelihood variance 0.02) on the training split
minus a held-out validation split of 10,000 images, and scored by k-NN accuracy (best k in
1..15) and linear-probe accuracy on that validation split. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


from simvae.data import load_dataset
from simvae.evaluate import split_train_val
from simvae.evaluate.knn import knn_accuracies
from simvae.evaluate.probes import train_probe
from simvae.run import load_run
from simvae.run_config import build_run_config
from simvae.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--betas", nargs="+", type=float, default=[0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default="runs/beta-ablation")
    args = ap.parse_args()

    data = load_dataset("fashion-mnist")
    fit, val = split_train_val(len(data.train_images), 10000, args.seed)
    # Train on the fit split only: the validation images are never seen in training.
    fit_data = type(data)(data.name, data.train_images[fit], data.train_labels[fit], data.test_images, data.test_labels,
                          data.classes, data.source)
    results = {}
    for beta in args.betas:
        out = Path(args.out_dir) / f"beta-{beta:g}"
        run = build_run_config({"train": {"dataset": "fashion-mnist", "method": "beta-vae", "epochs": args.epochs,
                                          "seed": args.seed}, "method": {"beta": beta}})
        train(run, out, overwrite=True, data=fit_data, progress=True)
        r = load_run(out, data=data)
        reps = r.encode(data.train_images)
        # validation split carved out of the fit split's complement; neighbours/probe fit on the fit split
        fx, fy, vx, vy = reps[fit], data.train_labels[fit], reps[val], data.train_labels[val]
        knn = float(knn_accuracies(fx, fy, vx, vy, 15, 10).max())
        mean, std = fx.mean(0), fx.std(0) + 1e-8
        sub_fit, sub_val = split_train_val(len(fx), 5000, args.seed)
        lin = train_probe("linear", (fx[sub_fit] - mean) / std, fy[sub_fit], (fx[sub_val] - mean) / std, fy[sub_val],
                          (vx - mean) / std, vy, 10, max_epochs=50, patience=5, seed=args.seed)
        results[beta] = {"val_knn_acc": knn, "val_linear_acc": lin["linear_acc"]}
        print(f"beta {beta:g}: validation k-NN {knn:.4f}, linear {lin['linear_acc']:.4f}", flush=True)
    best = max(results, key=lambda b: results[b]["val_knn_acc"])
    print("\n| beta | validation k-NN | validation linear |\n|---|---|---|")
    for b, r in results.items():
        print(f"| {b:g} | {r['val_knn_acc']:.4f} | {r['val_linear_acc']:.4f} |")
    print(json.dumps({"epochs": args.epochs, "results": {f"{b:g}": r for b, r in results.items()}, "best_beta": best}))


if __name__ == "__main__":
    main()
