"""Post-hoc decoders for methods without one (paper Appendix A.7.6, "Ad-hoc decoder training").

The encoder is frozen; a decoder of the generative methods' architecture (paper Tables
3b/4b) learns to reconstruct the un-augmented training images from their representations
with the mean squared error, Adam lr 1e-4, until the validation loss stops improving
(the paper reports ~10-80 epochs). The best decoder (lowest validation MSE) is returned.
It trains in the run's precision (bf16 autocast where the device computes it natively) with
fused Adam and, for the conv decoder, channels_last weights, as the training loop does; its
validation MSE is measured in fp32.
Its raw outputs are pixel means; clamp them to [0, 1] when using them (``reconstruct``).
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import to_float
from ..hardware import autocast, resolve_precision
from ..methods.base import ModelSpec
from ..nets import build_decoder, use_fast_layout
from .progress import every


@torch.no_grad()
def representations(
    encode_fn: Callable[[torch.Tensor], torch.Tensor], images_uint8: torch.Tensor, device, batch_size: int = 1024
) -> torch.Tensor:
    """encode_fn over uint8 images [N, C, H, W] in chunks -> float32 [N, d] on ``device``."""
    out = [encode_fn(to_float(images_uint8[i : i + batch_size].to(device))).float() for i in range(0, len(images_uint8), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def _mse(decoder: nn.Module, z: torch.Tensor, images_uint8: torch.Tensor, device, batch_size: int) -> float:
    total = 0.0
    for i in range(0, len(z), batch_size):
        x = to_float(images_uint8[i : i + batch_size].to(device))
        total += F.mse_loss(decoder(z[i : i + batch_size]), x, reduction="sum").item()
    return total / (len(z) * math.prod(images_uint8.shape[1:]))


def fit_decoder(
    encode_fn: Callable[[torch.Tensor], torch.Tensor],
    train_images_uint8: torch.Tensor,
    spec: ModelSpec,
    device,
    seed: int = 0,
    lr: float = 1e-4,
    batch_size: int = 128,
    max_epochs: int = 80,
    patience: int = 5,
    val_fraction: float = 0.1,
    progress: bool = True,
    precision: str = "fp32",
    on_epoch: Callable[[int, int, float, float], None] | None = None,
) -> nn.Module:
    """Train a decoder on frozen representations ``encode_fn(images)`` to reconstruct the images.

    A random ``val_fraction`` of the images (seeded) is held out; training stops after
    ``patience`` epochs without a lower validation MSE, or after ``max_epochs``. ``precision``
    ("fp32" or "bf16", resolved: see ``simvae.hardware.resolve_precision``) is the training
    step's autocast; ``on_epoch(epoch, max_epochs, val_mse, best_val_mse)`` is called after each
    epoch (for log lines). Returns the decoder with the best validation MSE, in eval mode, on
    ``device``. Raises ValueError for fewer than 2 images or impossible options.
    """
    device = torch.device(device)
    n = len(train_images_uint8)
    if n < 2:
        raise ValueError(f"fit_decoder needs at least 2 images, got {n}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16' (resolved), got {precision!r}")
    if max_epochs < 1 or patience < 1 or not 0 < val_fraction < 1:
        raise ValueError(f"need max_epochs >= 1, patience >= 1, 0 < val_fraction < 1; got {max_epochs}, {patience}, {val_fraction}")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    images = train_images_uint8  # stays uint8 (and where it is); batches go to the device as floats
    z_all = representations(encode_fn, images, device)  # frozen: computed once
    z_train, z_val = z_all[train_idx.to(device)], z_all[val_idx.to(device)]
    x_val = images[val_idx]

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        decoder = use_fast_layout(build_decoder(spec.network, spec.image_shape, spec.latent_dim).to(device), spec.network, device)
    opt = torch.optim.Adam(decoder.parameters(), lr=lr, fused=device.type in ("cpu", "cuda"))
    best, best_state, stale = math.inf, copy.deepcopy(decoder.state_dict()), 0
    bar = _progress(max_epochs, progress)
    for epoch in range(max_epochs):
        decoder.train()
        order = torch.randperm(len(train_idx), generator=gen)
        for s in range(0, len(order), batch_size):
            sel = order[s : s + batch_size]
            x = to_float(images[train_idx[sel]].to(device))
            with autocast(precision, device):
                x_hat = decoder(z_train[sel.to(device)])
            loss = F.mse_loss(x_hat.float(), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        decoder.eval()
        val = _mse(decoder, z_val, x_val, device, 1024)
        if val < best:
            best, best_state, stale = val, copy.deepcopy(decoder.state_dict()), 0
        else:
            stale += 1
        if on_epoch is not None:
            on_epoch(epoch + 1, max_epochs, val, best)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({"val_mse": f"{val:.5f}", "best": f"{best:.5f}"}, refresh=False)
        if stale >= patience:
            break
    if bar is not None:
        bar.close()
    decoder.load_state_dict(best_state)
    decoder.eval()
    decoder.val_mse = best  # type: ignore[attr-defined]  (for reports)
    decoder.epochs = epoch + 1  # type: ignore[attr-defined]
    return decoder


def ensure_decoder(run, log: Callable[[str], None] = print, progress: bool = False, **fit_options) -> nn.Module:
    """Attach a post-hoc decoder to ``run.method`` (a loaded run, ``simvae.run.Run``) and return it.

    Reused from ``RUN_DIR/decoder.pt`` when that file is newer than the run's checkpoint;
    otherwise fitted on the run's training images (the same ``train_subset`` the method
    was trained on), seeded by the evaluation seed, and saved there. ``fit_options`` go to
    ``fit_decoder`` (lr, batch_size, max_epochs, patience, val_fraction, precision: by default
    bf16 where the run's precision is auto or bf16 and bf16 is fast here, ``resolve_precision``; else fp32).
    """
    import time

    from ..checkpoint import CHECKPOINT_NAME
    from ..run import DECODER_NAME, load_decoder, save_decoder

    path, ckpt = run.path / DECODER_NAME, run.path / CHECKPOINT_NAME
    spec = run.method.spec
    if path.is_file() and (not ckpt.is_file() or path.stat().st_mtime >= ckpt.stat().st_mtime):
        decoder = load_decoder(path, spec, run.device)
        log(f"post-hoc decoder loaded from {path}")
    else:
        images = run.data.subset_train(run.config.train.train_subset).train_images
        log(f"fitting a post-hoc decoder on {len(images)} frozen representations (MSE, until the validation loss stops improving)")
        t0 = time.monotonic()
        # bf16 only where the run allows it and it is faster on this device; never emulated bf16
        # (many times slower), e.g. a run trained in bf16 on a GPU and evaluated on an AVX2 CPU
        fit_options.setdefault("precision", "fp32" if run.config.train.precision == "fp32" else resolve_precision("auto", run.device))
        fit_options.setdefault(
            "on_epoch",
            every(
                30.0,
                lambda e, n, el, val, best: log(
                    f"  post-hoc decoder: epoch {e} of at most {n}, validation MSE {val:.5f} (best {best:.5f}), {el:.0f}s"
                ),
            ),
        )
        decoder = fit_decoder(run.method.encode, images, spec, run.device, seed=run.config.eval.seed, progress=progress, **fit_options)
        decoder.max_epochs = fit_options.get("max_epochs", 80)  # type: ignore[attr-defined]
        save_decoder(decoder, path)
        log(
            f"post-hoc decoder: validation MSE {decoder.val_mse:.5f} after {decoder.epochs} epochs "
            f"({time.monotonic() - t0:.1f}s), saved to {path}"
        )
    run.method.attach_decoder(decoder)
    return decoder


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="post-hoc decoder", leave=False, dynamic_ncols=True, mininterval=0.5)
