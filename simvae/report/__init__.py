"""The run report: report.md beside its figures, in the run folder.

``build_run_report`` decides what to show (a ``model.Report``); ``to_markdown`` writes it.
Fractions are shown in percent throughout (reports, ``compare``, README).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..evaluate.registry import METRICS, format_value, metric, report_keys
from .figures import augmentation_grid, latent_map, loss_curve, reconstruction_grid, sample_grid, traversal_grid
from .model import Code, Figure, Note, Report, Section, Table, to_markdown

N_RECON = 16


def state_note(metrics: dict) -> Note | None:
    """A warning when the evaluated model is not the end of its planned training."""
    if metrics.get("finished", True):
        return None
    step = f" + {metrics['model_epoch_step']} steps" if metrics.get("model_epoch_step") else ""
    return Note(f"this run did not finish: the model evaluated is from epoch {metrics.get('model_epoch')}{step} "
                f"(step {metrics.get('model_step')}) of {metrics.get('epochs_planned')} planned epochs", "warning")


def build_run_report(run, metrics: dict, eval_cfg, figures: list[tuple[str, str]]) -> Report:
    cfg = run.config
    summary = run.train_summary()
    report = Report(f"simvae run: {cfg.train.method} on {cfg.train.dataset}")
    note = state_note(metrics)
    if note:
        report.notes.append(note)
    if summary:
        rows = [["epochs", f"{metrics.get('model_epoch', summary.get('epochs'))} of {summary.get('epochs_planned', cfg.train.epochs)}"
                 f" ({metrics.get('model_step', summary.get('steps'))} steps)"],
                ["step", f"{summary.get('images_per_step')} images x {summary.get('n_views')} views = "
                         f"{summary.get('views_per_step')} samples per step"],
                ["training images", str(summary.get("train_images"))],
                ["wall time", f"{summary.get('train_seconds', 0):.1f} s, {summary.get('train_views_per_s', 0):.0f} views/s"],
                ["device", f"{summary.get('device')} x {summary.get('processes')} process(es), {summary.get('threads', '?')} "
                           f"threads, precision {summary.get('precision', 'fp32')}"],
                ["host", f"{summary.get('host', '?')}"],
                ["simvae", f"{summary.get('simvae_version', '?')} (commit {summary.get('simvae_commit') or 'unknown'}), "
                           f"torch {summary.get('torch')}, {summary.get('date', '')}"],
                ["data", str(summary.get("data_source"))]]
        report.sections.append(Section("Training", [Table(["", ""], rows)]))
    rows = [[metric(k).label, format_value(k, metrics[k])] for k in report_keys() if k in metrics]
    blocks = [Table(["metric", "test"], rows,
                    f"Settings chosen on a validation split of {metrics.get('n_val')} training images; test measured once. "
                    "Accuracies in percent.")]
    for kind in ("linear", "mlp"):
        if metrics.get(f"{kind}_capped"):
            blocks.append(Note(f"the {kind} probe stopped at its epoch cap ({metrics.get(f'{kind}_epochs_run')}) while its "
                               "patience had not run out (its validation loss was still improving recently): its figure may be low; raise --probe-max-epochs", "warning"))
    if "posthoc_decoder_val_mse" in metrics:
        blocks.append(Note(f"{cfg.train.method} has no decoder of its own: reconstructions come from a decoder fitted "
                           f"afterwards on its frozen representations (validation MSE "
                           f"{metrics['posthoc_decoder_val_mse']:.4f} after {metrics.get('posthoc_decoder_epochs')} epochs"
                           + (", stopped at its epoch cap" if metrics.get("posthoc_decoder_capped") else "") + ")."))
    others = sorted({k.rpartition("/")[0] for k in metrics if "/" in k and k.rpartition("/")[2] in METRICS})
    for target in others:
        trows = [[metric(f"{target}/{k}").label, format_value(k, metrics[f"{target}/{k}"])]
                 for k in report_keys() if f"{target}/{k}" in metrics]
        blocks.append(Table(["metric", "test"], trows, f"Target {target}"))
    blocks.append(Note(f"Evaluation took {metrics.get('eval_seconds', 0):.1f} s."))
    report.sections.append(Section("Representation quality (test set)", blocks))
    for title, fname in figures:
        report.sections.append(Section(title, [Figure(fname, title)]))
    report.sections.append(Section("Configuration", [Code(json.dumps(cfg.to_dict(), indent=2), "json"),
                                                     Note("Evaluation settings:"),
                                                     Code(json.dumps(eval_cfg.model_dump(), indent=2), "json")]))
    return report


N_AUG_IMAGES, N_AUG_VIEWS = 4, 6
TRAVERSAL_STEPS = (-2.0, -1.0, 0.0, 1.0, 2.0)


def augmented_views(data, dataset: str, seed: int = 0, n_images: int = N_AUG_IMAGES, n_views: int = N_AUG_VIEWS
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_images`` test images, float [n, C, H, W] in [0, 1], and ``n_views`` views of
    each from the data set's training augmentation (seeded), [n, J, C, H, W]."""
    from ..augment import to_float
    from ..augment.ops import pipeline_for
    from ..presets import preset

    images = to_float(data.test_images[:n_images])
    pipeline = pipeline_for(preset(dataset).augment, data.binarized)
    params = pipeline.make_params(images.shape[0] * n_views, tuple(images.shape[-2:]),
                                  torch.Generator().manual_seed(seed), "cpu")
    return images, pipeline(images, params)


