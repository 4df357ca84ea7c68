"""Generation (paper A.7.6, Table 7, Fig. 10): class-conditional sampling from a
representation, decoded by the method's decoder (its own, or the post-hoc one).

One full-covariance Gaussian per class is fitted to the training representations
(maximum likelihood, plus a small ridge so every covariance is positive definite); samples
z ~ N(mu_k, Sigma_k) are decoded to pixel means in [0, 1]. Reconstruction MSE is per pixel,
images in [0, 1], averaged over the test set (``recon_mse``).
"""

from __future__ import annotations

import torch

from .registry import Metric, register_evaluator


def fit_class_gaussians(z: torch.Tensor, y: torch.Tensor, n_classes: int, ridge: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean [K, d] and full covariance [K, d, d] (float64) of representations z [N, d]
    with labels y [N] in 0..K-1 (-1: unlabelled, ignored). ``ridge`` x the mean variance is added
    to each diagonal. Raises ValueError when a class has fewer than 2 labelled points."""
    z = z.double()
    d = z.shape[1]
    means, covs = [], []
    scale = float(z.var(0).mean()) if z.shape[0] > 1 else 1.0
    for k in range(n_classes):
        zk = z[y == k]
        if zk.shape[0] < 2:
            raise ValueError(f"class {k} has {zk.shape[0]} labelled training representations; a Gaussian needs at least 2")
        mu = zk.mean(0)
        c = torch.cov(zk.T).reshape(d, d) + ridge * max(scale, 1e-12) * torch.eye(d, dtype=z.dtype)
        means.append(mu)
        covs.append(c)
    return torch.stack(means), torch.stack(covs)


def sample_class_gaussians(
    means: torch.Tensor, covs: torch.Tensor, counts: int | list[int], seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws z = mu_k + L_k eps (L_k the Cholesky factor of Sigma_k): ``counts`` per class (one
    number for all, or one per class). Returns float32 z [sum, d] (class-major) and labels [sum]."""
    g = torch.Generator().manual_seed(seed)
    k, d = means.shape
    counts = [counts] * k if isinstance(counts, int) else list(counts)
    chol = torch.linalg.cholesky(covs)
    zs = []
    for c in range(k):
        eps = torch.randn(counts[c], d, generator=g, dtype=torch.float64)
        zs.append(means[c] + eps @ chol[c].T)
    labels = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(counts)])
    return torch.cat(zs).float(), labels


def class_counts(labels: torch.Tensor, n_classes: int, n: int) -> list[int]:
    """``n`` split over the classes in proportion to their frequency in ``labels`` (-1 ignored;
    largest remainders), so that samples follow the data's class prior."""
    freq = torch.bincount(labels[labels >= 0], minlength=n_classes).double()
    exact = n * freq / freq.sum()
    counts = exact.floor().long()
    for c in torch.argsort(exact - counts, descending=True)[: n - int(counts.sum())]:
        counts[c] += 1
    return counts.tolist()


