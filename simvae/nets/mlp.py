"""The MLP encoder and decoder for MNIST / Fashion-MNIST (paper Table 3).

encoder: 784 -> 500 -> 500 -> 2000 -> out, decoder: latent -> 2000 -> 500 -> 500 -> 784,
ReLU between layers. The public reference code uses a larger variant; we follow the paper.
Generative methods ask the encoder for 2 * latent outputs (posterior mean and
log-variance heads); discriminative methods for latent outputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ENCODER_HIDDEN = (500, 500, 2000)
DECODER_HIDDEN = (2000, 500, 500)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], out_dim: int, hidden=ENCODER_HIDDEN):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.out_dim = out_dim
        self.net = mlp([math.prod(image_shape), *hidden, out_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """Returns the pixel means (Gaussian likelihood) or logits (Bernoulli), shaped as images."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, hidden=DECODER_HIDDEN):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.net = mlp([latent_dim, *hidden, math.prod(image_shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.image_shape)
