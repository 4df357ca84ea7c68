"""The one list of metrics and evaluators: every table, report and benchmark reads it.

A *metric* is a key in ``metrics.json`` with a label, a kind (how it is shown) and a
direction. An *evaluator* takes representations and one *target* (the labels one question
asks of each image: the class, a style label, an attribute; -1 where an image has none) and
returns metrics. Keys of the content target are bare (``knn_acc``); those of every other
target are prefixed by the target's name (``hair_colour/mlp_acc``, ``style/flip/knn_acc``).

A new evaluator is one module with a function decorated by ``register_evaluator`` (its name, its
kind and the metrics it writes) plus one import line in ``simvae/evaluate/__init__.py``; nothing
else changes (``--skip``, reports and tables read this registry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

from ..data.targets import Target

Kind = Literal["fraction", "number", "integer", "seconds", "flag"]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    kind: Kind = "fraction"  # fractions are stored in [0, 1] and shown as percent
    higher_is_better: bool | None = True
    headline: bool = False  # a column of the comparison table
    note: str = ""
    in_report: bool = True  # a row of the run report's metrics table


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    METRICS[metric.key] = metric
    return metric


for _m in (  # metrics of the evaluation as a whole; each evaluator registers its own with it
    Metric("chance", "chance (most frequent class)", higher_is_better=None),
    Metric("eval_seconds", "evaluation time", "seconds", higher_is_better=None, in_report=False),
):
    register_metric(_m)


def metric(key: str) -> Metric:
    """The metric of ``key``, target prefixes included (``attr/Smiling/mlp_acc`` -> MLP on attr/Smiling).
    Raises KeyError for an unregistered key."""
    if key in METRICS:
        return METRICS[key]
    target, _, base = key.rpartition("/")
    m = METRICS[base]
    return Metric(key, f"{m.label} ({target})", m.kind, m.higher_is_better, False, m.note, m.in_report)


def format_value(key: str, value, se: float | None = None) -> str:
    """A metric's value as shown in reports and tables: fractions in percent with one decimal
    (``82.2``, or ``82.2 ± 0.3`` with a standard error), others as they are."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    try:
        kind = metric(key).kind
    except KeyError:
        kind = "number"
    if kind == "fraction":
        return f"{100 * value:.1f}" + (f" ± {100 * se:.1f}" if se is not None else "")
    if kind == "integer":
        return str(int(value))
    if kind == "seconds":
        return f"{value:.1f} s"
    if kind == "flag":
        return "yes" if value else "no"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text + (f" ± {se:.2g}" if se is not None else "")


def headline_keys() -> list[str]:
    """The keys of the comparison table's columns (and of the one-line summary)."""
    return [k for k, m in METRICS.items() if m.headline]


def report_keys() -> list[str]:
    """The keys of the run report's metrics table, in registry order."""
    return [k for k, m in METRICS.items() if m.in_report]


# An evaluator, by its ``kind`` (its signature):
#   "target": fn(context, target, log) -> metrics with bare keys, called once per target it applies to
#             (prefixed by the caller: ``style/flip/knn_acc``);
#   "joint":  fn(context, targets, log) -> metrics with prefixed keys, one call for all its targets
#             (the probes train every target's heads in one loop);
#   "run":    fn(run, evaluation, cfg, log) -> metrics: it needs more than the representations of the
#             un-augmented images (the decoder, the data, new views): reconstruction, generation, style.
# ``context`` (``protocol.Context``) carries what evaluators of one representation share (the
# fit/validation split, standardised features), ``evaluation`` (``protocol.Evaluation``) the
# representations, targets and what run evaluators hand on to the report.
Evaluator = Callable[..., dict]


@dataclass(frozen=True)
class EvaluatorEntry:
    name: str
    fn: Evaluator
    kind: Literal["target", "joint", "run"] = "target"
    applies_to: Callable[[Target], bool] = lambda target: True
    metrics: tuple[str, ...] = ()
    about: str = ""


EVALUATORS: dict[str, EvaluatorEntry] = {}


def register_evaluator(
    name: str,
    kind: Literal["target", "joint", "run"] = "target",
    metrics: tuple[Metric, ...] = (),
    applies_to: Callable[[Target], bool] | None = None,
    about: str = "",
):
    """Decorator: register ``fn`` as evaluator ``name`` of ``kind`` (see above) with the metrics it
    writes (each a ``Metric``, registered with it). ``--skip NAME`` leaves it out. A new evaluator is
    a module with one decorated function plus one import line in ``simvae/evaluate/__init__.py``.
    Raises ValueError for a name already taken by another function or an unknown kind."""
    if kind not in ("target", "joint", "run"):
        raise ValueError(f"evaluator kind must be target, joint or run, got {kind!r}")

    def deco(fn: Evaluator) -> Evaluator:
        old = EVALUATORS.get(name)
        if old is not None and old.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"evaluator '{name}' is registered twice")
        for m in metrics:
            register_metric(m)
        EVALUATORS[name] = EvaluatorEntry(
            name,
            fn,
            kind,
            applies_to or (lambda target: True),
            tuple(m.key for m in metrics),
            about or (fn.__doc__ or "").strip().split("\n")[0],
        )
        return fn

    return deco


def evaluator_names() -> list[str]:
    """The names ``--skip`` accepts: every registered evaluator, in the order they run."""
    return list(EVALUATORS)


def check_evaluator_names(names, where: str = "skip") -> None:
    """Raise ConfigError (one line, with the closest name) for a name that is no registered evaluator."""
    from ..config import suggest
    from ..errors import ConfigError

    for name in names:
        if name not in EVALUATORS:
            raise ConfigError(f"unknown evaluator '{name}' in {where}{suggest(name, EVALUATORS)}; choose from {', '.join(EVALUATORS)}")
