"""Projection heads for the discriminative baselines (one builder, three settings).

The representation is the encoder output *before* the head (paper §4.3.2); the head
only shapes the space the loss is computed in.

- SimCLR (Chen et al., 2020a):   Linear - ReLU - Linear
- MoCo v2 (Chen et al., 2020b):  Linear - ReLU - Linear (MoCo v1 has no head)
- VICReg expander (Bardes et al., 2022): (Linear - BN - ReLU) x 2 - Linear

The original heads are sized for a 2048-d ResNet-50 output (SimCLR/MoCo v2: 2048 -> 128,
VICReg: 3 x 8192). Our representations have 10 (MLP) or 64 (conv) dimensions, so the
defaults are scaled down: hidden 512 -> 128 for SimCLR / MoCo v2, 3 x 512 for VICReg.
They are options of each method (``head_hidden``, ``head_out``).
"""

from __future__ import annotations

from torch import nn

from .norm import GlobalBatchNorm1d


def projection_head(in_dim: int, hidden_dim: int, out_dim: int, n_layers: int = 2, batch_norm: bool = False) -> nn.Sequential:
    """``n_layers`` linear layers; ReLU (after BatchNorm when asked) between them, none after the last."""
    if n_layers < 1:
        raise ValueError(f"a head needs at least one layer, got {n_layers}")
    sizes = [in_dim] + [hidden_dim] * (n_layers - 1) + [out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == n_layers - 1
        layers.append(nn.Linear(a, b, bias=last or not batch_norm))  # BN's shift replaces the bias
        if not last:
            if batch_norm:
                layers.append(GlobalBatchNorm1d(b))
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def simclr_head(in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> nn.Sequential:
    """SimCLR's g(h) = W2 ReLU(W1 h)."""
    return projection_head(in_dim, hidden_dim, out_dim, n_layers=2)


def mocov2_head(in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> nn.Sequential:
    """MoCo v2's MLP head (the same form as SimCLR's, which MoCo v2 borrowed)."""
    return projection_head(in_dim, hidden_dim, out_dim, n_layers=2)


def vicreg_expander(in_dim: int, hidden_dim: int = 512, out_dim: int = 512) -> nn.Sequential:
    """VICReg's expander: two Linear-BN-ReLU blocks and a final Linear."""
    return projection_head(in_dim, hidden_dim, out_dim, n_layers=3, batch_norm=True)
