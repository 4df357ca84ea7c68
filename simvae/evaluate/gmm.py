"""Gaussian-mixture clustering of representations (paper A.7.5: full covariance, one
component per class, several restarts), scored by accuracy after the optimal matching
of clusters to classes (Hungarian algorithm), NMI and ARI.

The mixture is fitted on the training representations. ``gmm_acc`` is the standard
unsupervised clustering accuracy: the best one-to-one matching of the test clusters to the
test classes (Hungarian algorithm on the scored split, as the paper's public code does).
``gmm_acc_train_matched`` matches on the training labels instead and applies that matching
to test (a held-out figure, never above ``gmm_acc``). NMI and ARI need no matching.

``fit_gmm`` is scikit-learn's ``GaussianMixture`` (full covariance, k-means starts, the best of
several restarts) computed in batched torch arithmetic, all restarts at once: the same mixture up
to float64 rounding, several times faster.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from .registry import Metric, register_evaluator


def match_clusters(clusters: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Map cluster -> class maximising the number of agreements (one-to-one)."""
    n_clusters = max(int(clusters.max()) + 1, n_classes)
    counts = np.zeros((n_clusters, n_classes), dtype=np.int64)
    np.add.at(counts, (clusters, labels), 1)
    rows, cols = linear_sum_assignment(-counts)
    mapping = np.zeros(n_clusters, dtype=np.int64)
    mapping[rows] = cols
    return mapping


ROW_BLOCK_ELEMENTS = 1 << 22  # float64 elements of a [rows, components, dims] E-step block (32 MiB)
SECOND_MOMENT_ELEMENTS = 1 << 24  # the most float64 elements of the [n, d * d] outer products kept for the fit (128 MiB)


