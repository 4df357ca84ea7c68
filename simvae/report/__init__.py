"""The run report: report.md beside its figures, in an evaluation's folder (``RUN_DIR/eval/NAME/``),
published at the top of the run folder for its headline evaluation.

``build_run_report`` decides what to show (a ``model.Report``); ``to_markdown`` writes it. Figures
are drawn from the ``Evaluation`` (its representations, reconstructions and samples): nothing is
encoded again, and a figure the evaluation did not make (samples of a skipped generation) is not
shown. Fractions are shown in percent throughout (reports, ``compare``, README).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..evaluate.registry import METRICS, format_value, metric, report_keys
from ..rundir import METRICS_LOG, REPORT, RUN_FILES, STEPS_LOG, atomic_write
from .figures import augmentation_grid, latent_map, loss_curve, reconstruction_grid, sample_grid, traversal_grid
from .model import Code, Figure, Note, Report, Section, Table, to_markdown

N_RECON = 16


def state_note(metrics: dict) -> Note | None:
    """A warning when the evaluated model is not the end of its planned training."""
    if metrics.get("finished", True):
        return None
    step = f" + {metrics['model_epoch_step']} steps" if metrics.get("model_epoch_step") else ""
    return Note(
        f"this run did not finish: the model evaluated is from epoch {metrics.get('model_epoch')}{step} "
        f"(step {metrics.get('model_step')}) of {metrics.get('epochs_planned')} planned epochs",
        "warning",
    )


def build_run_report(run, metrics: dict, eval_cfg, figures: list[tuple[str, str]]) -> Report:
    cfg = run.config
    summary = run.train_summary()
    quick = " (quick evaluation)" if eval_cfg.quick else ""
    report = Report(f"simvae run: {cfg.train.method} on {cfg.train.dataset}{quick}")
    note = state_note(metrics)
    if note:
        report.notes.append(note)
    if eval_cfg.quick or eval_cfg.skip:
        report.notes.append(
            Note(
                f"evaluation '{metrics.get('eval_name', '?')}': "
                + (
                    "the quick preset (fewer training images, short probes, one GMM restart); its figures "
                    "are not those of the full protocol"
                    if eval_cfg.quick
                    else "the full protocol"
                )
                + (f"; evaluators left out: {', '.join(eval_cfg.skip)}" if eval_cfg.skip else ""),
                "warning" if eval_cfg.quick else "info",
            )
        )
    if summary:
        rows = [
            [
                "epochs",
                f"{metrics.get('model_epoch', summary.get('epochs'))} of {summary.get('epochs_planned', cfg.train.epochs)}"
                f" ({metrics.get('model_step', summary.get('steps'))} steps)",
            ],
            [
                "step",
                f"{summary.get('images_per_step')} images x {summary.get('n_views')} views = "
                f"{summary.get('views_per_step')} samples per step",
            ],
            ["training images", str(summary.get("train_images"))],
            ["wall time", f"{summary.get('train_seconds', 0):.1f} s, {summary.get('train_views_per_s', 0):.0f} views/s"],
            [
                "device",
                f"{summary.get('device')} x {summary.get('processes')} process{'' if summary.get('processes') == 1 else 'es'}, {summary.get('threads', '?')} "
                f"threads, precision {summary.get('precision', 'fp32')}",
            ],
            ["host", f"{summary.get('host', '?')}"],
            [
                "simvae",
                f"{summary.get('simvae_version', '?')} (commit {summary.get('simvae_commit') or 'unknown'}), "
                f"torch {summary.get('torch')}, {summary.get('date', '')}",
            ],
            ["data", str(summary.get("data_source"))],
        ]
        report.sections.append(Section("Training", [Table(["", ""], rows)]))
    rows = [[metric(k).label, format_value(k, metrics[k])] for k in report_keys() if k in metrics]
    blocks = [
        Table(
            ["metric", "test"],
            rows,
            f"Settings chosen on a validation split of {metrics.get('n_val')} training images; test measured once. Accuracies in percent.",
        )
    ]
    for kind in ("linear", "mlp"):
        if metrics.get(f"{kind}_capped"):
            blocks.append(
                Note(
                    f"the {kind} probe stopped at its epoch cap ({metrics.get(f'{kind}_epochs_run')}) while its "
                    "patience had not run out (its validation loss was still improving recently): its figure may be low; raise --probe-max-epochs",
                    "warning",
                )
            )
    if "posthoc_decoder_val_mse" in metrics:
        blocks.append(
            Note(
                f"{cfg.train.method} has no decoder of its own: reconstructions come from a decoder fitted "
                f"afterwards on its frozen representations (validation MSE "
                f"{metrics['posthoc_decoder_val_mse']:.4f} after {metrics.get('posthoc_decoder_epochs')} epochs"
                + (", stopped at its epoch cap" if metrics.get("posthoc_decoder_capped") else "")
                + ")."
            )
        )
    others = sorted({k.rpartition("/")[0] for k in metrics if "/" in k and k.rpartition("/")[2] in METRICS})
    for target in others:
        trows = [
            [metric(f"{target}/{k}").label, format_value(k, metrics[f"{target}/{k}"])] for k in report_keys() if f"{target}/{k}" in metrics
        ]
        blocks.append(Table(["metric", "test"], trows, f"Target {target}"))
    blocks.append(Note(f"Evaluation took {metrics.get('eval_seconds', 0):.1f} s."))
    report.sections.append(Section("Representation quality (test set)", blocks))
    for title, fname in figures:
        report.sections.append(Section(title, [Figure(fname, title)]))
    report.sections.append(
        Section(
            "Configuration",
            [
                Code(json.dumps(cfg.to_dict(), indent=2), "json"),
                Note("Evaluation settings:"),
                Code(json.dumps(eval_cfg.model_dump(), indent=2), "json"),
            ],
        )
    )
    return report


N_AUG_IMAGES, N_AUG_VIEWS = 4, 6
TRAVERSAL_STEPS = (-2.0, -1.0, 0.0, 1.0, 2.0)
SAMPLES_PER_CLASS = 10


def augmented_views(
    data, spec, seed: int = 0, n_images: int = N_AUG_IMAGES, n_views: int = N_AUG_VIEWS
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_images`` test images, float [n, C, H, W] in [0, 1], and ``n_views`` views of
    each from the augmentation ``spec`` (an ``AugmentSpec``; seeded), [n, J, C, H, W]."""
    from ..augment import to_float
    from ..augment.ops import pipeline_for

    images = to_float(data.test_images[:n_images])
    pipeline = pipeline_for(spec, data.binarized)
    params = pipeline.make_params(images.shape[0] * n_views, tuple(images.shape[-2:]), torch.Generator().manual_seed(seed), "cpu")
    return images, pipeline(images, params)


