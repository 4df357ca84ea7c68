"""A toy evaluator, as a user would add one: this file plus one import line.

The fraction of test images whose nearest training class mean (in the representation) is their
own class; on style targets only."""

import torch

from simvae.evaluate.registry import Metric, register_evaluator


@register_evaluator(
    "nearest_mean", "target", applies_to=lambda t: t.role == "style", metrics=(Metric("nearest_mean_acc", "nearest class mean"),)
)
def nearest_mean(ctx, target, log):
    """Nearest class mean: the test image's class is that of the closest training class mean."""
    y = target.train
    means = torch.stack([ctx.train_x[y == c].mean(0) for c in range(target.n_classes)])
    pred = torch.cdist(ctx.test_x, means).argmin(1)
    return {"nearest_mean_acc": float((pred == target.test).float().mean())}
