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


def train_run(config: dict | None, out: str | Path, resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    """Train a run described by ``{"train": {...}, "method": {...}, "eval": {...}}`` into ``out`` and
    return its training summary; the same rules as ``simvae train``: strict, typed options, a method
    option refused for a method that does not take it, evaluator names checked before any work. With
    ``resume``, ``config`` may hold only what ``--resume`` accepts (``train.epochs`` to extend, the
    options that do not change the experiment, evaluation options); None continues as it was.
    Raises SimvaeError (ConfigError, DataError, RunDirError, DivergenceError)."""
    from .pipeline import check_evaluators
    from .run_config import assemble_run_config
    from .train import resume_run_config
    from .train import train as _train

    if resume:
        config = dict(config or {})
        run, message = resume_run_config(out, config.get("train"), config.get("method"), config.get("eval"))
        if run is None:
            from .errors import RunDirError

            raise RunDirError(message)
    else:
        run = assemble_run_config(config, where="config")
    check_evaluators(run.eval)
    return _train(run, out, resume=resume, overwrite=overwrite, progress=progress)


def evaluate_run(run_dir: str | Path, quick: bool = False, quiet: bool = False, **overrides) -> dict:
    """Evaluate a run folder (k-NN, probes, GMM; a post-hoc decoder for discriminative methods),
    write metrics.json and the report, return the metrics. ``overrides``: evaluation settings
    (e.g. ``probe_max_epochs=50``); ``quick``: the quick preset for short runs."""
    from .pipeline import evaluate_and_report

    return evaluate_and_report(run_dir, overrides=overrides, quick=True if quick else None, quiet=quiet)


def load_run(run_dir: str | Path, device: str = "auto"):
    """A trained run: ``.encode(images)``, ``.reconstruct(images)``, ``.config``, ``.data``."""
    from .run import load_run as _load

    return _load(run_dir, device=device)
