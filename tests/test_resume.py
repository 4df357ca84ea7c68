"""Kill-and-resume: a run SIGKILLed mid-epoch and continued with ``--resume`` ends bit-for-bit
where the same run ends uninterrupted, with one metrics line per epoch; and the error cases of
``--resume``.

The scenario (module fixture ``killed_and_resumed``), on a tiny synthetic IDX data set:
256 images, batch 32 -> 8 steps per epoch, 5 epochs = 40 steps, a checkpoint every 3 steps
(mid-epoch at steps 3, 6, 9, 12, 15, 18, ... and at every epoch end). RUN is started in a
subprocess and SIGKILLed as soon as it has written a mid-epoch checkpoint at step >= 9 whose
position inside the epoch is 1..4 (so that at least three more steps would be needed before
the next epoch-end checkpoint: the checkpoint on disk at the kill is still mid-epoch); RUN2,
the same config, runs uninterrupted at the same time in another subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_EVAL_ARGS, cli_env, run_cli, run_cli_forked, simvae_cmd, tiny_train_args, tiny_train_config

pytestmark = [
    pytest.mark.usefixtures("float32"),  # whatever the default dtype other test modules left
    pytest.mark.slow,
]  # starts processes: its own CI step

STEPS_PER_EPOCH = 8
EPOCHS = 5
EVERY = 3


def _train_args(data_dir: Path, out: Path) -> list[str]:
    return [
        "train",
        *tiny_train_args(
            data_dir,
            "--out",
            str(out),
            "--no-eval",
            "--quiet",
            "--seed",
            "0",
            "--checkpoint-every-steps",
            str(EVERY),
            subset=256,
            batch=32,
            views=2,
            epochs=EPOCHS,
        ),
    ]


def _load(path: Path):
    """The checkpoint, or None while it does not exist (it is replaced atomically; retry on any error)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def killed_and_resumed(tiny_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    run, run2 = base / "RUN", base / "RUN2"
    env = cli_env()
    victim = subprocess.Popen(simvae_cmd(*_train_args(tiny_data, run)), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reference = subprocess.Popen(
        simvae_cmd(*_train_args(tiny_data, run2)), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        ckpt_path = run / "checkpoint.pt"
        seen = None
        last_mtime = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if victim.poll() is not None:
                out, err = victim.communicate()
                pytest.fail(
                    f"the run ended (status {victim.returncode}) before it could be killed mid-epoch; "
                    f"last checkpoint seen: {seen}; stderr: {err[-2000:]}"
                )
            try:
                mtime = ckpt_path.stat().st_mtime_ns
            except FileNotFoundError:
                mtime = None
            if mtime is not None and mtime != last_mtime:
                last_mtime = mtime
                ck = _load(ckpt_path)
                if ck is not None:
                    seen = (ck["epoch"], ck["step"], ck["epoch_step"])
                    if ck["step"] >= 9 and 1 <= ck["epoch_step"] <= 4:
                        assert victim.poll() is None, "the run must still be running when it is killed"
                        os.kill(victim.pid, signal.SIGKILL)
                        break
            time.sleep(0.01)
        else:
            pytest.fail(f"no mid-epoch checkpoint at step >= 9 appeared in time (last seen {seen})")
        victim.communicate(timeout=30)
        assert victim.returncode == -signal.SIGKILL, "the run was killed by SIGKILL, not ended by itself"
        at_kill = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        _, ref_err = reference.communicate(timeout=300)
        assert reference.returncode == 0, ref_err
    finally:
        for p in (victim, reference):
            if p.poll() is None:
                p.kill()
                p.wait()
    lines_at_kill = _metrics(run)
    resumed = run_cli("train", "--resume", str(run), "--no-eval", "--quiet", timeout=300)
    # Then, in one batch of processes forked from one server (see conftest.run_cli_forked):
    # 'simvae evaluate RUN', and --resume on folders that cannot be resumed.
    no_ckpt, empty = base / "no-checkpoint", base / "empty"
    no_ckpt.mkdir()
    (no_ckpt / "config.json").write_text((run2 / "config.json").read_text())
    empty.mkdir()
    after = run_cli_forked(
        [
            ["evaluate", str(run), "--quiet", *TINY_EVAL_ARGS],
            ["train", "--resume", str(no_ckpt), "--no-eval", "--quiet"],
            ["train", "--resume", str(empty), "--no-eval", "--quiet"],
            ["train", "--resume", str(run2), "--lr", "3e-4", "--no-eval"],
        ],
        cwd=base,
    )
    return {
        "run": run,
        "run2": run2,
        "at_kill": at_kill,
        "lines_at_kill": lines_at_kill,
        "resumed": resumed,
        "evaluate": after[0],
        "errors": after[1:],
        "no_ckpt": no_ckpt,
        "empty": empty,
    }


def test_killed_mid_epoch(killed_and_resumed):
    ck = killed_and_resumed["at_kill"]
    # The checkpoint the resume starts from is a mid-epoch one, and training was far from done.
    assert 0 < ck["epoch_step"] < STEPS_PER_EPOCH, (ck["epoch"], ck["step"], ck["epoch_step"])
    assert ck["step"] == ck["epoch"] * STEPS_PER_EPOCH + ck["epoch_step"]
    assert ck["step"] < EPOCHS * STEPS_PER_EPOCH
    assert ck["epoch_perm"] is not None  # the epoch's shuffle is kept, to continue the same epoch


def test_resume_completes(killed_and_resumed):
    r = killed_and_resumed["resumed"]
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


def test_resumed_run_equals_uninterrupted_run(killed_and_resumed):
    assert killed_and_resumed["resumed"].returncode == 0, killed_and_resumed["resumed"].stderr
    a = torch.load(killed_and_resumed["run"] / "checkpoint.pt", map_location="cpu", weights_only=True)
    b = torch.load(killed_and_resumed["run2"] / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert (a["epoch"], a["step"], a["epoch_step"]) == (b["epoch"], b["step"], b["epoch_step"]) == (EPOCHS, EPOCHS * STEPS_PER_EPOCH, 0)
    assert a["model"].keys() == b["model"].keys()
    differ = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not differ, f"parameters differ after resume: {differ}"
    # The optimiser state (Adam moments, step counts) too.
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in sa[k]:
            assert torch.equal(torch.as_tensor(sa[k][name]), torch.as_tensor(sb[k][name])), (k, name)
    # Training really moved the parameters away from the state at the kill.
    at_kill = killed_and_resumed["at_kill"]["model"]
    assert any(not torch.equal(at_kill[k], a["model"][k]) for k in at_kill)


def test_metrics_log_has_one_line_per_epoch(killed_and_resumed):
    assert killed_and_resumed["resumed"].returncode == 0, killed_and_resumed["resumed"].stderr
    lines = _metrics(killed_and_resumed["run"])
    ref = _metrics(killed_and_resumed["run2"])
    assert [r["epoch"] for r in lines] == list(range(1, EPOCHS + 1))
    assert [r["step"] for r in lines] == [STEPS_PER_EPOCH * e for e in range(1, EPOCHS + 1)]
    assert [r["epoch"] for r in ref] == list(range(1, EPOCHS + 1))
    # Lines written before the kill are kept as they were.
    at_kill = killed_and_resumed["lines_at_kill"]
    assert lines[: len(at_kill)] == at_kill
    # Epochs run entirely after the resume log exactly the losses of the uninterrupted run.
    resumed_epoch = killed_and_resumed["at_kill"]["epoch"] + 1
    for got, want in zip(lines[resumed_epoch:], ref[resumed_epoch:]):
        for key in ("loss", "log_lik", "entropy", "log_prior"):
            assert got[key] == want[key], (got["epoch"], key)
    summary = json.loads((killed_and_resumed["run"] / "train_summary.json").read_text())
    assert summary["epochs"] == EPOCHS and summary["steps"] == EPOCHS * STEPS_PER_EPOCH


def test_resumed_epoch_logs_the_mean_over_the_whole_epoch(killed_and_resumed):
    lines = _metrics(killed_and_resumed["run"])
    ref = _metrics(killed_and_resumed["run2"])
    e = killed_and_resumed["at_kill"]["epoch"]  # 0-based index of the epoch interrupted mid-way
    assert lines[e]["loss"] == pytest.approx(ref[e]["loss"], rel=1e-5)


def test_evaluate_after_resume(killed_and_resumed):
    run = killed_and_resumed["run"]
    assert killed_and_resumed["resumed"].returncode == 0, killed_and_resumed["resumed"].stderr
    r = killed_and_resumed["evaluate"]
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("knn_acc", "linear_acc", "mlp_acc", "gmm_acc"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["method"] == "simvae" and metrics["n_test"] == 64
    assert (run / "report.md").is_file()
    assert "knn_acc=" in r.stdout


def test_resume_error_cases(killed_and_resumed):
    no_ckpt, empty = killed_and_resumed["no_ckpt"], killed_and_resumed["empty"]
    expected = [(str(no_ckpt), "no checkpoint"), (str(empty), "no config.json"), ("--lr", "--resume continues the experiment")]
    for r, (where, what) in zip(killed_and_resumed["errors"], expected):
        assert r.returncode != 0, r
        assert len(r.stderr_lines) == 1, r.stderr
        line = r.stderr_lines[0]
        assert line.startswith("simvae: error: "), line
        assert where in line and what in line, line
        assert "Traceback" not in r.stderr
    assert not (no_ckpt / "checkpoint.pt").exists() and not (empty / "config.json").exists()


def test_resume_does_not_duplicate_epochs_logged_after_the_checkpoint(tiny_data, tmp_path, monkeypatch, single_thread):
    from simvae.run_config import build_run_config
    from simvae.train import Trainer, load_run_config, train

    run = build_run_config(tiny_train_config(tiny_data, train_subset=64, batch_size=32, epochs=4, checkpoint_every=2))
    out = tmp_path / "run"
    real_step = Trainer.train_step

    def interrupted(self, idx):
        if self.step == 7:  # epoch 4 (steps 6..7): epochs 1-3 are logged, the checkpoint is at epoch 2
            raise KeyboardInterrupt
        return real_step(self, idx)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(run, out, progress=False)
    assert [r["epoch"] for r in _metrics(out)] == [1, 2, 3]
    monkeypatch.setattr(Trainer, "train_step", real_step)
    train(load_run_config(out), out, resume=True, progress=False)
    assert [r["epoch"] for r in _metrics(out)] == [1, 2, 3, 4]
