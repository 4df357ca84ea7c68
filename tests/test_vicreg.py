"""VICReg's three terms against the formulas evaluated by hand, and the weighted total."""

import math
from itertools import combinations

import pytest
import torch

from simvae.objectives.vicreg import covariance_term, invariance_term, variance_term, vicreg_loss


def invariance_by_hand(a, b):
    n, d = len(a), len(a[0])
    return sum((a[i][k] - b[i][k]) ** 2 for i in range(n) for k in range(d)) / (n * d)


def column_stats(z):
    n, d = len(z), len(z[0])
    mean = [sum(z[i][k] for i in range(n)) / n for k in range(d)]
    return n, d, mean


def variance_by_hand(z, gamma=1.0, eps=1e-4):
    n, d, mean = column_stats(z)
    total = 0.0
    for k in range(d):
        var = sum((z[i][k] - mean[k]) ** 2 for i in range(n)) / (n - 1)
        total += max(0.0, gamma - math.sqrt(var + eps))
    return total / d


def covariance_by_hand(z):
    n, d, mean = column_stats(z)
    total = 0.0
    for k in range(d):
        for m in range(d):
            if k != m:
                c = sum((z[i][k] - mean[k]) * (z[i][m] - mean[m]) for i in range(n)) / (n - 1)
                total += c * c
    return total / d


def two_view_by_hand(a, b, lam=25.0, mu=25.0, nu=1.0):
    return (
        lam * invariance_by_hand(a, b)
        + mu * (variance_by_hand(a) + variance_by_hand(b)) / 2
        + nu * (covariance_by_hand(a) + covariance_by_hand(b))
    )


@pytest.fixture
def z():
    torch.manual_seed(0)
    # scales around 1 so that some dimensions are under the hinge and some above
    return torch.randn(9, 3, 5, dtype=torch.float64) * torch.tensor([0.3, 0.8, 1.5, 2.0, 0.5], dtype=torch.float64)


def test_invariance_by_hand(z):
    assert invariance_term(z[:, 0], z[:, 1]).item() == pytest.approx(invariance_by_hand(z[:, 0].tolist(), z[:, 1].tolist()), rel=1e-12)


def test_variance_by_hand(z):
    got = variance_term(z[:, 0]).item()
    assert got == pytest.approx(variance_by_hand(z[:, 0].tolist()), rel=1e-12)
    assert 0 < got < 1


def test_variance_hinge_limits():
    collapsed = torch.ones(6, 4, dtype=torch.float64)
    assert variance_term(collapsed).item() == pytest.approx(1 - math.sqrt(1e-4), rel=1e-12)
    spread = torch.randn(50, 4, dtype=torch.float64) * 10
    assert variance_term(spread).item() == 0.0


def test_covariance_by_hand(z):
    assert covariance_term(z[:, 0]).item() == pytest.approx(covariance_by_hand(z[:, 0].tolist()), rel=1e-12)
    diag_only = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]], dtype=torch.float64)
    assert covariance_term(diag_only).item() == pytest.approx(0.0, abs=1e-15)  # uncorrelated dimensions


def test_total_two_views(z):
    out = vicreg_loss(z[:, :2])
    a, b = z[:, 0].tolist(), z[:, 1].tolist()
    assert out["loss"].item() == pytest.approx(two_view_by_hand(a, b), rel=1e-12)
    assert out["invariance"].item() == pytest.approx(invariance_by_hand(a, b), rel=1e-12)
    assert out["variance"].item() == pytest.approx((variance_by_hand(a) + variance_by_hand(b)) / 2, rel=1e-12)
    assert out["covariance"].item() == pytest.approx(covariance_by_hand(a) + covariance_by_hand(b), rel=1e-12)


def test_weights_are_applied(z):
    out = vicreg_loss(z[:, :2], 2.0, 3.0, 5.0)
    a, b = z[:, 0].tolist(), z[:, 1].tolist()
    assert out["loss"].item() == pytest.approx(two_view_by_hand(a, b, 2.0, 3.0, 5.0), rel=1e-12)


def test_j_views_average_the_two_view_loss_over_pairs(z):
    views = [z[:, j].tolist() for j in range(3)]
    pairs = list(combinations(range(3), 2))
    expected = sum(two_view_by_hand(views[a], views[b]) for a, b in pairs) / len(pairs)
    assert vicreg_loss(z)["loss"].item() == pytest.approx(expected, rel=1e-12)


def test_needs_two_views(z):
    with pytest.raises(ValueError):
        vicreg_loss(z[:, :1])
