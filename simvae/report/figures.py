"""Figures people would rather look at than read: reconstructions, a 2-D map of the
representations, and the training curve."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _show(ax, img: torch.Tensor) -> None:
    img = img.float().clamp(0, 1)
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def reconstruction_grid(images: torch.Tensor, rows: dict[str, torch.Tensor], path: Path, title: str = "") -> None:
    """One row of test images, then one row per entry of ``rows`` (e.g. method -> reconstructions)."""
    all_rows = {"original": images.float() / 255 if images.dtype == torch.uint8 else images, **rows}
    _grid(list(all_rows.values()), list(all_rows), path, title)


MIN_DISTINCT_ROWS = 10  # fewer distinct representations than this: nothing to map
MIN_RELATIVE_SPREAD = 1e-6  # total standard deviation below this fraction of the values' scale (at least 1): collapsed


def check_mappable(x: np.ndarray) -> None:
    """Raise ValueError (with the reason) when representations ``x`` [n, d] cannot be mapped in 2-D:
    non-finite values, fewer than two points, fewer than ``MIN_DISTINCT_ROWS`` distinct rows, or a
    spread that is zero to rounding (a collapsed encoder maps every image to about the same point)."""
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"too few points to map ({len(x)})")
    if not np.isfinite(x).all():
        raise ValueError("the representations contain NaN or inf")
    distinct = len(np.unique(x.round(decimals=12), axis=0))
    if distinct < min(MIN_DISTINCT_ROWS, len(x)):
        raise ValueError(
            f"degenerate representations: {len(x)} points have only {distinct} distinct "
            "representation" + ("" if distinct == 1 else "s") + " (a collapsed encoder); nothing to map"
        )
    spread = float(np.sqrt(x.var(0).sum()))
    scale = max(float(np.abs(x).mean()), 1.0)
    if spread <= MIN_RELATIVE_SPREAD * scale:
        raise ValueError(
            f"degenerate representations: almost no variance (total standard deviation {spread:.2g}, a collapsed encoder); nothing to map"
        )


def latent_map(
    reps: torch.Tensor, labels: torch.Tensor, classes: list[str], path: Path, n_points: int = 3000, seed: int = 0, title: str = ""
) -> str:
    """2-D t-SNE map of (a random subset of) the representations, coloured by class.

    Raises ValueError before t-SNE for representations it cannot map: non-finite, too few points,
    or degenerate ones (almost all rows alike, or almost no variance: a collapsed encoder), on which
    scikit-learn's t-SNE can crash the process instead of raising."""
    from sklearn.manifold import TSNE

    g = np.random.default_rng(seed)
    n = reps.shape[0]
    idx = g.choice(n, size=min(n_points, n), replace=False) if n_points < n else np.arange(n)
    x = reps[idx].detach().cpu().double().numpy()
    check_mappable(x)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    if x.shape[1] > 2 and len(x) > 5:
        xy = TSNE(n_components=2, init="pca", perplexity=min(30.0, (len(x) - 1) / 3), random_state=seed).fit_transform(x)
        how = "t-SNE"
    else:
        xy = np.pad(x, ((0, 0), (0, max(0, 2 - x.shape[1]))))[:, :2]
        how = "raw"
    y = labels[idx].numpy()
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for c, name in enumerate(classes):
        m = y == c
        ax.scatter(xy[m, 0], xy[m, 1], s=3, color=cmap(c % cmap.N), label=str(name))
    ax.legend(markerscale=4, fontsize=8, loc="best", frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"test representations ({how}, {len(x)} points)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return how


def loss_curve(steps_jsonl: Path, epochs_jsonl: Path, path: Path, loss_name: str = "training loss") -> bool:
    """The loss terms over training: one panel per term, from the per-step log (averages over a
    few steps) where there is one, else the per-epoch log. False when there is nothing to plot."""
    source = steps_jsonl if steps_jsonl.is_file() and steps_jsonl.stat().st_size else epochs_jsonl
    if not source.is_file():
        return False
    recs = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    if not recs:
        return False
    skip = {"epoch", "step", "epoch_seconds", "images_per_s", "views_per_s", "wall_seconds", "val_knn_acc"}
    terms = [k for k in recs[0] if k not in skip and isinstance(recs[0][k], (int, float))]
    fig, axes = plt.subplots(1, len(terms), figsize=(3.6 * len(terms), 3.2), squeeze=False)
    x = [r.get("epoch", 0) for r in recs]
    for ax, term in zip(axes[0], terms):
        ax.plot(x, [r.get(term) for r in recs], marker="o" if len(recs) < 20 else None, lw=1)
        ax.set_xlabel("epoch")
        ax.set_title(loss_name if term == "loss" else term, fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _grid(rows: list[torch.Tensor], row_labels: list[str], path: Path, title: str = "", col_labels=None) -> None:
    """Images in a grid: one list entry per row (float [n, C, H, W] in [0, 1])."""
    n = max(r.shape[0] for r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.85 + 1.2, len(rows) * 0.85 + 0.5), squeeze=False)
    for r, imgs in enumerate(rows):
        for c in range(n):
            if c < imgs.shape[0]:
                _show(axes[r, c], imgs[c])
            else:
                axes[r, c].axis("off")
        axes[r, 0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=8)
    for c, label in enumerate(col_labels or []):
        axes[0, c].set_title(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sample_grid(samples: torch.Tensor, labels: torch.Tensor, classes: list[str], path: Path, per_class: int = 10, title: str = "") -> None:
    """Class-conditional samples (paper Fig. 10): one row per class, ``per_class`` samples each."""
    rows = [samples[labels == k][:per_class] for k in range(len(classes))]
    keep = [i for i, r in enumerate(rows) if r.shape[0]]
    _grid([rows[i] for i in keep], [str(classes[i]) for i in keep], path, title)


def augmentation_grid(images: torch.Tensor, views: torch.Tensor, recons: dict[str, torch.Tensor], path: Path, title: str = "") -> None:
    """For each image: a row with the image and its augmented views, then one row per entry of
    ``recons`` (label -> reconstructions [n, 1 + J, C, H, W] of the image and of each view).
    images [n, C, H, W], views [n, J, C, H, W], floats in [0, 1]."""
    rows, labels = [], []
    for i in range(images.shape[0]):
        rows.append(torch.cat([images[i : i + 1], views[i]]))
        labels.append(f"image {i + 1}")
        for label, rec in recons.items():
            rows.append(rec[i])
            labels.append(label)
    cols = ["image"] + [f"view {j + 1}" for j in range(views.shape[1])]
    _grid(rows, labels, path, title, cols)


def traversal_grid(frames: torch.Tensor, steps: list[float], path: Path, title: str = "") -> None:
    """Latent traversal: frames [k, s, C, H, W], row i decodes the mean moved along direction i by
    steps[j] standard deviations."""
    _grid(list(frames), [f"PC {i + 1}" for i in range(frames.shape[0])], path, title, [f"{t:+.1f}σ" for t in steps])


def _footnote(fig, note: str) -> None:
    """``note`` in small type under the axes (e.g. what a mark in the labels means), then the layout."""
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, ha="left", va="bottom", wrap=True)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    else:
        fig.tight_layout()


def content_style_scatter(points: list[dict], path: Path, x_label: str, y_label: str, title: str = "", note: str = "") -> None:
    """One point per comparison row (``label``, ``x``, ``y``, optional ``x_se``/``y_se``), with
    error bars where a row averages several runs (paper Fig. 5, middle: content vs style); ``note``
    under the axes."""
    fig, ax = plt.subplots(figsize=(6.2, 5))
    cmap = plt.get_cmap("tab10")
    for i, p in enumerate(points):
        ax.errorbar(
            100 * p["x"],
            100 * p["y"],
            xerr=100 * p["x_se"] if p.get("x_se") else None,
            yerr=100 * p["y_se"] if p.get("y_se") else None,
            fmt="o",
            color=cmap(i % 10),
            capsize=3,
            label=p["label"],
        )
        ax.annotate(p["label"], (100 * p["x"], 100 * p["y"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    _footnote(fig, note)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def target_accuracies_and_gains(
    targets: list[str],
    rows: dict[str, list[float]],
    reference: str,
    path: Path,
    title: str = "",
    chance: list[float] | None = None,
    note: str = "",
) -> None:
    """Per-target test accuracy of each row (top) and the gain of the ``reference`` row over each
    other row (bottom), in percentage points (paper Fig. 5 right and Fig. 6). ``rows`` maps a row
    label to its accuracies in ``targets`` order (NaN where missing); ``chance`` (same order, NaN
    where unknown) is drawn as a grey bar on each target; the title's second line names the reference
    row; ``note`` goes under the axes."""
    x = np.arange(len(targets))
    others = [label for label in rows if label != reference]
    width = 0.8 / max(1, len(others))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(7.0, 0.45 * len(targets) + 3), 7.5), sharex=True)
    cmap = plt.get_cmap("tab10")
    for i, (label, accs) in enumerate(rows.items()):
        top.plot(
            x,
            100 * np.asarray(accs, dtype=float),
            "o" if label != reference else "*",
            ms=5 if label != reference else 10,
            color="k" if label == reference else cmap(i % 10),
            label=label,
        )
    if chance is not None and np.isfinite(np.asarray(chance, dtype=float)).any():
        top.plot(x, 100 * np.asarray(chance, dtype=float), "_", ms=16, mew=2, color="0.6", label="chance", zorder=0)
    ref = np.asarray(rows[reference], dtype=float)
    for i, label in enumerate(others):
        gain = 100 * (ref - np.asarray(rows[label], dtype=float))
        bottom.bar(x - 0.4 + width * (i + 0.5), gain, width, color=cmap((list(rows).index(label)) % 10), label=label)
    bottom.axhline(0, color="k", lw=0.8)
    top.set_ylabel("test accuracy (%)")
    bottom.set_ylabel(f"{reference} minus method (points)")
    bottom.set_xticks(x)
    bottom.set_xticklabels(targets, rotation=60, ha="right", fontsize=8)
    top.legend(fontsize=8, ncol=3, frameon=False)
    bottom.legend(fontsize=8, ncol=3, frameon=False)
    for ax in (top, bottom):
        ax.grid(alpha=0.3, axis="y")
    top.set_title((title + "\n" if title else "") + f"reference of the gains: {reference}", fontsize=10)
    _footnote(fig, note)
    fig.savefig(path, dpi=100)
    plt.close(fig)
