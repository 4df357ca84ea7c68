"""What an augmentation pipeline draws: the parameters of paper Table 2, declared with the data
sets' presets (``simvae.data.registry``) and re-exported here."""

from ..data.registry import COLOUR_AUGMENT, GREY_AUGMENT, NO_AUGMENT, AugmentSpec

__all__ = ["AugmentSpec", "COLOUR_AUGMENT", "GREY_AUGMENT", "NO_AUGMENT"]
