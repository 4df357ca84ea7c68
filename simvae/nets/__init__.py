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


__all__ = ["MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder", "build_encoder", "build_decoder"]
