"""Evaluation of frozen representations (paper §6, A.7.5), with an honest protocol:
k, probe epochs and other settings are chosen on a validation split held out of the
training set, and test figures are measured once."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..config import parse_config
from ..run_config import EvalConfig
from .gmm import gmm_evaluate
from .knn import knn_evaluate
from .probes import train_probe

METRIC_KEYS = ("knn_acc", "linear_acc", "mlp_acc", "gmm_acc", "gmm_nmi", "gmm_ari")


def split_train_val(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random split of the training indices into (fit, validation)."""
    val_size = min(val_size, max(1, n // 5))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:], perm[:val_size]


def evaluate_representations(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                             n_classes: int, cfg: EvalConfig | None = None, log=None) -> dict:
    """k-NN, linear probe, MLP probe and GMM on representations (float tensors on CPU)."""
    cfg = cfg or EvalConfig()
    log = log or (lambda msg: None)
    fit_idx, val_idx = split_train_val(train_x.shape[0], cfg.val_size, cfg.seed)
    metrics: dict = {"n_train": int(train_x.shape[0]), "n_fit": int(fit_idx.numel()), "n_val": int(val_idx.numel()),
                     "n_test": int(test_x.shape[0])}
    t = time.monotonic()
    metrics.update(knn_evaluate(train_x[fit_idx], train_y[fit_idx], train_x[val_idx], train_y[val_idx],
                                train_x, train_y, test_x, test_y, cfg.knn_max_k, n_classes))
    log(f"k-NN: k={metrics['knn_k']} (chosen on validation) test acc {metrics['knn_acc']:.4f} ({time.monotonic() - t:.1f}s)")
    # Probes see standardised features (statistics of the fit split).
    mean, std = train_x[fit_idx].mean(0), train_x[fit_idx].std(0) + 1e-8
    z_train, z_test = (train_x - mean) / std, (test_x - mean) / std
    for kind in ("linear", "mlp"):
        t = time.monotonic()
        metrics.update(train_probe(kind, z_train[fit_idx], train_y[fit_idx], z_train[val_idx], train_y[val_idx], z_test,
                                   test_y, n_classes, lr=cfg.probe_lr, batch_size=cfg.probe_batch_size,
                                   max_epochs=cfg.probe_max_epochs, patience=cfg.probe_patience, hidden=cfg.probe_hidden,
                                   seed=cfg.seed))
        log(f"{kind} probe: test acc {metrics[f'{kind}_acc']:.4f} (best epoch {metrics[f'{kind}_epochs']}, "
            f"{time.monotonic() - t:.1f}s)")
    t = time.monotonic()
    metrics.update(gmm_evaluate(train_x.numpy().astype(np.float64), train_y.numpy(), test_x.numpy().astype(np.float64),
                                test_y.numpy(), n_classes, cfg.gmm_restarts, cfg.gmm_max_iter, cfg.seed))
    log(f"GMM: acc {metrics['gmm_acc']:.4f} NMI {metrics['gmm_nmi']:.4f} ARI {metrics['gmm_ari']:.4f} "
        f"({time.monotonic() - t:.1f}s)")
    return metrics


def evaluate_run(path: str | Path, overrides: dict | None = None, report: bool = True, quiet: bool = False) -> dict:
    """Evaluate a run folder: writes ``metrics.json`` (and the report, figures) and returns the metrics."""
    from ..run import load_run

    path = Path(path)
    run = load_run(path, device=(overrides or {}).get("device", "auto"))
    values = {**asdict(run.config.eval), **(overrides or {})}
    cfg = parse_config(EvalConfig, values, where="evaluation options")
    torch.manual_seed(cfg.seed)

    def log(msg: str) -> None:
        if not quiet:
            print(f"[evaluate] {msg}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    data = run.data
    if not run.method.generative:
        from .decoder_fit import ensure_decoder  # discriminative methods get a decoder fitted post hoc

        ensure_decoder(run, log=log, max_epochs=cfg.decoder_max_epochs, patience=cfg.decoder_patience)
    train_x, test_x = run.encode(data.train_images), run.encode(data.test_images)
    if not (torch.isfinite(train_x).all() and torch.isfinite(test_x).all()):
        from ..errors import SimvaeError

        raise SimvaeError(f"{path}: the representations contain NaN or inf; the run has diverged")
    log(f"encoded {len(train_x)} training and {len(test_x)} test images ({time.monotonic() - t0:.1f}s)")
    n_classes = len(data.classes)
    metrics = {"method": run.config.train.method, "dataset": run.config.train.dataset}
    metrics.update(evaluate_representations(train_x, data.train_labels, test_x, data.test_labels, n_classes, cfg, log))
    recon = run.reconstruct(data.test_images)
    if recon is not None:
        metrics["recon_mse"] = float((recon - data.test_images.float() / 255).pow(2).mean())
    metrics["eval_seconds"] = round(time.monotonic() - t0, 2)
    metrics["eval_config"] = asdict(cfg)
    tmp = path / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    tmp.replace(path / "metrics.json")
    if report:
        from ..report import write_report

        write_report(run, metrics, test_x, recon, cfg)
        log(f"report written to {path / 'report.md'}")
    return metrics
