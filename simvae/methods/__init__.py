"""Methods: one small file each (its networks and its loss), and a registry.

A new method needs one new file and one import line here.
"""

from . import cr_vae, moco, random, simclr, simvae, vae, vicreg  # noqa: F401  (registration)
from .base import METHODS, Batch, Method, ModelSpec, register

__all__ = ["METHODS", "Batch", "Method", "ModelSpec", "register", "build_method", "method_config"]


def method_config(name: str, options: dict | None = None):
    """The typed config of method ``name`` from a mapping of its options (strict)."""
    from ..config import parse_config, suggest
    from ..errors import ConfigError

    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'{suggest(name, METHODS)}; choose from {', '.join(sorted(METHODS))}")
    return parse_config(METHODS[name].config_cls, {} if options is None else options, where=f"options of method '{name}'")


def build_method(name: str, spec: ModelSpec, options: dict | None = None) -> Method:
    return METHODS[name](spec, method_config(name, options))
