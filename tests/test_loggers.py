"""Experiment logs (``--logger csv,tensorboard,wandb``): what a tiny run writes, read back."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import tiny_train_config

from simvae.errors import ConfigError
from simvae.run_config import TrainConfig, build_run_config
from simvae.train import Trainer
from simvae.train.callbacks import CsvWriter, ExperimentLogs, knn_accuracy


def _train(tiny_data, out, loggers, epochs=2):
    run = build_run_config(tiny_train_config(tiny_data, epochs=epochs, logger=loggers))
    trainer = Trainer(run, out, progress=False)
    trainer.fit()
    return trainer


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_logs_steps_and_a_validation_knn_per_epoch(tiny_data, tmp_path):
    trainer = _train(tiny_data, tmp_path, ["csv"])
    steps = _rows(tmp_path / "logs" / "steps.csv")
    assert [int(r["step"]) for r in steps] == list(range(1, trainer.step + 1))  # 4 steps an epoch: every step
    for key in ("train/loss", "train/lr", "train/views_per_s", "train/threads"):
        assert all(float(r[key]) > 0 or key == "train/loss" for r in steps), key
    assert float(steps[0]["train/lr"]) == pytest.approx(trainer.run.train.lr)
    epochs = _rows(tmp_path / "logs" / "epochs.csv")
    assert [int(r["step"]) for r in epochs] == [trainer.steps_per_epoch, 2 * trainer.steps_per_epoch]
    assert all(0.0 <= float(r["val/knn_acc"]) <= 1.0 for r in epochs)
    assert float(epochs[-1]["epoch/loss"]) == pytest.approx(
        [r for r in map(__import__("json").loads, (tmp_path / "metrics.jsonl").read_text().splitlines())][-1]["loss"]
    )


def test_tensorboard_events_hold_the_per_epoch_validation_knn(tiny_data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = _train(tiny_data, tmp_path, ["tensorboard"])
    events = EventAccumulator(str(tmp_path / "logs" / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "train/views_per_s", "epoch/loss", "val/knn_acc"} <= set(tags)
    knn = events.Scalars("val/knn_acc")
    assert [e.step for e in knn] == [trainer.steps_per_epoch, 2 * trainer.steps_per_epoch]
    assert all(0.0 <= e.value <= 1.0 for e in knn)
    assert len(events.Scalars("train/loss")) == trainer.step


def test_a_logger_whose_package_is_missing_is_refused_in_one_line(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError) as e:
        ExperimentLogs(tmp_path, ["csv", "wandb"])
    assert "pip install 'simvae[wandb]'" in str(e.value) and "\n" not in str(e.value)


def test_logger_option_is_a_checked_list():
    from simvae.config import from_text

    assert from_text(TrainConfig, "logger", "csv,tensorboard") == ["csv", "tensorboard"]
    assert build_run_config({"train": {"logger": ["csv"]}}).train.logger == ["csv"]
    assert build_run_config({}).train.logger == []
    with pytest.raises(ConfigError):
        build_run_config({"train": {"logger": ["tensorbord"]}})


def test_csv_rows_after_a_resumed_checkpoint_are_dropped(tmp_path):
    w = CsvWriter(tmp_path, 0)
    for step in range(1, 11):
        w.write("steps", step, {"train/loss": float(step)})
    w.write("steps", 11, {"train/loss": 11.0, "train/new": 1.0})  # a new column widens the header
    rows = _rows(tmp_path / "steps.csv")
    assert len(rows) == 11 and rows[0]["train/new"] == "" and rows[-1]["train/new"] == "1.0"
    CsvWriter(tmp_path, 5)  # resumed at step 5: steps 6.. are logged again
    assert [int(r["step"]) for r in _rows(tmp_path / "steps.csv")] == [1, 2, 3, 4, 5]
    CsvWriter(tmp_path, 0)  # a fresh run starts empty
    assert not (tmp_path / "steps.csv").exists()


def test_validation_knn_agrees_with_the_evaluation_knn():
    from simvae.evaluate.knn import knn_accuracies

    g = torch.Generator().manual_seed(0)
    ref_x, query_x = torch.randn(300, 5, generator=g), torch.randn(100, 5, generator=g)
    ref_y, query_y = torch.randint(0, 4, (300,), generator=g), torch.randint(0, 4, (100,), generator=g)
    ref_x[:, 0] += ref_y * 2.0
    query_x[:, 0] += query_y * 2.0
    expected = knn_accuracies(ref_x, ref_y, query_x, query_y, 7, 4)
    for k in (1, 4, 7):
        assert knn_accuracy(ref_x, ref_y, query_x, query_y, k, 4) == pytest.approx(float(expected[k - 1]))
