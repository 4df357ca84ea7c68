"""k-NN neighbours are exact enough: the same as scikit-learn's exact brute-force search, and
unchanged when every representation is shifted by a common offset (which changes no distance).

The points lie on a grid of 2^-13 within [-8, 8), so that adding 1000 is exact in float32 and every
squared distance is exact in float64: the reference is then exact, and two neighbours may be
swapped only where their distances are exactly equal. Before the fix (||t||^2 - 2 q.t in float32)
the +1000 offset made most 1-nearest neighbours wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from simvae.evaluate.knn import knn_accuracies, nearest_labels

GRID = 2.0**-13
K = 5


def grid_points(n: int, dim: int, seed: int) -> np.ndarray:
    """float64 [n, dim], roughly N(0, 1), rounded to multiples of 2^-13 and clipped to [-8, 8)."""
    x = np.random.default_rng(seed).standard_normal((n, dim))
    return np.clip(np.round(x / GRID) * GRID, -8, 8 - GRID)


def exact_sq_dist(query: np.ndarray, train: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Squared distances [n_query, k] from each query to train[idx[i]]: exact for grid points."""
    return ((query[:, None, :] - train[idx]) ** 2).sum(-1)


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    pass


@pytest.mark.parametrize("dim", [10, 64])
@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_neighbours_match_scikit_learn_exact_search(dim, offset):
    train, query = grid_points(3000, dim, seed=dim), grid_points(400, dim, seed=dim + 1)
    assert np.array_equal((train + offset).astype(np.float32) - np.float32(offset), train)  # the shift is exact
    ref = NearestNeighbors(n_neighbors=K, algorithm="brute", metric="euclidean").fit(train)
    _, ref_idx = ref.kneighbors(query)
    ours = nearest_labels(
        torch.from_numpy(train + offset).float(), torch.arange(len(train)), torch.from_numpy(query + offset).float(), K, block=128
    ).numpy()  # labels = indices
    ref_d, our_d = exact_sq_dist(query, train, ref_idx), exact_sq_dist(query, train, ours)
    # Neighbours in order of distance (scikit-learn's own distances may round: the exact ones decide).
    assert np.array_equal(np.sort(ref_d, 1), ref_d)
    wrong = int((our_d[:, 0] != ref_d[:, 0]).sum())
    assert wrong == 0, f"{wrong} of {len(query)} 1-nearest neighbours are wrong (offset {offset})"
    assert (ours[:, 0] != ref_idx[:, 0]).sum() <= 0.01 * len(query)  # swaps only at exact ties, rare on this grid
    assert bool(np.all(np.diff(our_d, axis=1) >= 0)), "neighbours not nearest first"
    # Every k: the same multiset of distances as the exact search (a swap only between equal distances).
    np.testing.assert_array_equal(our_d, ref_d)


def test_shift_changes_no_label_and_no_accuracy():
    """1-NN class labels agree with the exact search (except at exact ties) with and without a common
    offset of 1000, and k-NN accuracies are the same with and without it."""
    train, query = grid_points(2000, 10, seed=5), grid_points(300, 10, seed=6)
    g = torch.Generator().manual_seed(0)
    ty, qy = torch.randint(0, 10, (2000,), generator=g), torch.randint(0, 10, (300,), generator=g)
    ref_idx = NearestNeighbors(n_neighbors=1, algorithm="brute", metric="euclidean").fit(train).kneighbors(query)[1][:, 0]
    d = ((query[:, None, :] - train[None]) ** 2).sum(-1)  # exact, [300, 2000]
    tie = (d == d.min(1, keepdims=True)).sum(1) > 1
    accs = []
    for offset in (0.0, 1000.0):
        tx, qx = torch.from_numpy(train + offset).float(), torch.from_numpy(query + offset).float()
        labels = nearest_labels(tx, ty, qx, 1)[:, 0].numpy()
        wrong = (labels != ty.numpy()[ref_idx]) & ~tie
        assert not wrong.any(), f"offset {offset}: {int(wrong.sum())} of {len(query)} 1-NN labels differ from the exact search"
        accs.append(knn_accuracies(tx, ty, qx, qy, 7, 10))
    if not tie.any():
        assert torch.equal(accs[0], accs[1])


def test_small_and_empty_inputs():
    tx = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    ty = torch.tensor([0, 1, 2])
    assert nearest_labels(tx, ty, torch.tensor([[2.9, 4.0]]), 5).tolist() == [[1, 2, 0]]  # max_k capped at n_train
    assert nearest_labels(tx, ty, torch.empty(0, 2), 2).shape == (0, 2)
    assert nearest_labels(tx.double(), ty, torch.tensor([[0.1, 0.0]], dtype=torch.float64), 1).tolist() == [[0]]
