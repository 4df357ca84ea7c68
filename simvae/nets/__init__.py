"""Networks: encoders, decoders (paper Tables 3 and 4) and projection heads."""

from .mlp import MLPDecoder, MLPEncoder, build_decoder, build_encoder

__all__ = ["MLPEncoder", "MLPDecoder", "build_encoder", "build_decoder"]
