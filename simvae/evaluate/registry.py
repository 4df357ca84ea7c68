"""The one list of metrics and evaluators: every table, report and benchmark reads it.

A *metric* is a key in ``metrics.json`` with a label, a kind (how it is shown) and a
direction. An *evaluator* takes representations and one *target* (the labels one question
asks of each image: the class, a style label, an attribute; -1 where an image has none) and
returns metrics. Keys of the content target are bare (``knn_acc``); those of every other
target are prefixed by the target's name (``hair_colour/mlp_acc``, ``style/flip/knn_acc``).

A new evaluator or metric is a ``register_evaluator`` / ``register_metric`` call, in its own
module or a test: nothing else changes.
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


for _m in (
    Metric("knn_acc", "k-NN", headline=True, note="k chosen on a validation split"),
    Metric("linear_acc", "linear", headline=True, note="linear probe, stopped on validation loss"),
    Metric("mlp_acc", "MLP", headline=True, note="MLP probe (hidden width = representation size), stopped on validation"),
    Metric("gmm_acc", "GMM acc", headline=True, note="clusters matched to classes on the scored split (Hungarian)"),
    Metric("gmm_nmi", "GMM NMI", headline=True),
    Metric("gmm_ari", "GMM ARI", headline=True),
    Metric("recon_mse", "recon. MSE", "number", higher_is_better=False, headline=True,
           note="per pixel, images in [0, 1], test set"),
    Metric("fid", "FID", "number", higher_is_better=False, headline=True,
           note="Inception FID of class-conditional samples against as many test images"),
    Metric("classifier_fid", "classifier FID", "number", higher_is_better=False, headline=True,
           note="Fréchet distance in a small classifier's features (grey data); not comparable with Inception FID"),
    Metric("fid_samples", "samples for FID", "integer", None),
    Metric("gen_samples", "class-conditional samples", "integer", None, in_report=False),
    Metric("classifier_fid_net_acc", "test accuracy of the classifier-FID network", higher_is_better=None),
    Metric("chance", "chance (most frequent class)", higher_is_better=None),
    Metric("knn_k", "k (chosen on validation)", "integer", None),
    Metric("linear_lr", "linear probe learning rate (chosen on validation)", "number", None),
    Metric("knn_acc_best_k_on_test", "k-NN, best k on test (paper protocol)"),
    Metric("knn_best_k_on_test", "best k on test (paper protocol)", "integer", None),
    Metric("linear_acc_paper_protocol", "linear, fixed epochs on all training images (paper protocol)"),
    Metric("mlp_acc_paper_protocol", "MLP, fixed epochs on all training images (paper protocol)"),
    Metric("gmm_acc_train_matched", "GMM acc, clusters matched on training labels"),
    Metric("posthoc_decoder_val_mse", "post-hoc decoder validation MSE", "number", higher_is_better=False,
           in_report=False),
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



# An evaluator: (context, target, log) -> metrics with bare keys; a *joint* evaluator:
# (context, targets, log) -> metrics with prefixed keys, one call for all targets (the probes
# train every target's heads in one loop). ``context`` carries what evaluators share for one
# representation (the fit/validation split, standardised features) so that each is computed once.
Evaluator = Callable[..., dict]


@dataclass(frozen=True)
class EvaluatorEntry:
    name: str
    fn: Evaluator
    applies_to: Callable[[Target], bool] = lambda target: True
    joint: bool = False


EVALUATORS: dict[str, EvaluatorEntry] = {}


def register_evaluator(name: str, fn: Evaluator, applies_to: Callable[[Target], bool] | None = None,
                       joint: bool = False) -> None:
    EVALUATORS[name] = EvaluatorEntry(name, fn, applies_to or (lambda target: True), joint)


# A run evaluator: (run, representations, cfg, log) -> metrics; it needs more than the
# representations of the un-augmented images (the decoder, the data, new views): generation
# (samples, FID) and style retrieval. ``representations`` holds train_x, test_x, targets.
RUN_EVALUATORS: dict[str, Callable[..., dict]] = {}


def register_run_evaluator(name: str, fn: Callable[..., dict]) -> None:
    RUN_EVALUATORS[name] = fn


def evaluator_names() -> list[str]:
    """The names ``--skip`` accepts: every registered evaluator."""
    return [*EVALUATORS, *RUN_EVALUATORS]
