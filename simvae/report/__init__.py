"""The run report: report.md beside its figures, in the run folder."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from .figures import latent_map, loss_curve, reconstruction_grid

N_RECON = 16


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_report(run, metrics: dict, test_reps: torch.Tensor, recon: torch.Tensor | None, eval_cfg) -> Path:
    path: Path = run.path
    data = run.data
    cfg = run.config
    summary = run.train_summary()
    figs = []
    if recon is not None:
        reconstruction_grid(data.test_images[:N_RECON], {cfg.train.method: recon[:N_RECON]}, path / "reconstructions.png",
                            title="test images (top) and their reconstructions")
        figs.append(("Test images and reconstructions", "reconstructions.png"))
    if eval_cfg.map_points > 0:
        latent_map(test_reps, data.test_labels, data.classes, path / "latent_map.png", eval_cfg.map_points, eval_cfg.seed,
                   title=f"{cfg.train.method} on {cfg.train.dataset}: test representations (t-SNE)")
        figs.append(("Test representations, coloured by class", "latent_map.png"))
    if loss_curve(path / "metrics.jsonl", path / "loss_curve.png"):
        figs.append(("Training loss", "loss_curve.png"))
    lines = [f"# simvae run: {cfg.train.method} on {cfg.train.dataset}", ""]
    if summary:
        lines += ["## Training", "",
                  f"- epochs: {summary.get('epochs')} ({summary.get('steps')} steps of {cfg.train.batch_size} images "
                  f"x {summary.get('n_views')} views), {summary.get('train_images')} training images",
                  f"- wall time: {summary.get('train_seconds', 0):.1f} s; throughput "
                  f"{summary.get('train_images_per_s', 0):.0f} images/s = {summary.get('train_views_per_s', 0):.0f} views/s",
                  f"- device: {summary.get('device')}, processes: {summary.get('processes')}, bf16: {summary.get('bf16')}, "
                  f"torch {summary.get('torch')}", f"- data: {summary.get('data_source')}", ""]
    lines += ["## Representation quality (test set)", "",
              f"Settings chosen on a validation split of {metrics.get('n_val')} training images; test measured once.", "",
              "| metric | value |", "|---|---|"]
    rows = [("k-NN accuracy", "knn_acc"), ("k (chosen on validation)", "knn_k"), ("linear probe accuracy", "linear_acc"),
            ("MLP probe accuracy", "mlp_acc"), ("GMM accuracy", "gmm_acc"), ("GMM NMI", "gmm_nmi"),
            ("GMM ARI", "gmm_ari"), ("reconstruction MSE", "recon_mse"),
            ("k-NN accuracy, best k on test (paper protocol)", "knn_acc_best_k_on_test"),
            ("best k on test (paper protocol)", "knn_best_k_on_test")]
    for name, key in rows:
        if key in metrics:
            lines.append(f"| {name} | {_fmt(metrics[key])} |")
    lines += ["", f"Evaluation took {metrics.get('eval_seconds', 0):.1f} s.", ""]
    for title, fname in figs:
        lines += [f"## {title}", "", f"![{title}]({fname})", ""]
    lines += ["## Configuration", "", "```json", json.dumps(cfg.to_dict(), indent=2), "```",
              "", "Evaluation settings:", "", "```json", json.dumps(asdict(eval_cfg), indent=2), "```", ""]
    out = path / "report.md"
    out.write_text("\n".join(lines))
    return out
