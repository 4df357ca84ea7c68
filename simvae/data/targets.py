"""Targets: the questions asked of each image at evaluation (its class, a style label, an
attribute), with missing values allowed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch


@dataclass
class Target:
    """One question asked of every image: labels int64 ``train`` [N] and ``test`` [M] in
    0..n_classes-1, -1 where an image has no label for it (left out of this target only).
    ``role``: content (what augmentations keep) or style (what they change)."""

    name: str
    train: torch.Tensor
    test: torch.Tensor
    n_classes: int
    role: Literal["content", "style"] = "content"
    class_names: list[str] = field(default_factory=list)

    def prefix(self, content_name: str = "class") -> str:
        """'' for the content target ``class`` (today's bare metric keys), else 'NAME/'."""
        return "" if self.name == content_name else f"{self.name}/"

    def head(self, n: int) -> "Target":
        """The target of the first ``n`` training images."""
        return Target(self.name, self.train[:n], self.test, self.n_classes, self.role, self.class_names)
