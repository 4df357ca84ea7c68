"""Shared test helpers: a tiny synthetic IDX data set, and running the real ``simvae`` command.

The tiny data set has 28x28 images whose class (0..9) is a bright horizontal bar at a
class-dependent height on a noisy background, so classes are separable but not trivially
identical. Files are written with ``simvae.data.idx.write_idx`` in the layout of MNIST.

Subprocesses run with ``SIMVAE_OFFLINE=1`` (never download) and ``OMP_NUM_THREADS=1``:
on a small, shared CPU machine two intra-op threads per process slow a training step
down by 10x or more when another process competes for the cores.
"""

from __future__ import annotations

import json
import os

# One intra-op thread per test process (set before torch is imported): tiny tensors gain nothing
# from more, and two processes of two threads each on 2 cores run some tests 10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# What simvae caches (FID statistics, the classifier-FID network, data caches) goes to a folder of this
# session, never to the home folder.
import tempfile  # noqa: E402

os.environ.setdefault("SIMVAE_CACHE_DIR", tempfile.mkdtemp(prefix="simvae-test-cache-"))
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def make_tiny_images(n: int, seed: int = 0, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [n, size, size] and labels [n] in 0..9 (every class present when n >= 10)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, size, size), dtype=np.uint8)
    for i, c in enumerate(labels):
        top = 2 + 2 * int(c) * size // 28
        images[i, top : top + 3, size // 7 : size - size // 7] = rng.integers(200, 256)
    return images, labels


def write_tiny_idx(folder: str | Path, n_train: int = 256, n_test: int = 64, seed: int = 0, gz: bool = False, size: int = 28) -> Path:
    """Write the four IDX files of a tiny MNIST-like data set into ``folder`` (created); return it."""
    from simvae.data.idx import write_idx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    x, y = make_tiny_images(n_train, seed, size)
    write_idx(folder / (IDX_STEMS["train_images"] + suffix), x)
    write_idx(folder / (IDX_STEMS["train_labels"] + suffix), y)
    x, y = make_tiny_images(n_test, seed + 1, size)
    write_idx(folder / (IDX_STEMS["test_images"] + suffix), x)
    write_idx(folder / (IDX_STEMS["test_labels"] + suffix), y)
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A tiny data set (256 train / 64 test images, raw IDX), shared by the whole session. Do not modify it."""
    return write_tiny_idx(tmp_path_factory.mktemp("tiny-idx"), n_train=256, n_test=64, seed=0)


def tiny_train_args(data_dir: str | Path, *extra: str, subset: int = 256, batch: int = 32, views: int = 2, epochs: int = 1) -> list[str]:
    """``simvae train`` options for a tiny, fast CPU run on ``data_dir`` (MNIST layout)."""
    return [
        "--dataset",
        "mnist",
        "--data-dir",
        str(data_dir),
        "--no-download",
        "--device",
        "cpu",
        "--train-subset",
        str(subset),
        "--batch-size",
        str(batch),
        "--n-views",
        str(views),
        "--epochs",
        str(epochs),
        *extra,
    ]


TINY_EVAL_ARGS = [
    "--probe-max-epochs",
    "3",
    "--probe-patience",
    "2",
    "--gmm-restarts",
    "1",
    "--gmm-max-iter",
    "20",
    "--map-points",
    "0",
    "--val-size",
    "32",
    "--knn-max-k",
    "3",
    "--probe-hidden",
    "16",
    "--device",
    "cpu",
]


def tiny_train_config(data_dir: str | Path, **train) -> dict:
    """The ``build_run_config`` mapping of a tiny CPU run (override train keys; add 'method'/'eval' yourself)."""
    base = {
        "dataset": "mnist",
        "data_dir": str(data_dir),
        "download": False,
        "device": "cpu",
        "train_subset": 128,
        "batch_size": 32,
        "epochs": 1,
        "seed": 0,
    }
    base.update(train)
    return {"train": base, "method": {"n_views": 2}}


def cli_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update({"SIMVAE_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.pop("SIMVAE_DATA_DIR", None)
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + pp if pp else "")
    env.update(extra)
    return env


@dataclass
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def simvae_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "simvae", *map(str, args)]


def run_cli(*args: str, cwd: str | Path | None = None, timeout: float = 120) -> CliResult:
    """Run ``python -m simvae ARGS`` to completion in a fresh process (real exit status and stderr)."""
    p = subprocess.run(simvae_cmd(*args), cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout)
    return CliResult(list(map(str, args)), p.returncode, p.stdout, p.stderr)


def run_cli_many(arg_lists: list[list[str]], cwd: str | Path | None = None, timeout: float = 120, workers: int = 3) -> list[CliResult]:
    """Several independent ``simvae`` commands, a few at a time (each start imports torch, ~2-3 s)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda a: run_cli(*a, cwd=cwd, timeout=timeout), arg_lists))


