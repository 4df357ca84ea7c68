"""k-nearest-neighbour classification on tensors, in blocks, for every k at once.

One top-K search (Euclidean distance, as scikit-learn's default) serves all k = 1..K:
the prediction for k is the majority label of the k nearest, ties going to the
smallest label (as scikit-learn's KNeighborsClassifier).

Distances are ranked by ||t||^2 - 2 q.t, which cancels catastrophically when the points
lie far from the origin compared with their spacing (float32 with every representation
shifted by 1000 got ~68% of 1-nearest neighbours wrong). So both sets are first centred
on the training mean (a shift changes no distance) and the sum is formed in float64.
"""

from __future__ import annotations

import time

import torch

from .protocol import labelled
from .registry import Metric, register_evaluator

DIST_BLOCK_ELEMENTS = 1 << 25  # float64 query-by-train distances held at once (256 MiB)


def nearest_indices(train_x: torch.Tensor, query_x: torch.Tensor, max_k: int, block: int = 1024) -> torch.Tensor:
    """Indices into ``train_x`` of the ``max_k`` nearest training points of each query, nearest first.

    train_x: [n_train, d], query_x: [n_query, d], any float dtype, same device. Returns int64
    [n_query, min(max_k, n_train)]. Euclidean distance, computed in float64 after centring both sets
    on the training mean, so the result does not change when every point is shifted by a common
    offset. Equal distances come in an unspecified order. At most ``block`` queries at a time
    (fewer when n_train is large, to hold the float64 distances under 256 MiB).
    """
    max_k = min(max_k, train_x.shape[0])
    mean = train_x.to(torch.float64).mean(0)
    train = train_x.to(torch.float64) - mean
    train_sq = train.pow(2).sum(1)
    block = max(1, min(block, DIST_BLOCK_ELEMENTS // max(1, train.shape[0])))
    out = []
    for start in range(0, query_x.shape[0], block):
        q = query_x[start : start + block].to(torch.float64) - mean
        # ||q - t||^2 = ||q||^2 - 2 q.t + ||t||^2 (||q||^2 is constant per row, so omitted for ranking)
        d = torch.addmm(train_sq[None, :], q, train.T, alpha=-2)
        out.append(d.topk(max_k, dim=1, largest=False).indices)
    return torch.cat(out) if out else torch.empty(0, max_k, dtype=torch.long, device=train_x.device)


def nearest_labels(train_x: torch.Tensor, train_y: torch.Tensor, query_x: torch.Tensor, max_k: int, block: int = 1024) -> torch.Tensor:
    """Labels of the ``max_k`` nearest training points of each query, nearest first: [n_query, max_k].

    train_y: [n_train] int64. See ``nearest_indices`` for how distances are computed."""
    return train_y[nearest_indices(train_x, query_x, max_k, block)]


def knn_predictions(neighbour_labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Majority votes for every k: [max_k, n_query] from labels of neighbours [n_query, max_k]."""
    one_hot = torch.nn.functional.one_hot(neighbour_labels, n_classes).to(torch.float32)
    votes = one_hot.cumsum(dim=1)  # votes[:, k-1, c] = count of class c among the k nearest
    return votes.argmax(dim=2).T  # first maximum -> smallest label on ties


def knn_accuracies(train_x, train_y, query_x, query_y, max_k: int, n_classes: int) -> torch.Tensor:
    """Accuracy of k-NN for k = 1..max_k: [max_k]."""
    preds = knn_predictions(nearest_labels(train_x, train_y, query_x, max_k), n_classes)
    return (preds == query_y[None, :]).float().mean(dim=1)


def knn_evaluate(fit_x, fit_y, val_x, val_y, train_x, train_y, test_x, test_y, max_k: int, n_classes: int) -> dict:
    """Choose k on the validation split, then report test accuracy once with that k
    (neighbours from the whole training set); also the paper's best-k-on-test figure, labelled so."""
    val_acc = knn_accuracies(fit_x, fit_y, val_x, val_y, max_k, n_classes)
    k = int(val_acc.argmax()) + 1
    test_acc = knn_accuracies(train_x, train_y, test_x, test_y, max_k, n_classes)
    best = int(test_acc.argmax()) + 1
    return {
        "knn_acc": float(test_acc[k - 1]),
        "knn_k": k,
        "knn_val_acc": float(val_acc[k - 1]),
        "knn_acc_best_k_on_test": float(test_acc[best - 1]),
        "knn_best_k_on_test": best,
    }


@register_evaluator(
    "knn",
    "target",
    metrics=(
        Metric("knn_acc", "k-NN", headline=True, note="k chosen on a validation split"),
        Metric("knn_k", "k (chosen on validation)", "integer", None),
        Metric("knn_acc_best_k_on_test", "k-NN, best k on test (paper protocol)"),
        Metric("knn_best_k_on_test", "best k on test (paper protocol)", "integer", None),
    ),
)
def knn_evaluator(ctx, target, log) -> dict:
    """k-NN with k chosen on the validation split (paper A.7.5; Euclidean, majority vote)."""
    t = time.monotonic()
    y, ty = target.train, target.test
    fit, val = labelled(ctx.fit_idx, y), labelled(ctx.val_idx, y)
    all_train = torch.nonzero(y >= 0).squeeze(1)
    test = torch.nonzero(ty >= 0).squeeze(1)
    out = knn_evaluate(
        ctx.train_x[fit],
        y[fit],
        ctx.train_x[val],
        y[val],
        ctx.train_x[all_train],
        y[all_train],
        ctx.test_x[test],
        ty[test],
        ctx.cfg.knn_max_k,
        target.n_classes,
    )
    log(f"{target.prefix()}k-NN: k={out['knn_k']} (chosen on validation) test acc {out['knn_acc']:.4f} ({time.monotonic() - t:.1f}s)")
    return out
