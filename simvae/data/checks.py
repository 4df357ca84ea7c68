"""Checks every loader runs on what it has read, before any training starts.

A damaged file, or one from another data set, must be refused when it is loaded, naming
the file and the first offending entry, not hours later in evaluation. Loaders of any
format (IDX now; CIFAR-10, CelebA or image folders later) call these same functions.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError


def check_labels(labels: torch.Tensor, n_classes: int, path: str | Path, dataset: str) -> None:
    """Refuse class labels outside 0..n_classes-1.

    labels: integer tensor [N] as read from ``path``; dataset: the data set's name, for the message.
    Raises DataError naming the file, the first offending value and its index, e.g.
    "…/train-labels-idx1-ubyte: label 10 at index 3 is outside 0..9 for fashion-mnist's 10 classes; ...".
    """
    if labels.numel() == 0:
        return
    if int(labels.min()) >= 0 and int(labels.max()) < n_classes:
        return
    bad = ((labels < 0) | (labels >= n_classes)).nonzero()
    i = int(bad[0, 0])
    raise DataError(
        f"{path}: label {int(labels[i])} at index {i} is outside 0..{n_classes - 1} for {dataset}'s {n_classes} "
        "classes; the file is damaged or from another data set"
    )


def check_counts(n_images: int, n_labels: int, images_path: str | Path, labels_path: str | Path) -> None:
    """Refuse an images file and a labels file of one split that hold different numbers of entries.

    Raises DataError naming both files and both counts."""
    if n_images != n_labels:
        raise DataError(
            f"{images_path} holds {n_images} images but {labels_path} holds {n_labels} labels; the two files must come from the same split"
        )