@dataclass
class Mixture:
    """A fitted full-covariance Gaussian mixture: ``weights`` [K], ``means`` [K, d], ``prec_chol``
    [K, d, d] (upper-triangular Cholesky factors of the precisions, as scikit-learn's
    ``precisions_cholesky_``), float64; ``lower_bound``: mean log-likelihood per point of the
    training data at the last E-step; ``n_iter``, ``converged``: of the chosen restart."""

    weights: torch.Tensor
    means: torch.Tensor
    prec_chol: torch.Tensor
    lower_bound: float = float("nan")
    n_iter: int = 0
    converged: bool = False

    def weighted_log_prob(self, x: torch.Tensor, xx: torch.Tensor | None = None) -> torch.Tensor:
        """log(weight_k N(x | mean_k, cov_k)) of each point: [n, K] for x [n, d] (float64). With
        ``xx`` [n, d * d] (the outer product of each point with itself) the Mahalanobis distances
        come from two products, (x - m)' P (x - m) = <x x', P> - 2 x' P m + m' P m, reading no
        [n, K, d] tensor (in float64 the cancellation costs about 1e-16 of x' P x: 1e-10 for a
        component of variance 1e-5 and standardised points); without it, from the whitened
        differences, in blocks of rows."""
        n, d = x.shape
        k = self.means.shape[0]
        const = -0.5 * d * math.log(2 * math.pi) + self.prec_chol.diagonal(dim1=1, dim2=2).log().sum(1) + self.weights.log()
        if xx is not None:
            precision = self.prec_chol @ self.prec_chol.transpose(1, 2)  # [K, d, d]
            pm = torch.einsum("kij,kj->ki", precision, self.means)  # P m
            out = torch.addmm(const - 0.5 * (pm * self.means).sum(1), xx, precision.reshape(k, d * d).T, alpha=-0.5)
            return out.addmm_(x, pm.T)  # -0.5 (-2 x' P m)
        proj = self.prec_chol.permute(1, 0, 2).reshape(d, k * d)  # column block k: prec_chol[k]
        shift = torch.einsum("ki,kij->kj", self.means, self.prec_chol)
        block = max(1, ROW_BLOCK_ELEMENTS // (k * d))
        out = [
            (torch.mm(x[s : s + block], proj).view(-1, k, d) - shift).square_().sum(2).mul_(-0.5).add_(const) for s in range(0, n, block)
        ]
        return torch.cat(out)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable component of each point x [n, d]: int64 [n]."""
        return self.weighted_log_prob(x).argmax(1)


def _m_step(x: torch.Tensor, xx: torch.Tensor | None, resp: torch.Tensor, reg_covar: float):
    """Masses (unnormalised weights) [K], means [K, d] and precision Cholesky factors [K, d, d] of
    each component from responsibilities resp [n, K] (as scikit-learn's M-step: 10 eps added to
    each component's mass, ``reg_covar`` to each covariance's diagonal). With xx [n, d * d] (outer
    products of the points) the covariances are one product for all components, second moments
    minus the means' squares (in float64 on standardised data the cancellation costs about
    1e-13); without it, weighted differences in blocks of rows. Raises ValueError when a
    covariance is not positive definite."""
    n, d = x.shape
    k = resp.shape[1]
    eps10 = 10 * torch.finfo(resp.dtype).eps
    nk = resp.sum(0) + eps10
    means = resp.T @ x / nk[:, None]
    if xx is not None:
        # sum_n r (x - m)(x - m)' / nk = E_r[x x'] - m m' (2 - sum_n r / nk), exactly, for nk = sum_n r + 10 eps
        cov = (resp.T @ xx).view(k, d, d) / nk[:, None, None]
        cov -= means[:, :, None] * means[:, None, :] * (2 - (nk - eps10) / nk)[:, None, None]
    else:
        cov = torch.zeros(k, d, d, dtype=x.dtype)
        block = max(1, ROW_BLOCK_ELEMENTS // (k * d))
        for s in range(0, n, block):
            diff = x[None, s : s + block] - means[:, None]  # [K, b, d]
            cov.baddbmm_((diff * resp[s : s + block].T[:, :, None]).transpose(1, 2), diff)
        cov /= nk[:, None, None]
    cov.diagonal(dim1=1, dim2=2).add_(reg_covar)
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info.max()) > 0:
        raise ValueError(
            "the Gaussian mixture has a component with an ill-defined covariance (singleton or collapsed "
            "points); use fewer components or a larger reg_covar"
        )
    eye = torch.eye(d, dtype=x.dtype).expand_as(chol)
    prec_chol = torch.linalg.solve_triangular(chol, eye, upper=False).transpose(1, 2)
    return nk, means, prec_chol


def fit_gmm(
    x: np.ndarray, n_components: int, restarts: int = 10, max_iter: int = 200, tol: float = 1e-3, reg_covar: float = 1e-5, seed: int = 0
) -> Mixture:
    """A full-covariance Gaussian mixture fitted by EM to x [n, d] (float64), the best of
    ``restarts`` initialisations by final mean log-likelihood (the first of equals).

    The algorithm of scikit-learn's ``GaussianMixture(covariance_type="full", init_params="kmeans",
    n_init=restarts, tol, reg_covar, random_state=seed)``: each restart starts from the clusters of
    one k-means run (scikit-learn's KMeans, n_init=1, drawing from one random stream seeded by
    ``seed``, so the same initialisations), then alternates E and M steps until the mean
    log-likelihood changes by less than ``tol`` or after ``max_iter`` steps. Only the arithmetic
    differs, equal up to float64 rounding and several times faster: all restarts advance together
    as one mixture of restarts x K components (a restart leaves the batch when it converges), so a
    step reads the data once for all of them, in two matrix products, with the points' outer
    products [n, d * d] computed once (when they fit in ``SECOND_MOMENT_ELEMENTS``).
    Raises ValueError when a component's covariance is not positive definite."""
    from sklearn.cluster import KMeans

    rs = np.random.RandomState(seed)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    n, d = xt.shape
    k = n_components
    # the outer products, when they fit: every E and M step then reads [n, d * d] once
    xx = (xt[:, :, None] * xt[:, None, :]).reshape(n, d * d) if n * d * d <= SECOND_MOMENT_ELEMENTS else None
    labels = np.stack([KMeans(n_clusters=k, n_init=1, random_state=rs).fit(x).labels_ for _ in range(restarts)], 1)
    resp = torch.nn.functional.one_hot(torch.from_numpy(labels).long(), k).to(torch.float64).view(n, restarts * k)
    # component j of restart r is component r k + j; scikit-learn's initial weights are masses over n
    weights, means, prec_chol = _m_step(xt, xx, resp, reg_covar)
    weights = weights / n
    lower = torch.full((restarts,), -math.inf, dtype=torch.float64)
    n_iter = torch.zeros(restarts, dtype=torch.long)
    converged = torch.zeros(restarts, dtype=torch.bool)
    active = torch.arange(restarts)
    for it in range(1, max_iter + 1):
        comp = (active[:, None] * k + torch.arange(k)).flatten()
        wlp = Mixture(weights[comp], means[comp], prec_chol[comp]).weighted_log_prob(xt, xx).view(n, len(active), k)
        top = wlp.amax(2, keepdim=True)  # each restart's log-sum-exp and responsibilities from one exp
        resp = wlp.sub_(top).exp_()
        mass = resp.sum(2, keepdim=True)
        now = (mass.log() + top).mean(0).view(-1)  # mean log-likelihood of each active restart
        nk, means[comp], prec_chol[comp] = _m_step(xt, xx, resp.div_(mass).view(n, -1), reg_covar)
        nk = nk.view(-1, k)
        weights[comp] = (nk / nk.sum(1, keepdim=True)).flatten()
        done = (now - lower[active]).abs() < tol
        lower[active], n_iter[active] = now, it
        converged[active[done]] = True
        active = active[~done]
        if len(active) == 0:
            break
    best = max(range(restarts), key=lambda r: float(lower[r]))  # the first of equals, as scikit-learn
    own = slice(best * k, (best + 1) * k)
    return Mixture(
        weights[own].clone(), means[own].clone(), prec_chol[own].clone(), float(lower[best]), int(n_iter[best]), bool(converged[best])
    )


