"""Evaluation pieces against scikit-learn and on data with a known answer."""

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier

from simvae.evaluate import evaluate_representations, split_train_val
from simvae.evaluate.gmm import gmm_evaluate, match_clusters
from simvae.evaluate.knn import knn_accuracies, knn_evaluate, knn_predictions, nearest_labels
from simvae.evaluate.probes import train_probe
from simvae.run_config import EvalConfig


def blobs(n, n_classes=4, dim=5, sep=6.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % n_classes
    centres = torch.randn(n_classes, dim, generator=g) * sep
    return centres[y] + torch.randn(n, dim, generator=g), y


def test_knn_matches_scikit_learn_for_every_k():
    torch.manual_seed(0)
    tx, ty = torch.randn(300, 4), torch.randint(0, 3, (300,))
    qx = torch.randn(100, 4)
    preds = knn_predictions(nearest_labels(tx, ty, qx, 15, block=32), 3)
    for k in range(1, 16):
        ref = KNeighborsClassifier(n_neighbors=k).fit(tx.numpy(), ty.numpy()).predict(qx.numpy())
        assert (preds[k - 1].numpy() == ref).all(), k


def test_knn_k_is_chosen_on_validation_not_test():
    x, y = blobs(400)
    fit, val = split_train_val(400, 100, 0)
    qx, qy = blobs(200, seed=1)
    qy = (qy + 1) % 4  # test labels shuffled: best k on test differs from validation's
    out = knn_evaluate(x[fit], y[fit], x[val], y[val], x, y, qx, qy, 15, 4)
    val_acc = knn_accuracies(x[fit], y[fit], x[val], y[val], 15, 4)
    assert out["knn_k"] == int(val_acc.argmax()) + 1
    assert out["knn_acc_best_k_on_test"] >= out["knn_acc"]


def test_split_is_disjoint_and_seeded():
    a_fit, a_val = split_train_val(1000, 100, 3)
    b_fit, b_val = split_train_val(1000, 100, 3)
    assert torch.equal(a_val, b_val) and len(a_val) == 100
    assert len(set(a_fit.tolist()) & set(a_val.tolist())) == 0 and len(a_fit) + len(a_val) == 1000


def test_probes_learn_separable_classes_and_stop_early():
    x, y = blobs(600, sep=3.0)
    tx, ty = blobs(200, sep=3.0, seed=0)
    for kind in ("linear", "mlp"):
        out = train_probe(kind, x[:500], y[:500], x[500:], y[500:], tx, ty, 4, lr=1e-2, max_epochs=60, patience=3, hidden=32)
        assert out[f"{kind}_acc"] > 0.9
        assert out[f"{kind}_epochs_run"] <= 60
        assert out[f"{kind}_epochs_run"] - out[f"{kind}_epochs"] <= 3


def test_probe_on_noise_is_at_chance():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(600, 5, generator=g), torch.randint(0, 4, (600,), generator=g)
    out = train_probe("linear", x[:400], y[:400], x[400:500], y[400:500], x[500:], y[500:], 4, max_epochs=20)
    assert out["linear_acc"] < 0.45


def test_cluster_matching_recovers_a_permutation():
    labels = np.repeat(np.arange(5), 20)
    perm = np.array([3, 0, 4, 1, 2])
    clusters = perm[labels]
    mapping = match_clusters(clusters, labels, 5)
    assert (mapping[clusters] == labels).all()


def test_gmm_separates_blobs():
    x, y = blobs(800, sep=8.0)
    tx, ty = blobs(200, sep=8.0, seed=0)
    out = gmm_evaluate(x.double().numpy(), y.numpy(), tx.double().numpy(), ty.numpy(), 4, restarts=2)
    assert out["gmm_acc"] > 0.95 and out["gmm_nmi"] > 0.9 and out["gmm_ari"] > 0.9


def test_evaluate_representations_reports_all_metrics_in_unit_range():
    x, y = blobs(500)
    tx, ty = blobs(200, seed=0)
    cfg = EvalConfig(val_size=100, probe_max_epochs=5, gmm_restarts=1)
    m = evaluate_representations(x, y, tx, ty, 4, cfg)
    for key in ("knn_acc", "linear_acc", "mlp_acc", "gmm_acc", "gmm_nmi", "gmm_ari"):
        assert 0.0 <= m[key] <= 1.0, key
    assert 1 <= m["knn_k"] <= 15
    assert m["knn_acc"] > 0.9
