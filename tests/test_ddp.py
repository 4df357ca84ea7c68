"""DDP through the real training loop: 2 processes (torchrun, gloo, CPU) = 1 process.

``tests/ddp_worker.py`` builds ``simvae.train.Trainer`` for SimVAE, SimCLR and VICReg on a
tiny in-memory data set and takes ONE ``train_step`` on a fixed global batch of 8 images.
Launched with ``torchrun --standalone --nproc-per-node 2`` each process gets half of the
global batch (4 images with all their J views: SimVAE's groups are never split); the views,
the noise and the initialisation are drawn for the global batch, so the step must give the
gradients and parameters of a single process on the same 8 images:

- SimVAE: each process's loss is the mean over its own groups; DDP averages gradients.
- SimCLR, VICReg: the loss is computed on ``gather_with_grad(z)`` (negatives and batch
  statistics of the global batch) with gradients flowing back through the gather.

(tests/test_infonce.py checks the same for the bare losses on a toy model; this file checks
the whole step: ``Trainer.make_batch`` slicing, DDP wrapping and the optimiser.)
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # starts processes: its own CI step

HERE = Path(__file__).resolve().parent
WORKER = HERE / "ddp_worker.py"
METHODS = ("simvae", "vae", "beta-vae", "cr-vae", "simclr", "moco", "mocov2", "vicreg", "random")
GLOBAL_LOSS = {"simclr", "vicreg"}  # every rank computes the loss of the gathered global batch

# VICReg's expander uses GlobalBatchNorm1d (statistics of the global batch), so it matches too.


def _dist_available() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return dist.is_available() and dist.is_gloo_available()


def _torchrun() -> list[str]:
    exe = Path(sys.executable).parent / "torchrun"
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe)]
    found = shutil.which("torchrun")
    if found and Path(found).parent == Path(sys.executable).parent:
        return [found]
    return [sys.executable, "-m", "torch.distributed.run"]


def _load_worker():
    spec = importlib.util.spec_from_file_location("simvae_ddp_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    """Run the 2-process step and epoch once for every method (one torchrun launch, ~30-60 s)."""
    if not _dist_available():
        pytest.skip("torch.distributed with the gloo backend is not available")
    out = tmp_path_factory.mktemp("ddp")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")
    }
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    cmd = [*_torchrun(), "--standalone", "--nproc-per-node", "2", str(WORKER), str(out), *METHODS]
    proc = subprocess.run(cmd, env=env, cwd=str(HERE.parent), capture_output=True, text=True, timeout=240)
    if proc.returncode != 0:
        pytest.fail(f"torchrun failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return {m: torch.load(out / f"{m}.pt", weights_only=False) for m in METHODS}


@pytest.fixture(scope="module")
def single_results(tmp_path_factory):
    """The same step on one process (in this process, no process group)."""
    worker = _load_worker()
    out = tmp_path_factory.mktemp("single")
    saved = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k in os.environ}
    try:
        return {m: {**worker.one_step(m, out), "logged": worker.one_epoch(m, out)} for m in METHODS}
    finally:
        os.environ.update(saved)


@pytest.mark.parametrize("method", METHODS)
def test_two_processes_log_the_figures_of_one(method, ddp_results, single_results):
    """metrics.jsonl and steps.jsonl hold the global batch's loss terms, as one process logs them."""
    two, one = ddp_results[method]["logged"], single_results[method]["logged"]
    assert len(two) == len(one) >= 2
    for r2, r1 in zip(two, one):
        # the first step's figures agree to round-off; later steps drift apart by a little, as
        # Adam turns round-off-level gradients (e.g. in front of VICReg's BatchNorm) into lr-sized
        # moves (see below), but far less than one process's share of the batch differs from the
        # whole (SimVAE: about 2% in the loss)
        rel = 1e-5 if r1.get("step") == 1 and "epoch_seconds" not in r1 else 2e-2 if method == "vicreg" else 5e-3
        for key, value in r1.items():
            if key in ("epoch_seconds", "images_per_s", "views_per_s", "wall_seconds"):
                continue
            assert r2[key] == pytest.approx(value, rel=rel, abs=1e-5), (key, r2, r1)


@pytest.mark.parametrize("method", METHODS)
def test_two_processes_take_the_step_of_one(method, ddp_results, single_results):
    two, one = ddp_results[method], single_results[method]
    assert two["world"] == 2 and one["world"] == 1
    assert two["grads"].keys() == one["grads"].keys() <= two["params"].keys()  # (MoCo's key encoder has none)
    # float32 round-off differs between the runs (each process sums its own half); it is
    # measured against the largest gradient of the model (BatchNorm amplifies it in gradients
    # that are exactly zero in exact arithmetic, e.g. a bias in front of a BatchNorm)
    scale = max(float(g.abs().max()) for g in one["grads"].values())
    # the gradients themselves (one Adam step moves each weight by ~lr * sign(grad),
    # so comparing parameters alone would miss a wrong gradient scale)
    for name, g in one["grads"].items():
        torch.testing.assert_close(two["grads"][name], g, rtol=1e-4, atol=1e-6 + 2e-5 * scale, msg=lambda m: f"grad {name}: {m}")
    # the parameters after the Adam step, wherever the step is well conditioned: on the first
    # step Adam moves a weight by lr * g / (|g| + 1e-8), i.e. by ~lr * sign(g) once |g| >> 1e-8,
    # so a gradient at the level of the round-off (or of Adam's eps) may move its weight by up
    # to 2 lr between the runs; weights with no gradient at all (dead ReLUs) must not move
    checked = total = 0
    for name, p in one["params"].items():
        if name not in one["grads"]:  # a momentum (key) encoder: its update follows the query encoder's
            torch.testing.assert_close(two["params"][name], p, rtol=0, atol=2e-6, msg=lambda m: f"param {name}: {m}")
            continue
        g1, g2 = one["grads"][name], two["grads"][name]
        # |g| >= 1e-3 * scale keeps the relative gradient error (<= 2e-5 * scale) under 2%, so
        # the weight moves agree to 2% of lr (lr = 8e-5 here: 1.6e-6)
        well = (g1.abs() > 1e-6 + 1e-3 * scale) | ((g1 == 0) & (g2 == 0))
        torch.testing.assert_close(two["params"][name][well], p[well], rtol=0, atol=2e-6, msg=lambda m: f"param {name}: {m}")
        checked, total = checked + int(well.sum()), total + well.numel()
    if total:
        assert checked > 0.5 * total, f"only {checked} of {total} weights compared"
    # the global loss: the mean of the ranks' losses (SimVAE: each rank averages its own groups;
    # SimCLR/VICReg: every rank computes the loss of the gathered global batch)
    for key, value in one["terms"].items():
        ranks = [t[key] for t in two["rank_terms"]]
        assert sum(ranks) / len(ranks) == pytest.approx(value, rel=1e-5, abs=1e-6), key
        if method in GLOBAL_LOSS:
            assert ranks[0] == pytest.approx(ranks[1], rel=1e-6, abs=1e-6), key
