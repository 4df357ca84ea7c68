"""Networks: encoders, decoders (paper Tables 3 and 4) and projection heads."""

from torch import nn

from .conv import ConvDecoder, ConvEncoder
from .mlp import MLPDecoder, MLPEncoder

ENCODERS = {"mlp": MLPEncoder, "conv": ConvEncoder}
DECODERS = {"mlp": MLPDecoder, "conv": ConvDecoder}


def build_encoder(network: str, image_shape, out_dim: int) -> nn.Module:
    """The encoder of a network family ('mlp': Table 3, 'conv': Table 4) for images of image_shape."""
    if network not in ENCODERS:
        raise ValueError(f"unknown network family {network!r}; choose from {', '.join(ENCODERS)}")
    return ENCODERS[network](image_shape, out_dim)


def build_decoder(network: str, image_shape, latent_dim: int) -> nn.Module:
    if network not in DECODERS:
        raise ValueError(f"unknown network family {network!r}; choose from {', '.join(DECODERS)}")
    return DECODERS[network](image_shape, latent_dim)


def use_fast_layout(module: nn.Module, network: str, device) -> nn.Module:
    """Put ``module``'s 4-D weights in channels_last where that is faster, in place; returns it.

    On a CUDA device always (the tensor-core layout); on a CPU for the conv networks (oneDNN's
    blocked kernels): benchmarks/conv_throughput.py measured the conv SimVAE step 1.2-1.4x faster
    than in the contiguous layout, in fp32 and bf16, at 32x32 and 64x64 (AVX-512 BF16 host;
    5.8 s against 6.9 s per step on an AVX2 host). MLP weights are 2-D and are left as they are."""
    import torch

    if torch.device(device).type == "cuda" or network == "conv":
        module.to(memory_format=torch.channels_last)
    return module


__all__ = ["MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder", "build_encoder", "build_decoder", "use_fast_layout"]