def class_conditional_samples(
    decode, train_z: torch.Tensor, train_y: torch.Tensor, n_classes: int, counts: int | list[int], seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded samples: ``decode`` (z [n, d] -> images [n, C, H, W] in [0, 1]) of draws from the
    per-class Gaussians of (train_z, train_y), ``counts`` per class (see ``class_counts``).
    Returns (images float [sum, C, H, W], labels). Raises ValueError as ``fit_class_gaussians``."""
    means, covs = fit_class_gaussians(train_z, train_y, n_classes)
    z, labels = sample_class_gaussians(means, covs, counts, seed)
    return decode(z), labels


def fid_sample_count(cfg, device) -> int:
    """``fid_samples``, resolved: 10,000 on a GPU and 0 (off) on a CPU when not given."""
    if cfg.fid_samples is not None:
        return cfg.fid_samples
    return 10000 if str(device).startswith("cuda") else 0


@register_evaluator(
    "generation",
    "run",
    metrics=(
        Metric(
            "fid",
            "FID",
            "number",
            higher_is_better=False,
            headline=True,
            note="Inception FID of class-conditional samples against as many test images",
        ),
        Metric(
            "classifier_fid",
            "classifier FID",
            "number",
            higher_is_better=False,
            headline=True,
            note="Fréchet distance in a small classifier's features (grey data); not comparable with Inception FID",
        ),
        Metric("fid_samples", "samples for FID", "integer", None),
        Metric("gen_samples", "class-conditional samples", "integer", None, in_report=False),
        Metric("classifier_fid_net_acc", "test accuracy of the classifier-FID network", higher_is_better=None),
    ),
)
def generation_evaluator(run, rep, cfg, log) -> dict:
    """Class-conditional samples of a run with a decoder (paper A.7.6) and their Fréchet distances
    to the test images: ``classifier_fid`` on grey data, ``fid`` (Inception) where enabled.
    Returns {} (with a log line) for a method without a decoder."""
    import time

    from .fid import FidUnavailable, InceptionFeatures, frechet_distance, train_classifier

    if not run.method.has_decoder:
        log("generation: skipped, the method has no decoder")
        return {}
    if cfg.gen_samples < 2:
        log("generation: off (--gen-samples 0)")
        return {}
    content = rep.targets[0]
    data = run.data
    k = content.n_classes
    t = time.monotonic()
    try:  # as many samples of each class as the training set's class prior gives
        samples, labels = class_conditional_samples(
            run.decode, rep.train_x, content.train, k, class_counts(content.train, k, cfg.gen_samples), cfg.seed
        )
    except ValueError as e:
        log(f"generation: skipped, {e}")
        return {}
    samples = (samples * 255).round().to(torch.uint8)  # as saved images are: FID's protocol scores 8-bit images
    rep.artefacts["samples"], rep.artefacts["sample_labels"] = samples, labels  # for the report's samples.png
    out: dict = {"gen_samples": int(samples.shape[0])}
    log(
        f"generation: {samples.shape[0]} class-conditional samples (one full-covariance Gaussian per class, "
        f"classes in their training proportions; {time.monotonic() - t:.1f}s)"
    )
    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(samples.shape[0], generator=g)  # any prefix follows the class prior, about
    if data.image_shape[0] == 1 and len(data.classes) > 1:
        t = time.monotonic()
        net = train_classifier(data.train_images, data.train_labels, data.test_images, data.test_labels, len(data.classes), seed=0, log=log)
        out["classifier_fid"] = frechet_distance(net, data.test_images, samples[order])
        out["classifier_fid_net_acc"] = net.test_acc
        log(
            f"generation: classifier FID {out['classifier_fid']:.3f} ({samples.shape[0]} samples against "
            f"{len(data.test_images)} test images, features of a classifier of test accuracy {net.test_acc:.3f}; "
            f"{time.monotonic() - t:.1f}s)"
        )
    n_fid = min(fid_sample_count(cfg, run.device), samples.shape[0], len(data.test_images))
    if n_fid < 2:
        log(
            "generation: Inception FID off on the CPU (about 6 GFLOP per image: minutes per thousand images); "
            "--fid-samples N computes it from N samples against N test images"
        )
        return out
    try:
        inception = InceptionFeatures(run.device)
    except FidUnavailable as e:
        log(f"generation: no Inception FID: {e}")
        return out
    t = time.monotonic()
    real = data.test_images[torch.randperm(len(data.test_images), generator=g)[:n_fid]]
    out["fid"] = frechet_distance(inception, real, samples[order[:n_fid]], device=run.device)
    out["fid_samples"] = n_fid
    log(f"generation: FID {out['fid']:.2f} ({n_fid} samples against {n_fid} test images; {time.monotonic() - t:.1f}s)")
    return out


def latent_traversal(decode, z: torch.Tensor, n_directions: int = 4, steps=(-2.0, -1.0, 0.0, 1.0, 2.0)) -> torch.Tensor:
    """Decoded points along the top principal directions of representations z [N, d]: the mean
    plus t standard deviations along direction i, for t in ``steps``. Returns [k, len(steps), C, H, W]."""
    z = z.double()
    mean = z.mean(0)
    _, s, v = torch.linalg.svd(z - mean, full_matrices=False)
    k = min(n_directions, v.shape[0])
    sd = s[:k] / max(1, z.shape[0] - 1) ** 0.5
    t = torch.tensor(steps, dtype=torch.float64)
    points = mean + (t[None, :, None] * sd[:, None, None]) * v[:k, None, :]  # [k, s, d]
    frames = decode(points.reshape(-1, z.shape[1]).float())
    return frames.reshape(k, len(steps), *frames.shape[1:])
