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

__version__ = "0.1.0"
__all__ = ["train_run", "evaluate_run", "load_run", "__version__"]
# (named *_run so that the submodules simvae.train and simvae.evaluate do not shadow them)


def train_run(config: dict, out: str | Path, resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    """Train a run described by ``{"train": {...}, "method": {...}, "eval": {...}}`` into ``out``."""
    from .run_config import build_run_config
    from .train import load_run_config, train as _train

    run = load_run_config(out) if resume else build_run_config(config)
    return _train(run, out, resume=resume, overwrite=overwrite, progress=progress)


def evaluate_run(run_dir: str | Path, **overrides) -> dict:
    """Evaluate a run folder (k-NN, probes, GMM), write metrics.json and the report, return the metrics."""
    from .evaluate import evaluate_run as _evaluate

    return _evaluate(run_dir, overrides=overrides)


def load_run(run_dir: str | Path, device: str = "auto"):
    """A trained run: ``.encode(images)``, ``.reconstruct(images)``, ``.config``, ``.data``."""
    from .run import load_run as _load

    return _load(run_dir, device=device)
