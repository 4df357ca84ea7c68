"""The fast evaluation paths compute what the slower, library ones did: the probes' hand-written
gradients and Adam step against autograd and torch.optim.Adam, the torch EM against
scikit-learn's GaussianMixture (same k-means starts, same fit). Speed itself is measured by
benchmarks/eval_speed.py, not here."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.mixture import GaussianMixture

from simvae.evaluate import gmm as gmm_module
from simvae.evaluate.gmm import fit_gmm
from simvae.evaluate.probes import HeadBank, make_probe


def test_head_bank_step_is_adam_on_the_summed_cross_entropy():
    """Heads of both kinds, several learning rates, a head with fewer classes (masked logits) and a
    target with unlabelled rows: each hand-written step moves every head as torch.optim.Adam does
    on the sum of the heads' mean cross-entropies through autograd."""
    torch.manual_seed(0)
    d, hidden = 5, 7
    specs = [("mlp", 4, 1e-2), ("linear", 4, 3e-3), ("linear", 3, 3e-2), ("mlp", 3, 1e-3)]  # (kind, classes, lr)
    probes = [make_probe(kind, d, c, hidden) for kind, c, _ in specs]
    ref = copy.deepcopy(probes)
    bank = HeadBank(probes, [c for _, c, _ in specs], [lr for *_, lr in specs])
    opt = torch.optim.Adam([{"params": p.parameters(), "lr": lr} for p, (*_, lr) in zip(ref, specs)])
    for _ in range(6):
        x = torch.randn(32, d)
        y = torch.stack([torch.randint(0, c, (32,)) for _, c, _ in specs])  # [T, b], the probes' order
        y[3, ::3] = -1  # head 3's target is unlabelled on a third of the rows
        labelled = (y >= 0).float()
        loss = sum(F.cross_entropy(p(x), y[t], ignore_index=-1) for t, p in enumerate(ref))
        opt.zero_grad()
        loss.backward()
        opt.step()
        yb = y[bank.order]
        w = labelled[bank.order]
        bank.step(x, yb.clamp(min=0), (w / w.sum(1, keepdim=True))[..., None])
    for i, t in enumerate(bank.order):
        p, c = ref[t], specs[t][1]
        if specs[t][0] == "linear":
            torch.testing.assert_close(bank.wl[i][:, :c], p.weight.detach().T)
            torch.testing.assert_close(bank.bl[i][:c], p.bias.detach())
            assert (bank.wl[i][:, c:] == 0).all()  # masked classes get no gradient
        else:
            j = i - bank.n_linear
            torch.testing.assert_close(bank.w1[j], p[0].weight.detach().T)
            torch.testing.assert_close(bank.b1[j], p[0].bias.detach())
            torch.testing.assert_close(bank.w2[j][:, :c], p[2].weight.detach().T)
            torch.testing.assert_close(bank.b2[j][:c], p[2].bias.detach())
    logits = bank.logits(x)
    assert logits.shape == (4, 32, 4) and torch.isinf(logits[bank.order.index(2), :, 3]).all()


def _blobs(seed: int = 0, n: int = 900, d: int = 3, k: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 3
    scales = rng.uniform(0.3, 1.5, size=(k, d, d))
    y = rng.integers(0, k, n)
    return centres[y] + np.einsum("nd,nde->ne", rng.normal(size=(n, d)), scales[y])


@pytest.mark.parametrize("second_moments", [True, False])
def test_fit_gmm_is_scikit_learns_fit(monkeypatch, second_moments):
    """Same k-means starts, same EM, same restart chosen: the same mixture up to float64 rounding,
    whether covariances come from the stored second moments or from differences in row blocks."""
    if not second_moments:
        monkeypatch.setattr(gmm_module, "SECOND_MOMENT_ELEMENTS", 0)
        monkeypatch.setattr(gmm_module, "ROW_BLOCK_ELEMENTS", 100)  # several blocks
    x = _blobs()
    ref = GaussianMixture(4, covariance_type="full", n_init=3, max_iter=100, reg_covar=1e-5, random_state=7).fit(x)
    mix = fit_gmm(x, 4, restarts=3, max_iter=100, seed=7)
    assert mix.n_iter == ref.n_iter_ and mix.converged == ref.converged_
    assert mix.lower_bound == pytest.approx(ref.lower_bound_, rel=1e-10)
    np.testing.assert_allclose(mix.means.numpy(), ref.means_, atol=1e-9)
    np.testing.assert_allclose(mix.prec_chol.numpy(), ref.precisions_cholesky_, rtol=1e-7, atol=1e-9)
    xt = torch.from_numpy(x)
    assert (mix.predict(xt).numpy() == ref.predict(x)).all()
    np.testing.assert_allclose(mix.weighted_log_prob(xt).numpy(), ref._estimate_weighted_log_prob(x), rtol=1e-9, atol=1e-9)
