"""Small ResNet encoder and decoder for 32x32 / 64x64 colour images (paper Table 4).

encoder (64x64):  conv 4x4, 16 ch, stride 1, BN, ReLU, 3x3 max-pool stride 2   -> 16 x 32 x 32
                  residual stages 32 (stride 1), 64, 128, 256 (stride 2 each)  -> 256 x 4 x 4
                  fc 4096 -> out
decoder (64x64):  fc latent -> 256 x 4 x 4
                  upsampling residual stages 128, 64, 32, 16 (x2 each)         -> 16 x 64 x 64
                  conv 5x5 -> C channels (pixel means, or logits)

The table is written for 64x64 inputs (CelebA). For 32x32 inputs (CIFAR-10) we read it as:
no max-pool in the encoder, so its fc still sees 256 x 4 x 4, and one upsampling stage fewer
in the decoder (128, 64, 32). Each residual stage is two 3x3 convolutions with BatchNorm and
a projection shortcut where the shape changes; the decoder upsamples by nearest-neighbour x2
before its first convolution (no checkerboard artefacts of transposed convolutions).
Their weights are put in channels_last memory format on a GPU and on a CPU (``nets.use_fast_layout``).
"""

from __future__ import annotations

import torch
from torch import nn

from .norm import GlobalBatchNorm2d

ENCODER_STAGES = (32, 64, 128, 256)  # output channels; strides 1, 2, 2, 2
DECODER_STAGES = (128, 64, 32, 16)  # each doubles the resolution
STEM_CHANNELS = 16
BOTTLENECK = 4  # the encoder's last feature map and the decoder's first are 256 x 4 x 4
SIZES = (32, 64)


def _check_shape(image_shape) -> tuple[int, int]:
    c, h, w = image_shape
    if h != w or h not in SIZES:
        raise ValueError(
            f"the conv networks (paper Table 4) take square 32x32 or 64x64 images, got {h}x{w}; "
            "resize the images (e.g. CelebA to 64x64) or use network 'mlp'"
        )
    return c, h


def _fast_layout(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


class ResidualBlock(nn.Module):
    """y = ReLU(BN(conv3x3(ReLU(BN(conv3x3_s(x))))) + shortcut(x)), optionally upsampling x2 first."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, upsample: bool = False):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest") if upsample else nn.Identity()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = GlobalBatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = GlobalBatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (
            nn.Identity()
            if (c_in == c_out and stride == 1)
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), GlobalBatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ConvEncoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], out_dim: int):
        super().__init__()
        c, size = _check_shape(image_shape)
        self.image_shape, self.out_dim = tuple(image_shape), out_dim
        # a 4x4 kernel keeps the size with padding 1 before and 2 after ('same')
        stem: list[nn.Module] = [
            nn.ZeroPad2d((1, 2, 1, 2)),
            nn.Conv2d(c, STEM_CHANNELS, 4, bias=False),
            GlobalBatchNorm2d(STEM_CHANNELS),
            nn.ReLU(inplace=True),
        ]
        if size == 64:
            stem.append(nn.MaxPool2d(3, stride=2, padding=1))
        stages, c_in = [], STEM_CHANNELS
        for i, c_out in enumerate(ENCODER_STAGES):
            stages.append(ResidualBlock(c_in, c_out, stride=1 if i == 0 else 2))
            c_in = c_out
        self.features = nn.Sequential(*stem, *stages)
        self.fc = nn.Linear(ENCODER_STAGES[-1] * BOTTLENECK**2, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(_fast_layout(x)).flatten(1))


class ConvDecoder(nn.Module):
    """Returns the pixel means (Gaussian likelihood) or logits (Bernoulli), shaped as images."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int):
        super().__init__()
        c, size = _check_shape(image_shape)
        self.image_shape = tuple(image_shape)
        self.fc = nn.Linear(latent_dim, ENCODER_STAGES[-1] * BOTTLENECK**2)
        n_stages = {32: 3, 64: 4}[size]  # 4 -> 32 takes three doublings, 4 -> 64 four
        stages, c_in = [], ENCODER_STAGES[-1]
        for c_out in DECODER_STAGES[:n_stages]:
            stages.append(ResidualBlock(c_in, c_out, upsample=True))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.out = nn.Conv2d(c_in, c, 5, padding=2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], ENCODER_STAGES[-1], BOTTLENECK, BOTTLENECK)
        return self.out(self.stages(_fast_layout(h))).contiguous()