def gmm_evaluate(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    n_classes: int,
    restarts: int = 10,
    max_iter: int = 200,
    seed: int = 0,
) -> dict:
    """Fit a full-covariance mixture of ``n_classes`` components (``fit_gmm``) to the standardised
    training representations train_x [n, d]; score the test clusters against test_y [m] (int
    labels 0..n_classes-1): ``gmm_acc`` (Hungarian matching on test), ``gmm_acc_train_matched``,
    ``gmm_nmi``, ``gmm_ari``, ``gmm_converged``."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    train_z, test_z = (train_x - mean) / std, (test_x - mean) / std
    gmm = fit_gmm(train_z, n_classes, restarts, max_iter, reg_covar=1e-5, seed=seed)
    test_clusters = gmm.predict(torch.from_numpy(np.ascontiguousarray(test_z, dtype=np.float64))).numpy()
    train_clusters = gmm.predict(torch.from_numpy(np.ascontiguousarray(train_z, dtype=np.float64))).numpy()
    # the standard unsupervised clustering accuracy: clusters matched to classes on the scored split
    mapping = match_clusters(test_clusters, test_y, n_classes)
    train_mapping = match_clusters(train_clusters, train_y, n_classes)
    return {
        "gmm_acc": float((mapping[test_clusters] == test_y).mean()),
        "gmm_acc_train_matched": float((train_mapping[test_clusters] == test_y).mean()),
        "gmm_nmi": float(normalized_mutual_info_score(test_y, test_clusters)),
        "gmm_ari": float(adjusted_rand_score(test_y, test_clusters)),
        "gmm_converged": bool(gmm.converged),
    }


@register_evaluator(
    "gmm",
    "target",
    applies_to=lambda target: target.role == "content",
    metrics=(
        Metric("gmm_acc", "GMM acc", headline=True, note="clusters matched to classes on the scored split (Hungarian)"),
        Metric("gmm_nmi", "GMM NMI", headline=True),
        Metric("gmm_ari", "GMM ARI", headline=True),
        Metric("gmm_acc_train_matched", "GMM acc, clusters matched on training labels"),
    ),
)
def gmm_evaluator(ctx, target, log) -> dict:
    """A full-covariance GMM with one component per class; accuracy (Hungarian), NMI, ARI."""
    t = time.monotonic()
    cfg = ctx.cfg
    y, ty = target.train, target.test
    tr, te = torch.nonzero(y >= 0).squeeze(1), torch.nonzero(ty >= 0).squeeze(1)
    log(
        f"{target.prefix()}fitting the Gaussian mixture ({target.n_classes} components, {cfg.gmm_restarts} restarts, "
        f"{len(tr)} {ctx.train_x.shape[1]}-d points, all restarts advancing together; about 1 s a restart on 50,000 10-d "
        f"points on one CPU core)"
    )
    out = gmm_evaluate(
        ctx.train_x[tr].numpy().astype(np.float64),
        y[tr].numpy(),
        ctx.test_x[te].numpy().astype(np.float64),
        ty[te].numpy(),
        target.n_classes,
        cfg.gmm_restarts,
        cfg.gmm_max_iter,
        cfg.seed,
    )
    log(
        f"{target.prefix()}GMM: acc {out['gmm_acc']:.4f} NMI {out['gmm_nmi']:.4f} ARI {out['gmm_ari']:.4f} "
        f"({cfg.gmm_restarts} restarts, {time.monotonic() - t:.1f}s)"
    )
    return out
