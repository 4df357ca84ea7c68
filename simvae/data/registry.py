"""The data-set registry: one entry per data set, everything about it in one place.

An entry (``DatasetSpec``) carries the loader, the image shape and classes where they are fixed,
how to get the files, and the experiment *preset*: the network family, representation size and
augmentation the paper uses on such data (paper Tables 2-4). A data set registers itself
(``register_dataset``) in its own module; a new data set is that module plus one import line in
``simvae/data/__init__.py``. A data set without a preset is refused at registration, never given
another data set's networks.

A preset may depend on the images (image folders: the network follows the image size, the
augmentation the channel count), so ``DatasetSpec.preset_for(image_shape)`` resolves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..errors import ConfigError, DataError
from .base import ImageData


@dataclass(frozen=True)
class AugmentSpec:
    """RandomResizedCrop(scale, ratio) + RandomVerticalFlip(vflip_p) [+ RandomApply(ColorJitter)]
    (paper Table 2). ``crop_scale`` (1, 1) with ratio (1, 1) and no flip or jitter is the identity."""

    crop_scale: tuple[float, float] = (0.4, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.3)
    vflip_p: float = 0.5
    jitter_strength: float = 0.0  # brightness, contrast, saturation
    jitter_hue: float = 0.0
    jitter_p: float = 0.0

    @property
    def identity(self) -> bool:
        return self.crop_scale == (1.0, 1.0) and self.crop_ratio == (1.0, 1.0) and self.vflip_p == 0 and self.jitter_p == 0


GREY_AUGMENT = AugmentSpec(crop_scale=(0.4, 1.0), crop_ratio=(0.75, 1.3), vflip_p=0.5)
"""Grey images (paper Table 2): crops of scale (0.4, 1) and ratio (0.75, 1.3), vertical flips."""
COLOUR_AUGMENT = AugmentSpec(crop_scale=(0.6, 1.0), crop_ratio=(0.75, 1.3), vflip_p=0.5, jitter_strength=0.8, jitter_hue=0.2, jitter_p=0.8)
"""Colour images (paper Table 2, CIFAR-10 / CelebA): crops of scale (0.6, 1), vertical flips and
RandomApply(ColorJitter(0.8, 0.8, 0.8, 0.2), p=0.8)."""
NO_AUGMENT = AugmentSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), vflip_p=0.0)
"""The identity: each view is the image itself (``--augment none``, for explicit groups)."""


@dataclass(frozen=True)
class Preset:
    """The experiment defaults of a data set: network family (``mlp``: paper Table 3, ``conv``:
    Table 4), representation size, and training augmentation."""

    network: str
    latent_dim: int
    augment: AugmentSpec


GREY_MLP = Preset("mlp", 10, GREY_AUGMENT)  # MNIST, Fashion-MNIST (paper Tables 2, 3)
COLOUR_CONV = Preset("conv", 64, COLOUR_AUGMENT)  # CIFAR-10, CelebA (paper Tables 2, 4)


@dataclass(frozen=True)
class DatasetSpec:
    """One data set: ``loader(data_dir=..., download=..., [binarize=...], [option=...]) -> ImageData``,
    its ``preset`` (a ``Preset``, or a function of the image shape [C, H, W] for data sets whose
    images vary), ``image_shape`` and ``classes`` where fixed (None where they come from the files),
    ``how_to_get`` (the end of a not-found message), and ``options``: the extra loader options it
    takes (e.g. ``image_size`` for image folders)."""

    name: str
    loader: Callable[..., ImageData] = field(repr=False, compare=False)
    preset: Preset | Callable[[tuple[int, int, int]], Preset] = field(repr=False, compare=False)
    image_shape: tuple[int, int, int] | None = None
    classes: tuple[str, ...] | None = None
    how_to_get: str = ""
    options: tuple[str, ...] = ()
    binarize_default: bool = False

    def preset_for(self, image_shape: tuple[int, int, int] | None = None) -> Preset:
        """The preset for images of ``image_shape`` [C, H, W] (the data set's own shape when None).
        Raises ConfigError when the preset depends on a shape that is not known."""
        if isinstance(self.preset, Preset):
            return self.preset
        shape = tuple(image_shape) if image_shape is not None else self.image_shape
        if shape is None:
            raise ConfigError(f"the preset of data set '{self.name}' depends on its images; load them first")
        return self.preset(shape)


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry under ``spec.name`` and return it. Raises TypeError when it has
    no preset (a data set must say which networks and augmentation suit it) or no loader, and
    ValueError for a name already taken."""
    if not isinstance(spec.preset, Preset) and not callable(spec.preset):
        raise TypeError(
            f"data set '{spec.name}' has no preset (networks, latent size, augmentation): give "
            "DatasetSpec(preset=Preset(...)) or a function of the image shape"
        )
    if not callable(spec.loader):
        raise TypeError(f"data set '{spec.name}' has no loader")
    if spec.name in DATASETS and DATASETS[spec.name] is not spec:
        raise ValueError(f"data set '{spec.name}' is registered twice")
    DATASETS[spec.name] = spec
    return spec


def dataset(name: str) -> DatasetSpec:
    """The registry entry of ``name``. Raises ConfigError (with the closest name) for an unknown one."""
    from ..config import suggest

    if name not in DATASETS:
        raise ConfigError(f"unknown data set '{name}'{suggest(name, DATASETS)}; choose from {', '.join(DATASETS)}")
    return DATASETS[name]


def preset(name: str, image_shape: tuple[int, int, int] | None = None) -> Preset:
    """The preset of data set ``name`` for images of ``image_shape`` (see ``DatasetSpec.preset_for``)."""
    return dataset(name).preset_for(image_shape)


def load_dataset(name: str, data_dir=None, binarize: bool | None = None, download: bool = True, **options) -> ImageData:
    """Load a registered data set by name (``binarize`` None: the data set's paper default).
    ``options`` (None values are ignored) go to loaders that take them (``DatasetSpec.options``).
    Raises DataError for an unknown data set and ConfigError for an option it does not take."""
    if name not in DATASETS:
        from ..config import suggest

        raise DataError(f"unknown data set '{name}'{suggest(name, DATASETS)}; choose from {', '.join(DATASETS)}")
    spec = DATASETS[name]
    given = {k: v for k, v in options.items() if v is not None}
    foreign = [k for k in given if k not in spec.options]
    if foreign:
        takes = [n for n, s in DATASETS.items() if foreign[0] in s.options]
        raise ConfigError(
            f"option --{foreign[0].replace('_', '-')} does not apply to data set '{name}'"
            + (f" (it applies to {', '.join(takes)})" if takes else "")
        )
    kwargs = {"data_dir": data_dir, "download": download, **given}
    if binarize is not None:
        kwargs["binarize"] = binarize
    return spec.loader(**kwargs)
