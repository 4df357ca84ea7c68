"""Experiment presets per data set: the networks, representation size and augmentation the paper
uses there (Tables 2-4, SPEC §3-4). A data set (``simvae.data``) says only what the data is."""

from __future__ import annotations

from dataclasses import dataclass

from .augment.spec import COLOUR_AUGMENT, GREY_AUGMENT, AugmentSpec


@dataclass(frozen=True)
class Preset:
    augment: AugmentSpec
    network: str  # "mlp" or "conv" (simvae.nets)
    latent_dim: int


PRESETS: dict[str, Preset] = {
    "mnist": Preset(GREY_AUGMENT, "mlp", 10),
    "fashion-mnist": Preset(GREY_AUGMENT, "mlp", 10),
    "cifar10": Preset(COLOUR_AUGMENT, "conv", 64),  # paper Table 4, SPEC §4
    "celeba": Preset(COLOUR_AUGMENT, "conv", 64),  # paper Tables 2 and 4, A.7.2: 64x64 faces
}


def preset(dataset: str) -> Preset:
    """The preset of ``dataset`` (the grey MLP preset for an unlisted one)."""
    return PRESETS.get(dataset, PRESETS["fashion-mnist"])
