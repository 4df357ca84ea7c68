"""Methods: one small file each (its networks and its loss), and a registry.

A new method needs one new file and one import line here.
"""

from . import cr_vae, moco, random, simclr, simvae, vae, vicreg  # noqa: F401  (registration)
from .base import METHODS, Batch, Method, ModelSpec, register

__all__ = ["METHODS", "Batch", "Method", "ModelSpec", "register", "build_method", "method_config", "method_names"]

METHOD_ORDER = ("simvae", "vae", "beta-vae", "cr-vae", "simclr", "moco", "mocov2", "vicreg", "random")


def method_names() -> list[str]:
    """The registered methods: the paper's order, then any others alphabetically."""
    return [m for m in METHOD_ORDER if m in METHODS] + sorted(m for m in METHODS if m not in METHOD_ORDER)


# Method options renamed in simvae 0.2 (no method-name prefixes): the old names are read, with a
# one-line note, for one release.
RENAMED_OPTIONS = {
    "crvae_lambda": "consistency_weight",
    "moco_momentum": "momentum",
    "moco_queue_size": "queue_size",
    "vicreg_invariance": "invariance_weight",
    "vicreg_variance": "variance_weight",
    "vicreg_covariance": "covariance_weight",
}


def renamed(options: dict, where: str = "config", notes: list | None = None) -> dict:
    """``options`` with old option names replaced by the new ones; each rename is announced once on
    stderr (or appended to ``notes``)."""
    import sys

    out = {}
    for key, value in options.items():
        new = RENAMED_OPTIONS.get(key) if isinstance(key, str) else None
        if new is not None and new not in options:
            msg = f"simvae: note: option '{key}' in {where} is now '{new}' (the old name is read until the next release)"
            (notes.append(msg) if notes is not None else print(msg, file=sys.stderr))
            key = new
        out[key] = value
    return out


def method_config(name: str, options: dict | None = None, where: str | None = None):
    """The typed config of method ``name`` from a mapping of its options (strict; old option
    names are renamed with a note); ``where`` names their origin in messages. Raises ConfigError."""
    from ..config import parse_config, suggest
    from ..errors import ConfigError

    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'{suggest(name, METHODS)}; choose from {', '.join(sorted(METHODS))}")
    options = {} if options is None else options
    if isinstance(options, dict):
        options = renamed(options, f"the options of method '{name}'")
        fields = METHODS[name].config_cls.model_fields
        for key in options:
            takes = [m for m in method_names() if key in METHODS[m].config_cls.model_fields]
            if key not in fields and takes:
                raise ConfigError(f"option '{key}' does not apply to method '{name}' (it applies to {', '.join(takes)})")
    return parse_config(METHODS[name].config_cls, options, where=where or f"options of method '{name}'")


def build_method(name: str, spec: ModelSpec, options: dict | None = None) -> Method:
    return METHODS[name](spec, method_config(name, options))
