"""The hardware a run uses: which device, how many CPU threads, and which floating-point
precision the networks run in (bf16 autocast where it is faster than fp32).

bf16 halves the memory traffic of every matrix product, but a step only gains where the hardware
computes bf16 fast, and CPU feature flags do not say whether it does. Where PyTorch emulates bf16
(no AVX-512 BF16 or AMX) a step runs many times slower than in fp32 (a 2-core AVX2 host: 270
views/s in bf16 against 5,815 in fp32). With AVX-512 BF16 it depends on the chip: on a 2-core
Intel Xeon without AMX the bf16 matrix product ran at 145 GFLOP/s against 312 in fp32 and the
SimVAE step at 0.66 of its fp32 speed; on a 2-core AMD EPYC with the same flag, 837 against 194
GFLOP/s and the step at 1.9-3.2 times its fp32 speed (``benchmarks/throughput.py``). So on a CPU
``auto`` measures: bf16 where this host's bf16 matrix product is at least
``BF16_MIN_GEMM_SPEEDUP`` times as fast as its fp32 one (timed once per host and PyTorch version,
about a tenth of a second, and cached on disk); on CUDA, bf16 wherever the GPU supports it.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that use it, so that ``openmp_wait_policy`` can run
# before anything loads PyTorch's OpenMP runtime.

NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# bf16 autocast pays a cast of every activation and weight, so its matrix products must win that
# back: the Xeon above (GEMM ratio 0.46) ran the step at 0.66 of fp32, the EPYC (ratio 4.3) at
# 1.9-3.2 times fp32. A ratio of 1.5 leaves a margin for the casts.
BF16_MIN_GEMM_SPEEDUP = 1.5
BF16_CACHE_FILE = "bf16-gemm-speedup.json"


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu. Raises ConfigError for cuda where there is none."""
    import torch

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
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def measure_bf16_gemm_speedup(size: int = 1024, repeats: int = 5) -> float:
    """How many times faster a ``size`` x ``size`` matrix product runs in bf16 than in fp32 on this
    CPU, at the current intra-op thread count: the best of ``repeats`` interleaved timings of each
    (interleaved so that a neighbouring process slows both alike). About 0.1 s at 1024."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen)
    b = torch.randn(size, size, generator=gen)
    a16, b16 = a.bfloat16(), b.bfloat16()
    best = {torch.float32: math.inf, torch.bfloat16: math.inf}
    with torch.no_grad():
        torch.mm(a, b), torch.mm(a16, b16)  # warm-up: kernel selection, first-touch
        for _ in range(repeats):
            for x, y in ((a, b), (a16, b16)):
                t0 = time.perf_counter()
                torch.mm(x, y)
                best[x.dtype] = min(best[x.dtype], time.perf_counter() - t0)
    return best[torch.float32] / max(best[torch.bfloat16], 1e-9)


@lru_cache(maxsize=1)
def cpu_bf16_gemm_speedup() -> float:
    """``measure_bf16_gemm_speedup`` on this host, measured once per CPU model, feature flags and
    PyTorch version and cached in ``bf16-gemm-speedup.json`` of simvae's cache folder
    (``simvae.cache.cache_dir``: ``$SIMVAE_CACHE_DIR``, else ``~/.cache/simvae``), so that every
    process on a host (DDP ranks, a grid's runs, a resumed run) takes the same decision. A cache
    that cannot be read is measured again and rewritten; one that cannot be written is skipped."""
    import hashlib
    import json

    import torch

    from .cache import cache_dir
    from .errors import RunDirError
    from .rundir import atomic_write_json

    flags = hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:12]
    key = f"{host_description()} | flags {flags} | torch {torch.__version__}"
    path, cached = None, {}
    try:
        path = cache_dir() / BF16_CACHE_FILE
        cached = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):  # no cache folder (path None) or an unreadable file (rewritten below)
        cached = {}
    entry = cached.get(key) if isinstance(cached, dict) else None
    if isinstance(entry, dict) and isinstance(entry.get("speedup"), (int, float)):
        return float(entry["speedup"])
    speedup = measure_bf16_gemm_speedup()
    if path is not None:
        cached = cached if isinstance(cached, dict) else {}
        cached[key] = {"speedup": round(speedup, 3), "threads": torch.get_num_threads()}
        try:
            atomic_write_json(path, cached)
        except RunDirError:
            pass
    return speedup


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast trains faster than fp32 on ``device``: CUDA GPUs with bf16; CPUs with
    native bf16 (AVX-512 BF16 or AMX) whose measured bf16 matrix product is at least
    ``BF16_MIN_GEMM_SPEEDUP`` times as fast as fp32 (``cpu_bf16_gemm_speedup``)."""
    if device.type == "cpu":
        return cpu_has_native_bf16() and cpu_bf16_gemm_speedup() >= BF16_MIN_GEMM_SPEEDUP
    return native_bf16(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where it is faster than fp32 on ``device`` (``fast_bf16``), else
    ``fp32``; an explicit bf16 where it is emulated is kept but warned about (once, before training)."""
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    if precision == "bf16" and not native_bf16(device):
        warnings.warn(
            f"bf16 is emulated on this {device.type} (no AVX-512 BF16 / AMX or GPU bf16): training will run "
            "many times slower than fp32; use --precision fp32 or auto",
            RuntimeWarning,
            stacklevel=2,
        )
    return precision


def autocast(precision: str, device: torch.device):
    """The autocast context of a resolved precision (``fp32``: none)."""
    import torch

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
    native = (
        "native bf16 (" + ", ".join(f for f in NATIVE_BF16_CPU_FLAGS if f in cpu_flags()) + ")"
        if cpu_has_native_bf16()
        else "no native bf16 (emulated)"
    )
    return f"{model or 'unknown CPU'}, {os.cpu_count()} cores, {native}"


def provenance() -> dict:
    """Who made a result and where: date, simvae version and commit, host CPU, native bf16."""
    import datetime
    import subprocess

    from ._version import __version__

    commit = None
    try:
        repo = Path(__file__).resolve().parents[1]
        if (repo / ".git").exists():
            out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
            if out.returncode == 0:
                commit = out.stdout.strip()
                dirty = subprocess.run(
                    ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5
                )
                if dirty.returncode == 0 and dirty.stdout.strip():
                    commit += "+changes"
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "simvae_version": __version__,
        "simvae_commit": commit,
        "host": host_description(),
        "cpu_native_bf16": cpu_has_native_bf16(),
    }


# -- CPU threads ------------------------------------------------------------------------------
#
# PyTorch runs its CPU kernels (and MKL's and oneDNN's) on an OpenMP team of intra-op threads:
# each matrix product is split among the threads, and the product is done when the slowest
# thread is. GNU libgomp, the OpenMP of PyTorch's Linux wheels, lets a thread that finished its
# share spin for about 300,000 iterations before it sleeps. Alone on a machine that costs
# nothing. Beside another busy process, the spinning thread holds a core that its partner, the
# thread it waits for, needs to finish. On a 2-core host (Intel Xeon, AVX-512 BF16) whose cores
# other jobs kept 1.5 busy, the demo's step (12 images x 10 views, bf16) ran at 190-210 views/s
# on two spinning threads, 1,450 on two threads that sleep while they wait
# (``OMP_WAIT_POLICY=PASSIVE``) and 1,100-1,400 on one thread; `simvae train` went from 136-255
# views/s (two spinning threads) to 930-1,090 with the policy below
# (benchmarks/concurrent_training.py). Sleeping at once has a price on a quiet machine, though:
# every parallel region then wakes its threads, and the demo's step ran at 2,000-2,700 views/s
# with ``OMP_WAIT_POLICY=PASSIVE`` against 3,300-4,300 with a short spin (``GOMP_SPINCOUNT=10000``,
# tens of microseconds) or the default spin, on the same quiet host (paired runs, this VM's
# speed varies +-30 %). So simvae (1) asks OpenMP to spin briefly, then sleep
# (``GOMP_SPINCOUNT=10000``, set before PyTorch is loaded: ``openmp_wait_policy``; beside another
# busy process that ran at about 1,000 views/s on two threads, five times the default spin), and
# (2) chooses one intra-op thread per core that other processes leave free, re-measured while
# training (``configure_threads`` here, ``ThreadTuner`` in ``simvae.train.callbacks``), so a busy
# machine gets fewer threads, where the wait policy matters less.

WAIT_POLICY_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
SHORT_SPIN = "10000"  # GOMP_SPINCOUNT: iterations a waiting OpenMP thread spins before it sleeps
"""Environment variables that set how OpenMP threads wait (GNU libgomp; Intel's KMP_BLOCKTIME)."""


def openmp_wait_policy() -> str:
    """Ask OpenMP threads to spin only briefly, then sleep, while they wait for work: sets
    ``GOMP_SPINCOUNT=10000`` (GNU libgomp's default is 300,000) in this process's environment
    unless one of ``WAIT_POLICY_ENV``
    is already set (the user's choice is kept) or PyTorch is already imported (the OpenMP runtime
    reads the variable once, when PyTorch loads it: too late then, and nothing is changed).

    Call it first thing in a program, before ``import torch``. Returns the policy in effect,
    in words (``"short spin"``, ``"OMP_WAIT_POLICY=ACTIVE (environment)"``, ...).
    """
    import sys

    given = [f"{k}={os.environ[k]}" for k in WAIT_POLICY_ENV if k in os.environ]
    if given:
        return ", ".join(given) + " (environment)"
    if "torch" in sys.modules:
        return "spin, OpenMP's default (PyTorch was imported before simvae could ask for a short spin)"
    os.environ["GOMP_SPINCOUNT"] = SHORT_SPIN
    return "short spin"


def wait_policy_in_effect() -> str:
    """How this process's OpenMP threads wait, in words, as far as the environment tells."""
    given = [f"{k}={os.environ[k]}" for k in WAIT_POLICY_ENV if k in os.environ]
    if os.environ.get("GOMP_SPINCOUNT") == SHORT_SPIN and len(given) == 1:
        return "short spin-wait"
    return ", ".join(given) if given else "spin-wait (OpenMP default)"


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (``os.sched_getaffinity``), capped
    by a cgroup v2 CPU quota (``/sys/fs/cgroup/cpu.max``, rounded up). At least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _cpus_of_this_process() -> set[str] | None:
    try:
        return {f"cpu{c}" for c in os.sched_getaffinity(0)}
    except (AttributeError, OSError):
        return None


class CpuLoad:
    """How many cores OTHER processes kept busy, measured between calls of ``others()``.

    Reads the busy time of this process's CPUs (its affinity) from ``/proc/stat`` (user, nice,
    system, irq, softirq and steal: time the hypervisor gave to others counts as busy) and
    subtracts this process's own CPU time (all its threads, spinning ones too). Linux only:
    elsewhere ``others()`` returns None.
    """

    def __init__(self):
        self.cpus = _cpus_of_this_process()
        self._last = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        try:
            busy = 0
            with open(PROC_STAT) as fh:
                for line in fh:
                    if not line.startswith("cpu"):
                        break
                    name, *f = line.split()
                    if name == "cpu" or (self.cpus is not None and name not in self.cpus):
                        continue
                    f = [int(x) for x in f]
                    busy += sum(f[:3]) + sum(f[5:8])
        except (OSError, ValueError):
            return None
        return time.monotonic(), busy / _CLK_TCK, time.process_time()

    def seconds(self) -> float:
        """Seconds since the last measurement (0 where /proc/stat is unreadable)."""
        return time.monotonic() - self._last[0] if self._last else 0.0

    def others(self) -> float | None:
        """Cores busy with other processes since the last call (or since this object was
        made), averaged over that time; None where /proc/stat cannot be read."""
        new = self._read()
        old, self._last = self._last, new
        if old is None or new is None or new[0] - old[0] <= 0:
            return None
        return max(0.0, ((new[1] - old[1]) - (new[2] - old[2])) / (new[0] - old[0]))


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC_STAT = "/proc/stat"


def threads_for(cores: int, others_busy: float) -> int:
    """Intra-op threads for ``cores`` usable cores of which other processes keep ``others_busy``
    (in cores) busy: one per core they leave free, a core counting as free while they use less
    than three quarters of it (a virtual machine's hypervisor steals up to half a core from an
    otherwise idle 2-core guest: that must not halve its threads); at least 1, at most ``cores``."""
    return max(1, min(cores, math.floor(cores - others_busy + 0.75)))


@dataclass
class ThreadChoice:
    """The intra-op thread count a run uses and why.

    ``threads``: the count set (``torch.get_num_threads()``); ``reason``: why, in words (for the
    start-up line and ``train_summary.json``); ``adaptive``: True when nobody asked for a count,
    so that ``ThreadTuner`` revises it while training as other processes come and go; ``cores``:
    the usable cores; ``load``: the measurement of other processes' CPU use that goes on from
    here (None when not adaptive); ``changes``: [step, threads] of each revision while training."""

    threads: int
    reason: str
    adaptive: bool
    cores: int
    load: CpuLoad | None = None
    changes: list[list[int]] = field(default_factory=list)

    def set(self, threads: int, reason: str) -> None:
        import torch

        torch.set_num_threads(threads)
        self.threads, self.reason = threads, reason


def configure_threads(requested: int | None = None, sample_s: float = 0.2, revised: bool = True) -> ThreadChoice:
    """Choose and set the intra-op thread count of a run, and say why.

    ``requested`` (``--threads N``) is used as given; so is ``OMP_NUM_THREADS`` from the
    environment (PyTorch already applied it). Otherwise: one thread per usable core that other
    processes leave free (``threads_for``), measured over ``sample_s`` seconds now, and revised
    during training by ``simvae.train.callbacks.ThreadTuner`` (the returned choice is adaptive;
    ``revised=False``: a one-off choice, as for an evaluation, whose reason does not promise revision).
    The reason names the wait policy too (see ``openmp_wait_policy``). Raises ValueError for a
    requested count below 1.
    """
    import torch

    wait = wait_policy_in_effect()
    cores = usable_cores()
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be >= 1, got {requested}")
        torch.set_num_threads(requested)
        return ThreadChoice(requested, f"--threads {requested}; {wait}", False, cores)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return ThreadChoice(torch.get_num_threads(), f"OMP_NUM_THREADS={env}; {wait}", False, cores)
    load = CpuLoad()
    if sample_s > 0 and load._last is not None:
        time.sleep(sample_s)
    others = load.others()
    if others is None:
        threads, why = cores, f"one per usable core ({cores}; the load of other processes is not measurable here)"
    else:
        threads = threads_for(cores, others)
        why = (
            f"{cores} usable cores, {others:.1f} busy with other processes"
            if others >= 0.05
            else f"one per usable core ({cores}), none busy with other processes"
        )
    choice = ThreadChoice(threads, "", others is not None, cores, load if others is not None else None)
    choice.set(threads, f"{why}; {wait}" + ("; revised while training" if choice.adaptive and revised else ""))
    return choice
