"""Defaults resolved into a run's config: per-method and per-dataset learning rates."""

import pytest

from simvae.allocator import retain_freed_memory
from simvae.methods import METHODS
from simvae.methods.simclr import SimCLR
from simvae.run_config import build_run_config


def _lr(method, dataset="fashion-mnist", **train):
    return build_run_config({"train": {"method": method, "dataset": dataset, **train}}).train.lr


def test_lr_defaults_follow_the_paper():
    assert _lr("simvae") == 8e-5
    assert _lr("vae") == 8e-5
    assert _lr("vicreg") == 1e-4  # paper A.7.4


def test_per_dataset_lr_overrides_the_method_default(monkeypatch):
    monkeypatch.setattr(SimCLR, "default_lr_by_dataset", {"mnist": 1e-3})
    assert _lr("simclr", "mnist") == 1e-3
    assert _lr("simclr", "fashion-mnist") == SimCLR.default_lr  # no entry: the method default


def test_explicit_lr_wins_over_every_default(monkeypatch):
    monkeypatch.setattr(SimCLR, "default_lr_by_dataset", {"mnist": 1e-3})
    assert _lr("simclr", "mnist", lr=2e-4) == 2e-4


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_resolves_a_positive_lr(method):
    assert _lr(method) > 0


def test_allocator_setting_is_idempotent():
    first = retain_freed_memory()
    assert retain_freed_memory() == first
    import sys

    if sys.platform.startswith("linux"):
        import platform

        if platform.libc_ver()[0] == "glibc":
            assert first  # glibc accepts both mallopt settings
