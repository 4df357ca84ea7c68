"""Checks of the offline FID pipeline, with the numbers they give.

1. FID of a set of images against itself: ~0.
2. FID of real images with Gaussian pixel noise of growing strength against the same clean
   images: grows monotonically from 0.
3. FID of CIFAR-10 training images against test images (the JPEG copy): the commonly reported
   figure is ~3 for 50,000 vs 10,000 of the original files. FID is biased upwards at small
   sample counts (roughly by a term proportional to 1/N), so it is measured at N/4, N/2 and N
   and extrapolated to N -> infinity by a least-squares fit of FID = FID_inf + k / N
   (Chong & Forsyth 2020).

Inception costs about 6 GFLOP per image: on one CPU core about 0.5 s per image, so the default
counts take a quarter of an hour on a CPU; a GPU does them in seconds (raise --n there).

    python benchmarks/fid_checks.py --cifar-dir DIR [--n 600] [--noise-n 150] [--out fid_checks.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from torch import nn


class _Given(nn.Module):
    """The 'feature network' of precomputed features: torchmetrics' FID computed on them as they are."""

    num_features = 2048

    def forward(self, x):
        return x


def fid_of(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    m = FrechetInceptionDistance(feature=_Given(), normalize=True)
    m.update(features_a, real=True)
    m.update(features_b, real=False)
    return float(m.compute())


def features(net, images: torch.Tensor, what: str, batch: int = 50) -> torch.Tensor:
    t = time.monotonic()
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = images[s : s + batch]
            out.append(net(x.float() / 255 if x.dtype == torch.uint8 else x))
    print(f"  features of {len(images)} {what}: {time.monotonic() - t:.0f}s", flush=True)
    return torch.cat(out).double()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cifar-dir", required=True, help="folder with train/ and test/ class folders (the JPEG copy)")
    ap.add_argument("--n", type=int, default=600, help="images per side for train vs test")
    ap.add_argument("--noise-n", type=int, default=150, help="images for the noise check")
    ap.add_argument("--out", default="fid_checks.json")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from simvae.data import load_dataset
    from simvae.evaluate.fid import InceptionFeatures

    net = InceptionFeatures(args.device)
    data = load_dataset("cifar10", args.cifar_dir, download=False)
    g = torch.Generator().manual_seed(0)
    train = data.train_images[torch.randperm(len(data.train_images), generator=g)[: args.n]]
    test = data.test_images[torch.randperm(len(data.test_images), generator=g)[: args.n]]
    result: dict = {
        "host": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "n": args.n,
        "noise_n": args.noise_n,
        "data": "CIFAR-10 (JPEG copy)",
    }
    f_test = features(net, test, "test images")
    result["self_fid"] = fid_of(f_test, f_test)
    print(f"1. FID of {args.n} test images against themselves: {result['self_fid']:.4f}", flush=True)

    clean = test[: args.noise_n].float() / 255
    sigmas = [0.0, 0.02, 0.05, 0.1, 0.2]
    noise = torch.randn(clean.shape, generator=g)
    f_clean = f_test[: args.noise_n]
    result["noise"] = {}
    for s in sigmas:
        f_noisy = f_clean if s == 0 else features(net, (clean + s * noise).clamp(0, 1), f"images with noise sd {s}")
        result["noise"][str(s)] = fid_of(f_clean, f_noisy)
        print(f"2. noise sd {s}: FID {result['noise'][str(s)]:.2f}", flush=True)
    vals = list(result["noise"].values())
    result["noise_monotonic"] = all(b > a for a, b in zip(vals, vals[1:]))

    f_train = features(net, train, "training images")
    sizes = [args.n // 4, args.n // 2, args.n]
    fids = [fid_of(f_train[:k], f_test[:k]) for k in sizes]
    slope, intercept = np.polyfit(1.0 / np.array(sizes, dtype=float), np.array(fids), 1)
    result["train_vs_test"] = {str(k): f for k, f in zip(sizes, fids)}
    result["train_vs_test_extrapolated"] = float(intercept)
    print(
        "3. CIFAR-10 train vs test: "
        + ", ".join(f"N={k}: {f:.2f}" for k, f in zip(sizes, fids))
        + f"; extrapolated to N -> inf: {intercept:.2f}",
        flush=True,
    )
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
