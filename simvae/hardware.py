"""The hardware a run uses: which device, and which floating-point precision the networks run
in (bf16 autocast where the hardware has it natively).

bf16 halves the memory traffic of every matrix product, but only hardware with native bf16
arithmetic gains from it: CUDA GPUs from Ampere on, and CPUs with AVX-512 BF16 or AMX.
Elsewhere PyTorch emulates bf16 and a step runs many times slower than in fp32 (measured on
a 2-core AVX2 host: 270 views/s in bf16 against 5,815 in fp32; one 2048x2048 bf16 matmul took
55 s). ``auto`` therefore picks bf16 only where it is native.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from functools import lru_cache

import torch

NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu. Raises ConfigError for cuda where there is none."""
    from .errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for but CUDA is not available here; use --device cpu")
    return torch.device(name)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this host (Linux /proc/cpuinfo; empty where unreadable)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX-512 BF16 or AMX instructions."""
    return any(f in cpu_flags() for f in NATIVE_BF16_CPU_FLAGS)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively (not emulated)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where native on ``device``, else ``fp32``; an explicit bf16 where it
    is emulated is kept but warned about (once, before training)."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and not native_bf16(device):
        warnings.warn(f"bf16 is emulated on this {device.type} (no AVX-512 BF16 / AMX or GPU bf16): training will run "
                      "many times slower than fp32; use --precision fp32 or auto", RuntimeWarning, stacklevel=2)
    return precision


def autocast(precision: str, device: torch.device):
    """The autocast context of a resolved precision (``fp32``: none)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def host_description() -> str:
    """One line naming this host's CPU and whether it has native bf16 (for logs and benchmarks)."""
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os

    native = "native bf16 (" + ", ".join(f for f in NATIVE_BF16_CPU_FLAGS if f in cpu_flags()) + ")" \
        if cpu_has_native_bf16() else "no native bf16 (emulated)"
    return f"{model or 'unknown CPU'}, {os.cpu_count()} cores, {native}"


def provenance() -> dict:
    """Who made a result and where: date, simvae version and commit, host CPU, native bf16."""
    import datetime
    import subprocess
    from pathlib import Path

    from ._version import __version__

    commit = None
    try:
        repo = Path(__file__).resolve().parents[1]
        if (repo / ".git").exists():
            out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 timeout=5)
            if out.returncode == 0:
                commit = out.stdout.strip()
                dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                       capture_output=True, text=True, timeout=5)
                if dirty.returncode == 0 and dirty.stdout.strip():
                    commit += "+changes"
    except (OSError, subprocess.SubprocessError):
        pass
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "simvae_version": __version__,
            "simvae_commit": commit, "host": host_description(), "cpu_native_bf16": cpu_has_native_bf16()}
