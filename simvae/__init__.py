"""simvae: generative self-supervised representation learning (SimVAE), fair baselines and evaluation.

Python API::

    import simvae
    summary = simvae.train_run({"train": {"dataset": "fashion-mnist", "epochs": 2}}, "runs/demo")
    metrics = simvae.evaluate_run("runs/demo")
    run = simvae.load_run("runs/demo")
    z = run.encode(run.data.test_images)        # posterior means of un-augmented images
"""

from __future__ import annotations

from pathlib import Path

from ._version import __version__
__all__ = ["train_run", "evaluate_run", "load_run", "__version__"]
# (named *_run so that the submodules simvae.train and simvae.evaluate do not shadow them)


def train_run(config: dict, out: str | Path, resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    """Train a run described by ``{"train": {...}, "method": {...}, "eval": {...}}`` into ``out``."""
    from .run_config import build_run_config
    from .run_config import load_run_config
    from .train import train as _train

    run = load_run_config(out) if resume else build_run_config(config)
    return _train(run, out, resume=resume, overwrite=overwrite, progress=progress)


def evaluate_run(run_dir: str | Path, quick: bool = False, quiet: bool = False, **overrides) -> dict:
    """Evaluate a run folder (k-NN, probes, GMM; a post-hoc decoder for discriminative methods),
    write metrics.json and the report, return the metrics. ``overrides``: evaluation settings
    (e.g. ``probe_max_epochs=50``); ``quick``: the quick preset for short runs."""
    from .pipeline import evaluate_and_report

    return evaluate_and_report(run_dir, overrides=overrides, quick=quick, quiet=quiet)


def load_run(run_dir: str | Path, device: str = "auto"):
    """A trained run: ``.encode(images)``, ``.reconstruct(images)``, ``.config``, ``.data``."""
    from .run import load_run as _load

    return _load(run_dir, device=device)
