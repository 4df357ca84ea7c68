"""k-nearest-neighbour classification on tensors, in blocks, for every k at once.

One top-K search (Euclidean distance, as scikit-learn's default) serves all k = 1..K:
the prediction for k is the majority label of the k nearest, ties going to the
smallest label (as scikit-learn's KNeighborsClassifier).
"""

from __future__ import annotations

import torch


def nearest_labels(train_x: torch.Tensor, train_y: torch.Tensor, query_x: torch.Tensor, max_k: int,
                   block: int = 1024) -> torch.Tensor:
    """Labels of the ``max_k`` nearest training points of each query, nearest first: [n_query, max_k]."""
    max_k = min(max_k, train_x.shape[0])
    train_sq = train_x.pow(2).sum(1)
    out = []
    for start in range(0, query_x.shape[0], block):
        q = query_x[start:start + block]
        # ||q - t||^2 = ||q||^2 - 2 q.t + ||t||^2 (||q||^2 is constant per row, so omitted for ranking)
        d = train_sq[None, :] - 2 * q @ train_x.T
        idx = d.topk(max_k, dim=1, largest=False).indices
        out.append(train_y[idx])
    return torch.cat(out)


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
    return {"knn_acc": float(test_acc[k - 1]), "knn_k": k, "knn_val_acc": float(val_acc[k - 1]),
            "knn_acc_best_k_on_test": float(test_acc[best - 1]), "knn_best_k_on_test": best}
