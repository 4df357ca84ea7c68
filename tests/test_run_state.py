"""A run's state is part of its results; interrupt, resume and extend work as printed
(issues: faults found in peer tools #2, a new user's first hour #1)."""

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import TINY_EVAL_ARGS, cli_env, run_cli, simvae_cmd, tiny_train_args

from simvae.run_config import build_run_config
from simvae.train import Trainer, TrainingInterrupted, extend_run, run_state, train


def _cfg(data_dir, **train):
    base = {
        "dataset": "mnist",
        "data_dir": str(data_dir),
        "download": False,
        "device": "cpu",
        "train_subset": 64,
        "batch_size": 8,
        "epochs": 3,
        "seed": 0,
    }
    base.update(train)
    return build_run_config({"train": base, "method": {"n_views": 2}})


class StopAfter:
    """A callback that sends this process SIGINT after ``n`` steps (as Ctrl-C would)."""

    def __init__(self, n):
        self.n = n

    def on_train_start(self, trainer): ...

    def on_step_end(self, trainer, terms):
        if trainer.step == self.n:
            os.kill(os.getpid(), signal.SIGINT)

    def on_epoch_end(self, trainer, record): ...

    def on_train_end(self, trainer): ...


def test_sigint_writes_a_checkpoint_that_resumes_mid_epoch(tiny_data, tmp_path):
    run = _cfg(tiny_data)
    out = tmp_path / "run"
    from simvae.train import prepare_run_dir

    prepare_run_dir(out, run, False, False)
    run.save(out / "config.json")
    trainer = Trainer(run, out, progress=False)
    callbacks = trainer.default_callbacks()
    with pytest.raises(TrainingInterrupted):
        trainer.fit(callbacks=[StopAfter(10)] + callbacks)  # epoch 2, step 2 (8 steps per epoch)
    state = run_state(out)
    assert state == {"epoch": 1, "epoch_step": 2, "step": 10, "epochs_planned": 3, "finished": False}
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["finished"] is False and summary["steps"] == 10
    # resuming continues from there and ends where an uninterrupted run ends
    done = train(run, out, resume=True, progress=False)
    assert done["steps"] == 24 and done["finished"] is True
    straight = train(run, tmp_path / "straight", progress=False)
    assert straight["steps"] == 24
    import torch

    a = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_extend_records_history_and_refuses_less(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_data, epochs=1), out, progress=False)
    new = extend_run(out, 2)
    assert new.train.epochs == 2
    history = [json.loads(line) for line in (out / "config_history.jsonl").read_text().splitlines()]
    assert history[-1]["change"] == {"train.epochs": [1, 2]} and history[-1]["after_epoch"] == 1
    summary = train(new, out, resume=True, progress=False)
    assert summary["epochs"] == 2 and summary["finished"]
    from simvae.errors import ConfigError

    with pytest.raises(ConfigError, match="more than the 2 epochs"):
        extend_run(out, 2)


def test_unfinished_run_is_marked_in_metrics_report_and_warning(tiny_data, tmp_path):
    run = _cfg(tiny_data, epochs=3)
    out = tmp_path / "run"
    from simvae.train import prepare_run_dir

    prepare_run_dir(out, run, False, False)
    run.save(out / "config.json")
    trainer = Trainer(run, out, progress=False)
    with pytest.raises(TrainingInterrupted):
        trainer.fit(callbacks=[StopAfter(10)] + trainer.default_callbacks())
    r = run_cli("evaluate", str(out), *TINY_EVAL_ARGS)
    assert r.returncode == 0, r.stderr
    assert any("did not finish training" in line and "epoch 1 + 2 steps (step 10) of 3 epochs" in line for line in r.stderr_lines), r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finished"] is False and metrics["model_epoch"] == 1 and metrics["model_step"] == 10
    assert metrics["epochs_planned"] == 3
    report = (out / "report.md").read_text()
    assert "did not finish" in report and "epoch 1 + 2 steps" in report


def test_resume_cli_says_where_and_finished(tiny_data, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", *tiny_train_args(tiny_data, subset=64, batch=16, epochs=1), "--out", str(out), "--no-eval", "--quiet")
    assert r.returncode == 0, r.stderr
    r = run_cli("train", "--resume", str(out))
    assert r.returncode == 0 and "is finished (1 of 1 epochs" in r.stderr and "--epochs N" in r.stderr, r.stderr
    assert "trained" not in r.stderr  # no re-training, no re-evaluation
    r = run_cli("train", "--resume", str(out), "--epochs", "2", "--no-eval", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "from epoch 1 (step 4) of 2 epochs" in r.stderr, r.stderr
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 2


def test_overwrite_alone_reuses_the_folders_config(tiny_data, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", *tiny_train_args(tiny_data, subset=64, batch=16, epochs=1), "--out", str(out), "--no-eval", "--quiet")
    assert r.returncode == 0, r.stderr
    r = run_cli("train", "--out", str(out), "--overwrite", "--no-eval", "--quiet")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((out / "config.json").read_text())["train"]
    assert cfg["train_subset"] == 64 and cfg["dataset"] == "mnist"  # not the 2-epoch full-data default
    assert json.loads((out / "train_summary.json").read_text())["train_images"] == 64


@pytest.mark.slow
def test_ctrl_c_in_a_real_process_prints_a_resume_that_works(tiny_data, tmp_path):
    """SIGINT during training: exit 130, a checkpoint, and the printed command continues the run."""
    out = tmp_path / "run"
    args = ["train", *tiny_train_args(tiny_data, subset=256, batch=8, epochs=50), "--out", str(out), "--no-eval", "--quiet"]
    p = subprocess.Popen(simvae_cmd(*args), env=cli_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text().strip():
        assert time.monotonic() < deadline and p.poll() is None, p.stderr.read() if p.poll() is not None else "timeout"
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130, err
    assert f"continue with 'simvae train --resume {out}'" in err, err
    state = run_state(out)
    assert state["finished"] is False and state["step"] >= 32
    r = run_cli("train", "--resume", str(out), "--epochs", str(state["epoch"] + 1), "--no-eval", "--quiet")
    assert r.returncode == 0, r.stderr
    assert run_state(out)["finished"] is True
