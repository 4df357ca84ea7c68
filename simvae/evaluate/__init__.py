"""Evaluation of frozen representations (paper §6, A.7.5), with an honest protocol: k, probe epochs
and learning rates are chosen on a validation split held out of the training set, and test
figures are measured once.

Every evaluator registers itself in its own module (``registry.register_evaluator``); importing
this package imports them, in the order they run. ``evaluate(run, cfg)`` encodes the images once
and returns an ``Evaluation`` (metrics, representations and what the report needs);
``write_evaluation`` keeps each evaluation under ``RUN_DIR/eval/NAME/`` (NAME from its settings:
``full``, ``quick``, ``quick-skip-generation``, ...), so that an evaluation with other settings never
replaces another, and makes the full protocol the run's headline (``RUN_DIR/metrics.json``).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from ..config import parse_config
from ..errors import SimvaeError
from ..run_config import QUICK_EVAL, EvalConfig
from ..rundir import METRICS as METRICS_FILE
from ..rundir import atomic_write_json
from .protocol import Context, Evaluation, evaluate_representations, evaluate_targets, split_train_val
from .registry import EVALUATORS, METRICS, Target, check_evaluator_names, evaluator_names

# isort: off
from . import knn, probes, gmm, reconstruction, generation, style  # noqa: F401,E402  (registration, in running order)
# isort: on

__all__ = [
    "Context",
    "EVALUATORS",
    "EvalConfig",
    "Evaluation",
    "METRICS",
    "Target",
    "check_evaluator_names",
    "eval_config_for",
    "evaluate",
    "evaluate_representations",
    "evaluate_targets",
    "evaluation_name",
    "evaluator_names",
    "split_train_val",
    "write_evaluation",
]

EVAL_DIR = "eval"
NEUTRAL_EVAL_KEYS = ("device", "map_points")  # settings that change no figure of the evaluation's tables


def eval_config_for(run, overrides: dict | None = None, quick: bool | None = None) -> EvalConfig:
    """The evaluation settings of a loaded run: its config's (a run trained with ``--quick-eval``
    records the quick preset there), switched to the quick preset (``quick`` True) or back to the
    full protocol's defaults (``quick`` False) where asked, then ``overrides``. Raises ConfigError."""
    overrides = dict(overrides or {})
    values = run.config.eval.model_dump()
    if quick is True and not values["quick"]:
        values = {**values, **QUICK_EVAL, "quick": True}
    elif quick is False and values["quick"]:
        values = {**values, **{k: EvalConfig.model_fields[k].default for k in QUICK_EVAL}, "quick": False}
    values.update(overrides)
    cfg = parse_config(EvalConfig, values, where="evaluation options")
    check_evaluator_names(cfg.skip)
    return cfg


def evaluation_name(cfg: EvalConfig) -> str:
    """The folder name of an evaluation under ``RUN_DIR/eval/``: ``full`` (the default protocol) or
    ``quick`` (the quick preset), then ``-skip-A-B`` for evaluators left out, then a short hash of
    any other setting that differs from the preset (``full-3f2a1c``)."""
    preset = EvalConfig(**(QUICK_EVAL if cfg.quick else {}), quick=cfg.quick).model_dump()
    own = cfg.model_dump()
    name = "quick" if cfg.quick else "full"
    if own["skip"]:
        name += "-skip-" + "-".join(sorted(own["skip"]))
    differ = {k: v for k, v in own.items() if k not in ("skip", "quick", *NEUTRAL_EVAL_KEYS) and v != preset[k]}
    if differ:
        name += "-" + hashlib.sha1(json.dumps(differ, sort_keys=True).encode()).hexdigest()[:6]
    return name


def evaluate(run, cfg: EvalConfig, log=None) -> Evaluation:
    """Evaluate a loaded run (``simvae.run.Run``): encode the un-augmented training images (the first
    ``max_train_images``) and test images once, run every registered evaluator not in ``cfg.skip``,
    and return the ``Evaluation`` (metrics with the model's state, ``eval_seconds`` and the settings).
    Raises SimvaeError on non-finite representations (a diverged run)."""
    log = log or (lambda msg: None)
    torch.manual_seed(cfg.seed)
    t0 = time.monotonic()
    data = run.data
    n_train = len(data.train_images) if cfg.max_train_images is None else min(cfg.max_train_images, len(data.train_images))
    train_x, test_x = run.encode(data.train_images[:n_train]), run.encode(data.test_images)
    if not (torch.isfinite(train_x).all() and torch.isfinite(test_x).all()):
        raise SimvaeError(f"{run.path}: the representations contain NaN or inf; the run has diverged")
    log(f"encoded {len(train_x)} training and {len(test_x)} test images ({time.monotonic() - t0:.1f}s)")
    targets = [t.head(n_train) for t in data.targets()]
    ev = Evaluation(train_x, test_x, targets, cfg, name=evaluation_name(cfg))
    ev.metrics = {"method": run.config.train.method, "dataset": run.config.train.dataset, **run.state}
    if data.has_labels:
        ev.metrics.update(evaluate_targets(train_x, test_x, targets, cfg, log, skip=tuple(cfg.skip)))
    else:
        log(
            "the images have no classes (no class folders): k-NN, probes, GMM, generation and style need labels and are "
            "skipped; reconstruction, figures and `simvae embed` work"
        )
    for entry in EVALUATORS.values():
        if entry.kind == "run" and entry.name not in cfg.skip and (data.has_labels or entry.name == "reconstruction"):
            ev.metrics.update(entry.fn(run, ev, cfg, log))
    ev.metrics["eval_seconds"] = round(time.monotonic() - t0, 2)
    ev.metrics["eval_name"] = ev.name
    ev.metrics["eval_config"] = cfg.model_dump()
    return ev


def eval_dir(run_dir: str | Path, name: str) -> Path:
    """``RUN_DIR/eval/NAME`` (created)."""
    path = Path(run_dir) / EVAL_DIR / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _completeness(name: str | None) -> int:
    """How complete an evaluation is, by its name: the full protocol 3, the full protocol with
    evaluators left out or custom settings 2, the quick preset 1, none 0."""
    return 0 if not name else 3 if name == "full" else 2 if name.startswith("full") else 1


def is_headline(run_dir: str | Path, name: str) -> bool:
    """Whether evaluation ``name`` becomes the run's headline: the full protocol always does; another
    one only while the run has no full evaluation and its headline is not more complete (a quick
    evaluation never replaces a full one with evaluators left out)."""
    if name == "full":
        return True
    if (Path(run_dir) / EVAL_DIR / "full" / METRICS_FILE).is_file():
        return False
    try:
        current = json.loads((Path(run_dir) / METRICS_FILE).read_text()).get("eval_name")
    except (OSError, ValueError, AttributeError):
        current = None
    return _completeness(name) >= _completeness(current)


def write_evaluation(run_dir: str | Path, evaluation: Evaluation) -> Path:
    """``RUN_DIR/eval/NAME/metrics.json`` and, for the headline (``is_headline``), ``RUN_DIR/metrics.json``
    (atomically). Returns the evaluation's folder."""
    folder = eval_dir(run_dir, evaluation.name)
    atomic_write_json(folder / METRICS_FILE, evaluation.metrics)
    if is_headline(run_dir, evaluation.name):
        atomic_write_json(Path(run_dir) / METRICS_FILE, evaluation.metrics)
    return folder