def reconstruct_views(run, images: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """``run``'s reconstructions of each image and of each of its views: [n, 1 + J, C, H, W]."""
    flat = torch.cat([images[:, None], views], 1)
    return run.reconstruct(flat.flatten(0, 1)).view(flat.shape)


def generation_figures(run, eval_cfg) -> list[tuple[str, str]]:
    """samples.png (class-conditional samples, paper Fig. 10), augmentations.png (test images, their
    augmented views and the method's reconstructions of each: what survives a flip or a crop) and
    traversal.png (decoded steps along the representation's top principal directions)."""
    from ..evaluate.generation import class_conditional_samples, latent_traversal

    path, data, method = run.path, run.data, run.config.train.method
    who = method if run.method.generative else f"{method} (post-hoc decoder)"
    n = min(10000, len(data.train_images))
    z = run.encode(data.train_images[:n])
    figs = []
    try:
        samples, labels = class_conditional_samples(run.decode, z, data.train_labels[:n], len(data.classes), 10,
                                                    eval_cfg.seed)
        sample_grid(samples, labels, data.classes, path / "samples.png",
                    title=f"{who}: samples from one Gaussian per class fitted to the training representations")
        figs.append(("Class-conditional samples", "samples.png"))
    except ValueError:  # a class with fewer than 2 training images (a tiny subset): no samples to show
        pass
    images, views = augmented_views(data, run.config.train.dataset, eval_cfg.seed)
    augmentation_grid(images, views, {f"{who}": reconstruct_views(run, images, views)}, path / "augmentations.png",
                      title="test images, augmented views, and their reconstructions (row below each)")
    figs.append(("What survives an augmentation: views and their reconstructions", "augmentations.png"))
    frames = latent_traversal(run.decode, z, 4, TRAVERSAL_STEPS)
    traversal_grid(frames, list(TRAVERSAL_STEPS), path / "traversal.png",
                   title=f"{who}: the mean representation moved along its top principal directions")
    figs.append(("Latent traversal along the top principal directions", "traversal.png"))
    return figs


def write_report(run, metrics: dict, eval_cfg) -> Path:
    """Figures and report.md in the run folder of ``run`` (a loaded ``simvae.run.Run``)."""
    path: Path = run.path
    data = run.data
    cfg = run.config
    figs = []
    images = data.test_images[:N_RECON]
    recon = run.reconstruct(images)
    if recon is not None:
        label = cfg.train.method if run.method.generative else f"{cfg.train.method} (post-hoc decoder)"
        reconstruction_grid(images, {label: recon}, path / "reconstructions.png",
                            title="test images (top) and their reconstructions"
                                  + ("" if run.method.generative else " by a decoder fitted afterwards"))
        figs.append(("Test images and reconstructions", "reconstructions.png"))
    if run.method.has_decoder:
        figs += generation_figures(run, eval_cfg)
    if eval_cfg.map_points > 0:
        reps = run.encode(data.test_images)
        latent_map(reps, data.test_labels, data.classes, path / "latent_map.png", eval_cfg.map_points, eval_cfg.seed,
                   title=f"{cfg.train.method} on {cfg.train.dataset}: test representations (t-SNE)")
        figs.append(("Test representations, coloured by class", "latent_map.png"))
    loss_name = "negative ELBO_SSL" if cfg.train.method == "simvae" else f"{cfg.train.method} loss"
    if loss_curve(path / "steps.jsonl", path / "metrics.jsonl", path / "loss_curve.png", loss_name):
        figs.append(("Training loss", "loss_curve.png"))
    out = path / "report.md"
    tmp = out.with_name("report.md.tmp")
    tmp.write_text(to_markdown(build_run_report(run, metrics, eval_cfg, figs)))
    tmp.replace(out)
    return out


__all__ = ["write_report", "build_run_report", "state_note", "torch"]
