"""Gaussian-mixture clustering of representations (paper A.7.5: full covariance, one
component per class, several restarts), scored by accuracy after the optimal matching
of clusters to classes (Hungarian algorithm), NMI and ARI.

The mixture is fitted on the training representations. ``gmm_acc`` is the standard
unsupervised clustering accuracy: the best one-to-one matching of the test clusters to the
test classes (Hungarian algorithm on the scored split, as the paper's public code does).
``gmm_acc_train_matched`` matches on the training labels instead and applies that matching
to test (a held-out figure, never above ``gmm_acc``). NMI and ARI need no matching.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.mixture import GaussianMixture


def match_clusters(clusters: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Map cluster -> class maximising the number of agreements (one-to-one)."""
    n_clusters = max(int(clusters.max()) + 1, n_classes)
    counts = np.zeros((n_clusters, n_classes), dtype=np.int64)
    np.add.at(counts, (clusters, labels), 1)
    rows, cols = linear_sum_assignment(-counts)
    mapping = np.zeros(n_clusters, dtype=np.int64)
    mapping[rows] = cols
    return mapping


def gmm_evaluate(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, n_classes: int,
                 restarts: int = 10, max_iter: int = 200, seed: int = 0) -> dict:
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    train_z, test_z = (train_x - mean) / std, (test_x - mean) / std
    gmm = GaussianMixture(n_components=n_classes, covariance_type="full", n_init=restarts, max_iter=max_iter,
                          reg_covar=1e-5, random_state=seed)
    gmm.fit(train_z)
    test_clusters = gmm.predict(test_z)
    # the standard unsupervised clustering accuracy: clusters matched to classes on the scored split
    mapping = match_clusters(test_clusters, test_y, n_classes)
    train_mapping = match_clusters(gmm.predict(train_z), train_y, n_classes)
    return {"gmm_acc": float((mapping[test_clusters] == test_y).mean()),
            "gmm_acc_train_matched": float((train_mapping[test_clusters] == test_y).mean()),
            "gmm_nmi": float(normalized_mutual_info_score(test_y, test_clusters)),
            "gmm_ari": float(adjusted_rand_score(test_y, test_clusters)),
            "gmm_converged": bool(gmm.converged_)}
