"""The evaluation protocol shared by every evaluator (paper §6, A.7.5, with an honest split):
a validation split held out of the training set chooses k, stops the probes and picks learning
rates; the test set is scored once.

``Context``: what the evaluators of one representation share (features, fit/validation split,
standardised features). ``Evaluation``: what one evaluation of a run computed (representations,
targets, metrics, and what it hands on to the report, e.g. test reconstructions), so that the
report never encodes or reconstructs the images again. ``evaluate_targets`` runs every registered
target and joint evaluator on one representation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data.targets import Target
from ..run_config import EvalConfig
from .registry import EVALUATORS


def split_train_val(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random split of the training indices 0..n-1 into (fit, validation) int64 tensors; the
    validation split holds ``val_size`` indices, at most a fifth of n (at least 1)."""
    val_size = min(val_size, max(1, n // 5))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:], perm[:val_size]


class Context:
    """What every evaluator of one representation shares: the features train_x [N, d] and
    test_x [M, d] (float, CPU), the fit/validation split of the training images, and features
    standardised by the fit split's statistics (``z_train``, ``z_test``)."""

    def __init__(self, train_x: torch.Tensor, test_x: torch.Tensor, cfg: EvalConfig):
        self.train_x, self.test_x, self.cfg = train_x, test_x, cfg
        self.fit_idx, self.val_idx = split_train_val(train_x.shape[0], cfg.val_size, cfg.seed)
        mean, std = train_x[self.fit_idx].mean(0), train_x[self.fit_idx].std(0) + 1e-8
        self.z_train, self.z_test = (train_x - mean) / std, (test_x - mean) / std


def labelled(idx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The indices of ``idx`` whose label in ``y`` is given (not -1)."""
    return idx[y[idx] >= 0]


@dataclass
class Evaluation:
    """One evaluation of a run: the representations of the un-augmented training images
    ``train_x`` [N, d] and test images ``test_x`` [M, d] (CPU), the data set's ``targets``
    (content first), the ``metrics`` so far, and ``artefacts`` that evaluators hand on to the report
    (``test_recon``: reconstructions of the test images [M, C, H, W] in [0, 1]; ``samples`` and
    ``sample_labels``: decoded class-conditional samples)."""

    train_x: torch.Tensor
    test_x: torch.Tensor
    targets: list
    cfg: EvalConfig
    metrics: dict = field(default_factory=dict)
    artefacts: dict = field(default_factory=dict)
    name: str = ""


def evaluate_targets(
    train_x: torch.Tensor, test_x: torch.Tensor, targets: list[Target], cfg: EvalConfig | None = None, log=None, skip: tuple[str, ...] = ()
) -> dict:
    """Every registered target and joint evaluator on every target it applies to: representations
    train_x [N, d] and test_x [M, d] (float, CPU); returns metrics keyed by target prefix + metric
    key, and the split sizes (``n_train``, ``n_fit``, ``n_val``, ``n_test``)."""
    cfg = cfg or EvalConfig()
    log = log or (lambda msg: None)
    ctx = Context(train_x, test_x, cfg)
    metrics: dict = {
        "n_train": int(train_x.shape[0]),
        "n_fit": int(ctx.fit_idx.numel()),
        "n_val": int(ctx.val_idx.numel()),
        "n_test": int(test_x.shape[0]),
    }
    for entry in EVALUATORS.values():
        if entry.kind == "run" or entry.name in skip:
            continue
        chosen = [t for t in targets if entry.applies_to(t)]
        if not chosen:
            continue
        if entry.kind == "joint":  # one call for all its targets; keys come prefixed
            metrics.update(entry.fn(ctx, chosen, log))
            continue
        for target in chosen:
            metrics.update({target.prefix() + k: v for k, v in entry.fn(ctx, target, log).items()})
    return metrics


def evaluate_representations(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    n_classes: int,
    cfg: EvalConfig | None = None,
    log=None,
) -> dict:
    """k-NN, probes and GMM (every target evaluator) on one content target: class labels train_y
    [N] and test_y [M] in 0..n_classes-1."""
    return evaluate_targets(train_x, test_x, [Target("class", train_y, test_y, n_classes)], cfg, log)