# A process that imports simvae (and torch) once, then forks one child per command. Each child
# runs ``python -m simvae ARGS`` exactly as the interpreter would (runpy of ``simvae.__main__``;
# an uncaught exception prints its traceback and exits 1), with its own stdout/stderr files and
# its real exit status, without paying the ~2-3 s torch import per command. Forking is safe
# here: with OMP_NUM_THREADS=1 the server never starts a thread.
_FORK_SERVER = r"""
import json, os, runpy, sys, traceback
jobs = json.loads(sys.stdin.read())
import simvae.cli, simvae.evaluate, simvae.run, simvae.train  # what the commands import, once
simvae.cli.build_parser()
assert len(os.listdir("/proc/self/task")) == 1 if os.path.isdir("/proc/self/task") else True, "threads before fork"
statuses = []
for job in jobs:
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd, name in ((1, job["stdout"]), (2, job["stderr"])):
                f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(f, fd)
                os.close(f)
            os.chdir(job["cwd"])
            sys.argv = ["simvae", *job["args"]]
            try:
                runpy.run_module("simvae", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as e:
                if e.code is None or isinstance(e.code, int):
                    code = e.code or 0
                else:
                    print(e.code, file=sys.stderr)
                    code = 1
            except BaseException:
                traceback.print_exc()
                code = 1
        finally:
            try:
                sys.stdout.flush(); sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    statuses.append(os.waitstatus_to_exitcode(status))
print(json.dumps(statuses))
"""


def run_cli_forked(arg_lists: list[list[str]], cwd: str | Path, timeout: float = 300) -> list[CliResult]:
    """Many ``simvae`` commands, one forked process each, from one server process (see _FORK_SERVER)."""
    cwd = Path(cwd)
    logs = Path(cwd) / ".cli-logs"
    logs.mkdir(parents=True, exist_ok=True)
    jobs = [
        {"args": list(map(str, a)), "cwd": str(cwd), "stdout": str(logs / f"{i}.out"), "stderr": str(logs / f"{i}.err")}
        for i, a in enumerate(arg_lists)
    ]
    p = subprocess.run(
        [sys.executable, "-c", _FORK_SERVER],
        input=json.dumps(jobs),
        env=cli_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if p.returncode != 0:
        raise RuntimeError(f"fork server failed ({p.returncode}): {p.stderr[-3000:]}")
    statuses = json.loads(p.stdout.strip().splitlines()[-1])
    return [
        CliResult(job["args"], status, Path(job["stdout"]).read_text(), Path(job["stderr"]).read_text())
        for job, status in zip(jobs, statuses)
    ]


@contextmanager
def float32_default():
    """torch's default dtype float32 inside, whatever it was outside (restored after); for
    tests that build models inside a module computing its references in float64."""
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@pytest.fixture
def float32():
    """The test runs with torch's default dtype float32 (see float32_default)."""
    with float32_default():
        yield


@pytest.fixture
def single_thread():
    """torch on one intra-op thread from here on (fast and stable on a shared 2-core machine).

    Deliberately NOT restored afterwards: raising the thread count again after parallel work
    leaves OpenMP in a state where a later fork (tests/test_infonce.py starts its DDP workers
    with start_method="fork") deadlocks; lowering it is harmless."""
    import torch

    torch.set_num_threads(1)
    yield


def pytest_configure(config):
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


def run_two_processes(worker, tmp_path: Path, name: str = "result.pt"):
    """Run ``worker(rank, world, init_file, out_file)`` on 2 forked gloo processes and return what
    rank 0 saved to ``out_file`` (fork: the children need not import torch again; spawn costs
    ~10 s on 2 cores). Skips where torch.distributed is not available."""
    mp = pytest.importorskip("torch.multiprocessing")
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    out = tmp_path / name
    mp.start_processes(worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True, start_method="fork")
    return torch.load(out, weights_only=True)
