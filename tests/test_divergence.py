"""A run whose loss becomes non-finite stops: non-zero exit status, one message naming the step,
the epoch and the loss term, and the last good checkpoint kept (loadable, finite parameters).

The real command diverges with an absurd learning rate; in-process tests make SimVAE's forward
return NaN at a chosen step through the ``Trainer`` API, so the step is known exactly.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli, tiny_train_args, tiny_train_config

from simvae.checkpoint import load_checkpoint
from simvae.errors import DivergenceError
from simvae.methods.simvae import SimVAE
from simvae.run_config import build_run_config
from simvae.train import train

pytestmark = pytest.mark.usefixtures("float32")  # whatever the default dtype other test modules left

STEPS_PER_EPOCH = 4  # 128 images, batch 32


def _finite_model(ckpt: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in ckpt["model"].values() if v.is_floating_point())


def _poison(monkeypatch, at_step: int, term: str, value: float = float("nan")):
    """SimVAE.forward returns ``term`` times ``value`` (nan or inf) at the 1-based step ``at_step``; a term other
    than 'loss' is only reported, so the loss (and the parameters) stay finite."""
    real = SimVAE.forward
    calls = {"n": 0}

    def forward(self, batch):
        calls["n"] += 1
        terms = real(self, batch)
        if calls["n"] == at_step:
            terms[term] = terms[term] * value  # keeps the graph: backward still runs
        return terms

    monkeypatch.setattr(SimVAE, "forward", forward)
    return calls


def test_cli_run_diverging_stops_with_one_line_and_keeps_the_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        "train",
        *tiny_train_args(
            tiny_data, "--out", str(out), "--no-eval", "--quiet", "--lr", "1e30", "--checkpoint-every-steps", "1", subset=128, epochs=3
        ),
    )
    assert r.returncode == DivergenceError.exit_code != 0, r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr_lines) == 1, r.stderr
    line = r.stderr_lines[0]
    assert line.startswith("simvae: error: training diverged at step "), line
    step = int(line.split("at step ")[1].split()[0])
    assert step >= 2  # step 1 starts from a sane initialisation
    assert "(epoch 1)" in line and "loss term 'loss'" in line and ("nan" in line or "inf" in line), line
    assert f"the last good checkpoint is kept in {out / 'checkpoint.pt'}" in line, line
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == step - 1, "the checkpoint is that of the step before the divergence"
    assert _finite_model(ckpt)
    summary = json.loads((out / "train_summary.json").read_text())  # the state of the kept checkpoint
    assert summary["finished"] is False and summary["steps"] == step - 1


@pytest.mark.parametrize("term", ["loss", "log_prior"])
@pytest.mark.parametrize("check_every", [1, 3])
def test_nan_at_step_n_names_step_epoch_and_term(tiny_data, tmp_path, monkeypatch, single_thread, term, check_every):
    at = 6  # epoch 2, its 2nd step; checkpoints every 2 steps: the last good one is step 4 (end of epoch 1)
    run = build_run_config(
        tiny_train_config(
            tiny_data, train_subset=128, batch_size=32, epochs=3, checkpoint_every_steps=2, divergence_check_every=check_every
        )
    )
    _poison(monkeypatch, at, term)
    out = tmp_path / "run"
    with pytest.raises(DivergenceError) as info:
        train(run, out, progress=False)
    msg = str(info.value)
    assert f"at step {at} (epoch 2)" in msg, msg
    assert f"loss term '{term}' is nan" in msg, msg
    assert f"the last good checkpoint is kept in {out / 'checkpoint.pt'}" in msg, msg
    assert "\n" not in msg
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 4 and ckpt["epoch"] == 1
    assert _finite_model(ckpt)
    # Only epoch 1 was logged.
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1]


def test_inf_at_the_first_step_says_no_checkpoint_yet(tiny_data, tmp_path, monkeypatch, single_thread):
    run = build_run_config(tiny_train_config(tiny_data, train_subset=64, batch_size=32, epochs=1))
    _poison(monkeypatch, 1, "loss", float("inf"))
    out = tmp_path / "run"
    with pytest.raises(DivergenceError) as info:
        train(run, out, progress=False)
    msg = str(info.value)
    assert "at step 1 (epoch 1)" in msg and "loss term 'loss' is inf" in msg, msg
    assert "no checkpoint had been written yet" in msg
    assert not (out / "checkpoint.pt").exists()


def test_checkpoint_kept_after_divergence_has_finite_parameters_even_for_a_nan_gradient(tiny_data, tmp_path, monkeypatch, single_thread):
    real = SimVAE.forward
    calls = {"n": 0}

    def forward(self, batch):
        calls["n"] += 1
        terms = real(self, batch)
        if calls["n"] == 4:  # finite value, NaN gradient: d sqrt(u)/du at u = 0 is inf, times du/dp = 0
            p = next(self.parameters())
            terms["loss"] = terms["loss"] + torch.sqrt(((p - p.detach()) ** 2).sum())
        return terms

    monkeypatch.setattr(SimVAE, "forward", forward)
    run = build_run_config(tiny_train_config(tiny_data, train_subset=128, batch_size=32, epochs=2, checkpoint_every_steps=1))
    out = tmp_path / "run"
    with pytest.raises(DivergenceError):
        train(run, out, progress=False)
    assert _finite_model(load_checkpoint(out / "checkpoint.pt"))
