"""Style retrieval: from the representation of an augmented image, predict what the
augmentation did (hypothesis H2 of the paper, §5: a generative representation keeps what
augmentations change; a discriminative one is trained to be invariant to it).

Each image gets one random view from the data set's own training augmentation (paper Table 2,
colour data: crop scale (0.6, 1) and colour jitter), with its parameters recorded. The style targets are those parameters, binned:

- ``style/flip``: vertically flipped or not (2 classes);
- ``style/crop_scale``: the crop's area as a fraction of the image, ``bins`` equal-mass bins;
- ``style/crop_centre``: the crop centre's row and column, each in 3 equal-mass bins (9 classes);
- colour data: ``style/brightness``, ``style/contrast``, ``style/saturation``, ``style/hue``:
  class 0 where the colour jitter was not applied to the view (probability 0.2), else the bin
  of the factor drawn, ``bins`` equal-mass bins among the jittered views (``bins`` + 1 classes).

Bin edges are quantiles of the training draws, so the classes are about equally frequent (not
exactly for crop centres of small images, whose pixel positions tie on the edges);
``style/NAME/chance`` is the accuracy of always predicting the test set's most frequent class,
which an invariant representation scores. The views are made and encoded in chunks, so only the
representations are kept in memory.
"""

from __future__ import annotations

import torch

from ..augment import to_float
from ..augment.ops import pipeline_for
from ..data.targets import Target
from .protocol import evaluate_targets
from .registry import register_evaluator

JITTER_NAMES = ("brightness", "contrast", "saturation", "hue")


def _bins(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    return torch.bucketize(values.contiguous(), edges.contiguous(), right=True)


def _edges(train_values: torch.Tensor, bins: int) -> torch.Tensor:
    q = torch.linspace(0, 1, bins + 1, dtype=torch.float64)[1:-1]
    return torch.quantile(train_values.double(), q).float()


def style_labels(params, image_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
    """The raw style values of one view per image from a pipeline's parameters: flip (0/1),
    crop_scale (area fraction), crop_centre_row / crop_centre_col (fractions of the image), and
    the applied jitter factors where the pipeline jitters colour."""
    geo = params[0]
    height, width = image_hw
    out = {
        "flip": geo.vflip.long(),
        "crop_scale": (geo.height * geo.width).double() / (height * width),
        "crop_centre_row": (geo.top + geo.height / 2).double() / height,
        "crop_centre_col": (geo.left + geo.width / 2).double() / width,
    }
    jitter = next((p for p in list(params)[1:] if p is not None and hasattr(p, "factors")), None)
    if jitter is not None:  # the factor drawn, and whether the jitter was applied to this view at all
        out["jitter_applied"] = jitter.apply.cpu()
        out.update({name: jitter.factors[:, i].cpu().double() for i, name in enumerate(JITTER_NAMES)})
    return out


def style_targets(train_values: dict[str, torch.Tensor], test_values: dict[str, torch.Tensor], bins: int = 4) -> list[Target]:
    """Binned style targets (role ``style``, names ``style/...``) from raw values of training
    and test views; the bin edges come from the training values."""
    targets = [Target("style/flip", train_values["flip"], test_values["flip"], 2, "style", ["upright", "flipped"])]

    def binned(name: str, n_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
        e = _edges(train_values[name], n_bins)
        return _bins(train_values[name].float(), e), _bins(test_values[name].float(), e)

    tr, te = binned("crop_scale", bins)
    targets.append(Target("style/crop_scale", tr, te, bins, "style", [f"q{i + 1}" for i in range(bins)]))
    r_tr, r_te = binned("crop_centre_row", 3)
    c_tr, c_te = binned("crop_centre_col", 3)
    targets.append(Target("style/crop_centre", 3 * r_tr + c_tr, 3 * r_te + c_te, 9, "style", [f"{r}{c}" for r in "tmb" for c in "lcr"]))
    for name in JITTER_NAMES:  # class 0: not jittered; 1..bins: the factor's bin among jittered views
        if name in train_values:
            on_tr, on_te = train_values["jitter_applied"], test_values["jitter_applied"]
            e = _edges(train_values[name][on_tr], bins)
            tr = torch.where(on_tr, _bins(train_values[name].float(), e) + 1, 0)
            te = torch.where(on_te, _bins(test_values[name].float(), e) + 1, 0)
            targets.append(Target(f"style/{name}", tr, te, bins + 1, "style", ["not jittered"] + [f"q{i + 1}" for i in range(bins)]))
    return targets


def chance(target: Target) -> float:
    """Accuracy of always predicting the most frequent labelled class of the test split."""
    y = target.test[target.test >= 0]
    return float(torch.bincount(y, minlength=target.n_classes).max()) / max(1, y.numel())


@torch.no_grad()
def augmented_representations(
    encode, images: torch.Tensor, spec, binarize: bool, seed: int, device="cpu", chunk: int = 4096
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One random view of each uint8 image [N, C, H, W] (the data set's augmentation ``spec``,
    seeded) -> (``encode`` of the views, float [N, d] on the CPU; raw style values, each [N])."""
    pipeline = pipeline_for(spec, binarize)
    hw = tuple(images.shape[-2:])
    g = torch.Generator().manual_seed(seed)
    params = pipeline.make_params(images.shape[0], hw, g, "cpu")
    reps = []
    for s in range(0, images.shape[0], chunk):
        x = to_float(images[s : s + chunk])  # views made on the CPU (parameters drawn there), encoded on the device
        views = pipeline(x, params[s : s + x.shape[0]])[:, 0]
        reps.append(encode(views.to(device)).float().cpu())
    return torch.cat(reps), style_labels(params, hw)


@register_evaluator("style", "run")
def style_evaluator(run, rep, cfg, log) -> dict:
    """Style retrieval on the data set's augmentation (k-NN and probes on the style targets);
    adds ``style/NAME/chance``."""
    import time

    if "knn" in cfg.skip and "probes" in cfg.skip:
        return {}  # nothing would score the style targets
    t = time.monotonic()
    data = run.data
    n = len(data.train_images) if cfg.style_max_train_images is None else min(cfg.style_max_train_images, len(data.train_images))
    spec = run.augment_spec
    encode = run.method.encode
    train_x, train_v = augmented_representations(encode, data.train_images[:n], spec, data.binarized, cfg.seed + 1, run.device)
    test_x, test_v = augmented_representations(encode, data.test_images, spec, data.binarized, cfg.seed + 2, run.device)
    targets = style_targets(train_v, test_v, cfg.style_bins)
    log(
        f"style: {len(targets)} targets ({', '.join(t.name.split('/', 1)[1] for t in targets)}) on one augmented view of "
        f"{n} training and {len(test_x)} test images ({time.monotonic() - t:.1f}s)"
    )
    out = evaluate_targets(train_x, test_x, targets, cfg, log, skip=tuple(cfg.skip) + ("gmm",))
    out = {k: v for k, v in out.items() if "/" in k}  # n_train etc. describe the content evaluation
    for target in targets:
        out[f"{target.name}/chance"] = chance(target)
    return out
