"""Train and evaluate every method at the same budget on one data set (full Fashion-MNIST by
default), then compare.

    python benchmarks/compare_methods.py --epochs N [--methods simvae vae ...] [--seeds 0 1 2]
        [--dataset cifar10 --data-dir DIR] [--network mlp|conv] [--train-subset N]
        [--epochs-for simclr=5 vae=11]

Same encoder, decoder, latent size, augmentations, batch size and epochs for all (each
method's own defaults otherwise: J, temperatures, and the learning rate, the paper's or, where
the paper tunes it per data set (SimCLR), chosen on validation). ``--epochs-for``
gives some methods other epochs, e.g. to match optimiser steps rather than epochs: at 128
views per step an epoch of SimVAE (12 images x 10 views) is 5.3 times as many steps as one of
SimCLR (64 x 2) and 10.7 times one of VAE (128 x 1). Runs land in
``--out-dir``/METHOD-sSEED; the comparison table (markdown, CSV) and the reconstruction
figure in ``--out-dir``/comparison. The last line printed is one JSON object mapping each
method to its metrics.

Run again with the same options, it picks up where it stopped: an evaluated folder is reused,
a trained one is evaluated, an interrupted one (Ctrl-C writes a checkpoint) is resumed from
its checkpoint; a folder holding a different run is refused before anything trains.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from simvae.pipeline import evaluate_and_report as evaluate_run
from simvae.methods import METHODS
from simvae.report.compare import columns_for, compare_runs, comparison_rows, markdown_table, read_runs
from simvae.run_config import build_run_config
from simvae.checkpoint import CHECKPOINT_NAME
from simvae.errors import SimvaeError
from simvae.train import run_state, train

ORDER = ["random", "simclr", "moco", "mocov2", "vicreg", "vae", "beta-vae", "cr-vae", "simvae"]


# keys that do not change the experiment: where the data was found, whether it may be downloaded
NOT_THE_EXPERIMENT = {("train", "data_dir"), ("train", "download")}


def config_differences(out: Path, run) -> list[str]:
    """What differs between the run that folder ``out`` holds (its config.json) and ``run``, as
    "section.key held -> wanted" lines (train keys first); [] when it holds no run or the same one."""
    path = out / "config.json"
    if not path.is_file():
        return []
    held, wanted, missing = json.loads(path.read_text()), run.to_dict(), "(absent)"
    lines = []
    for section in ["train"] + sorted((set(held) | set(wanted)) - {"train"}):
        a, b = held.get(section) or {}, wanted.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if (section, key) not in NOT_THE_EXPERIMENT and a.get(key, missing) != b.get(key, missing):
                lines.append(f"{section}.{key} {a.get(key, missing)} -> {b.get(key, missing)}")
    return lines


def checkpoint_state(out: Path) -> dict | None:
    """``simvae.train.run_state`` of the run in ``out`` (epoch, epoch_step, step, finished), or
    None when it has no usable checkpoint (then the run is trained from the start)."""
    if not (out / "config.json").is_file() or not (out / CHECKPOINT_NAME).is_file():
        return None
    try:
        return run_state(out)
    except SimvaeError as e:
        print(f"[all-methods] {out}: {e}; training it from the start", file=sys.stderr)
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--network", choices=["mlp", "conv"], default=None, help="default: the data set's")
    ap.add_argument("--methods", nargs="+", default=ORDER, choices=sorted(METHODS))
    ap.add_argument("--epochs-for", nargs="+", default=[], metavar="METHOD=N",
                    help="other epochs for some methods (e.g. simclr=5 vae=11); the rest train --epochs")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--out-dir", default="runs/compare-methods")
    ap.add_argument("--train-subset", type=int, default=None)
    ap.add_argument("--gmm-restarts", type=int, default=3)
    ap.add_argument("--probe-max-epochs", type=int, default=200)
    ap.add_argument("--probe-patience", type=int, default=5)
    ap.add_argument("--decoder-max-epochs", type=int, default=80)
    ap.add_argument("--fid-samples", type=int, default=None, help="Inception FID samples (default: 10,000 on a GPU, off on a CPU)")
    ap.add_argument("--gen-samples", type=int, default=10000, help="class-conditional samples (classifier FID)")
    ap.add_argument("--style-max-train-images", type=int, default=10000)
    ap.add_argument("--max-train-images", type=int, default=None, help="evaluate with the first N training images (default: all)")
    ap.add_argument("--val-size", type=int, default=10000)
    ap.add_argument("--beta", type=float, default=None, help="beta of beta-vae (default: the documented choice)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()

    epochs_for = {}
    for item in args.epochs_for:
        method, _, n = item.partition("=")
        if method not in args.methods or method == "random" or not n.isdigit() or int(n) < 1:
            ap.error(f"--epochs-for takes METHOD=N with a method of --methods other than random (it is untrained) "
                     f"and N >= 1, got {item!r}")
        epochs_for[method] = int(n)
    epochs = {m: 1 if m == "random" else epochs_for.get(m, args.epochs) for m in args.methods}
    root = Path(args.out_dir)
    planned = []  # (method, seed, folder, run config): every folder is checked before anything trains
    for method in args.methods:
        for seed in args.seeds:
            out = root / f"{method}-s{seed}"
            method_opts = {"beta": args.beta} if (method == "beta-vae" and args.beta is not None) else {}
            run = build_run_config({
                "train": {"dataset": args.dataset, "data_dir": args.data_dir, "network": args.network, "method": method,
                          "epochs": epochs[method], "seed": seed,
                          "train_subset": args.train_subset},
                "method": method_opts,
                "eval": {"gmm_restarts": args.gmm_restarts, "probe_max_epochs": args.probe_max_epochs,
                         "probe_patience": args.probe_patience, "decoder_max_epochs": args.decoder_max_epochs,
                         "map_points": 1000, "seed": seed, "fid_samples": args.fid_samples,
                         "gen_samples": args.gen_samples, "style_max_train_images": args.style_max_train_images,
                         "max_train_images": args.max_train_images, "val_size": args.val_size}})
            differ = [] if args.overwrite else config_differences(out, run)
            if differ:
                sys.exit(f"{out} holds a different run ({'; '.join(differ[:3])}"
                         f"{f'; +{len(differ) - 3} more' if len(differ) > 3 else ''}); pass --overwrite to replace it "
                         "or choose another --out-dir")
            planned.append((method, seed, out, run))
    run_dirs = []
    for method, seed, out, run in planned:
        t0 = time.monotonic()
        state = None if args.overwrite else checkpoint_state(out)
        if (out / "metrics.json").is_file() and not args.overwrite:
            print(f"[all-methods] {out} already evaluated; reusing it (--overwrite to redo)", file=sys.stderr)
        elif state is not None and state["finished"]:
            print(f"[all-methods] {out} is trained but not evaluated; evaluating it", file=sys.stderr)
            run.save(out / "config.json")  # the same experiment; the data may now be found elsewhere
            evaluate_run(out)
        elif state is not None:
            print(f"[all-methods] {out} was interrupted at epoch {state['epoch']} + {state['epoch_step']} steps "
                  f"(step {state['step']}); resuming it", file=sys.stderr)
            run.save(out / "config.json")
            train(run, out, resume=True, progress=True)
            evaluate_run(out)
        else:
            train(run, out, overwrite=True, progress=True)
            evaluate_run(out)
        m = json.loads((out / "metrics.json").read_text())
        print(f"[all-methods] {method} seed {seed}: k-NN {m['knn_acc']:.4f} MLP {m['mlp_acc']:.4f} "
              f"({time.monotonic() - t0:.0f}s)", file=sys.stderr, flush=True)
        run_dirs.append(out)
    paths = compare_runs(run_dirs, root / "comparison", overwrite=True)
    groups = read_runs(run_dirs)
    columns = columns_for(groups)
    rows = comparison_rows(groups, columns)
    print(markdown_table(rows, args.dataset, columns=columns))
    print("written: " + ", ".join(map(str, paths)))
    keys = [k for k, _ in columns]  # the one metric registry, and the targets the runs have
    print(json.dumps({r["method"]: {**{k: r[k] for k in keys if k in r}, "n_runs": r["n_runs"],
                                    "epochs": epochs.get(r["method"])} for r in rows}))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:  # TrainingInterrupted: the step's checkpoint is written
        where = f" (checkpoint {e.checkpoint})" if getattr(e, "checkpoint", None) else ""
        sys.exit(f"[all-methods] interrupted{where}; run the same command again to resume")
    except SimvaeError as e:
        sys.exit(f"[all-methods] {e}")