def reconstruct_views(run, images: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """``run``'s reconstructions of each image and of each of its views: [n, 1 + J, C, H, W]."""
    flat = torch.cat([images[:, None], views], 1)
    return run.reconstruct(flat.flatten(0, 1)).view(flat.shape)


def _figure(figs: list, title: str, fname: str, draw) -> None:
    """Draw one figure; a figure that cannot be drawn (degenerate representations, a tiny data set)
    is left out with a note in the report instead of stopping it."""
    try:
        draw()
        figs.append((title, fname))
    except Exception as e:  # noqa: BLE001 - a report is always written; the note says what is missing
        figs.append((title, f"!{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else 'failed'}"))


def run_figures(run, evaluation, folder: Path) -> list[tuple[str, str]]:
    """The figures of one evaluation, drawn into ``folder``: reconstructions, class-conditional samples
    (paper Fig. 10; from the generation evaluator's samples), augmented views and their
    reconstructions, a latent traversal, the t-SNE map and the loss curve. Returns (title, file) of
    each; a file starting with '!' is a figure that could not be drawn (the reason follows)."""
    from ..evaluate.generation import latent_traversal

    data, cfg, eval_cfg = run.data, run.config, evaluation.cfg
    method = cfg.train.method
    who = method if run.method.generative else f"{method} (post-hoc decoder)"
    figs: list[tuple[str, str]] = []
    recon = evaluation.artefacts.get("test_recon")
    if recon is not None:
        _figure(
            figs,
            "Test images and reconstructions",
            "reconstructions.png",
            lambda: reconstruction_grid(
                data.test_images[:N_RECON],
                {who: recon[:N_RECON]},
                folder / "reconstructions.png",
                title="test images (top) and their reconstructions" + ("" if run.method.generative else " by a decoder fitted afterwards"),
            ),
        )
    samples = evaluation.artefacts.get("samples")
    if samples is not None:
        _figure(
            figs,
            "Class-conditional samples",
            "samples.png",
            lambda: sample_grid(
                samples.float() / 255,
                evaluation.artefacts["sample_labels"],
                data.classes,
                folder / "samples.png",
                SAMPLES_PER_CLASS,
                title=f"{who}: samples from one Gaussian per class fitted to the training representations",
            ),
        )
    if run.method.has_decoder:

        def augmentations():
            images, views = augmented_views(data, run.augment_spec, eval_cfg.seed)
            augmentation_grid(
                images,
                views,
                {who: reconstruct_views(run, images, views)},
                folder / "augmentations.png",
                title="test images, augmented views, and their reconstructions (row below each)",
            )

        _figure(figs, "What survives an augmentation: views and their reconstructions", "augmentations.png", augmentations)

        def traversal():
            frames = latent_traversal(run.decode, evaluation.train_x[:10000], 4, TRAVERSAL_STEPS)
            traversal_grid(
                frames,
                list(TRAVERSAL_STEPS),
                folder / "traversal.png",
                title=f"{who}: the mean representation moved along its top principal directions",
            )

        _figure(figs, "Latent traversal along the top principal directions", "traversal.png", traversal)
    if eval_cfg.map_points > 0:
        _figure(
            figs,
            "Test representations, coloured by class",
            "latent_map.png",
            lambda: latent_map(
                evaluation.test_x,
                data.test_labels,
                data.classes if data.has_labels else ["images"],
                folder / "latent_map.png",
                eval_cfg.map_points,
                eval_cfg.seed,
                title=f"{method} on {cfg.train.dataset}: test representations (t-SNE)",
            ),
        )
    loss_name = "negative ELBO_SSL" if method == "simvae" else f"{method} loss"

    def curve():
        if not loss_curve(run.path / STEPS_LOG, run.path / METRICS_LOG, folder / "loss_curve.png", loss_name):
            raise ValueError("no training log")

    _figure(figs, "Training loss", "loss_curve.png", curve)
    return figs


def write_report(run, evaluation, folder: str | Path) -> Path:
    """Figures and report.md of ``evaluation`` (of the loaded run ``run``) in ``folder``; returns the
    report's path. Figures that cannot be drawn are listed in the report with the reason."""
    folder = Path(folder)
    figs = run_figures(run, evaluation, folder)
    drawn = [(t, f) for t, f in figs if not f.startswith("!")]
    report = build_run_report(run, evaluation.metrics, evaluation.cfg, drawn)
    for title, f in figs:
        if f.startswith("!"):
            report.notes.append(Note(f"figure '{title}' could not be drawn ({f[1:]})", "warning"))
    return atomic_write(folder / REPORT, to_markdown(report))


def publish_headline(folder: str | Path, run_dir: str | Path) -> None:
    """Make the evaluation in ``folder`` the run's headline: copy its report.md and figures to the
    top of ``run_dir`` and remove top-level figures it did not make (no stale figure stays)."""
    folder, run_dir = Path(folder), Path(run_dir)
    for name, f in RUN_FILES.items():
        if f.stage != "report":
            continue
        if (folder / name).is_file():
            shutil.copyfile(folder / name, run_dir / f".{name}.copy")
            (run_dir / f".{name}.copy").replace(run_dir / name)
        elif (run_dir / name).is_file():
            (run_dir / name).unlink()


__all__ = ["write_report", "build_run_report", "publish_headline", "run_figures", "state_note"]
