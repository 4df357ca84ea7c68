"""The shape later features plug into: a new evaluator and target are registry lines; the loop
logs like a log file when not on a terminal; loading a run never imports the training loop."""

import io
import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO, cli_env

from simvae.data import Target
from simvae.evaluate import EVALUATORS, METRICS, evaluate_targets
from simvae.evaluate.registry import format_value, metric
from simvae.run_config import EvalConfig, build_run_config


@pytest.fixture
def restored_registries():
    """The metric and evaluator registries as they were, after the test (other tests see only
    the built-in ones)."""
    saved_evaluators, saved_metrics = dict(EVALUATORS), dict(METRICS)
    yield
    EVALUATORS.clear()
    EVALUATORS.update(saved_evaluators)
    METRICS.clear()
    METRICS.update(saved_metrics)


def test_a_new_evaluator_is_one_file_plus_one_import(restored_registries):
    """A toy evaluator (tests/toy_evaluator.py: one decorated function with its metric) on a style
    target: importing its file registers it; --skip knows it; it runs on the targets it applies to;
    its metric is named, labelled and formatted. No existing file changes."""
    import importlib
    import sys

    from simvae.errors import ConfigError
    from simvae.evaluate import check_evaluator_names, evaluator_names

    sys.modules.pop("toy_evaluator", None)
    with pytest.raises(ConfigError, match="unknown evaluator 'nearest_mean'"):
        check_evaluator_names(["nearest_mean"])
    importlib.import_module("toy_evaluator")  # the one import line
    assert "nearest_mean" in evaluator_names()
    check_evaluator_names(["nearest_mean"])  # --skip nearest_mean is accepted now
    g = torch.Generator().manual_seed(0)
    train_style = torch.randint(0, 2, (300,), generator=g)
    test_style = torch.randint(0, 2, (100,), generator=g)
    train_x = torch.randn(300, 4, generator=g) + 3 * train_style[:, None].float()
    test_x = torch.randn(100, 4, generator=g) + 3 * test_style[:, None].float()
    content = Target("class", torch.zeros(300, dtype=torch.long), torch.zeros(100, dtype=torch.long), 1)
    style = Target("style/shift", train_style, test_style, 2, role="style")
    cfg = EvalConfig(val_size=50, probe_max_epochs=2, gmm_restarts=1, knn_max_k=3)
    m = evaluate_targets(train_x, test_x, [content, style], cfg, skip=("gmm", "probes"))
    assert m["style/shift/nearest_mean_acc"] > 0.9
    assert "nearest_mean_acc" not in m  # not run on the content target
    assert "style/shift/knn_acc" in m and "knn_acc" in m
    assert metric("style/shift/nearest_mean_acc").label == "nearest class mean (style/shift)"
    assert format_value("style/shift/nearest_mean_acc", 0.9123) == "91.2"
    assert "style/shift/nearest_mean_acc" not in evaluate_targets(
        train_x, test_x, [content, style], cfg, skip=("gmm", "probes", "nearest_mean")
    )


def test_missing_labels_leave_only_their_target():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 3, generator=g)
    y = (x[:, 0] > 0).long()
    y_missing = y.clone()
    y_missing[::3] = -1
    cfg = EvalConfig(val_size=40, probe_max_epochs=3, gmm_restarts=1, knn_max_k=3)
    m = evaluate_targets(
        x[:150], x[150:], [Target("class", y[:150], y[150:], 2), Target("partial", y_missing[:150], y_missing[150:], 2, "style")], cfg
    )
    assert 0 <= m["partial/knn_acc"] <= 1 and "partial/gmm_acc" not in m  # GMM is for content targets


def test_progress_off_a_terminal_logs_lines_not_bar_redraws(tiny_data, tmp_path):
    from simvae.train import Trainer
    from simvae.train.callbacks import Progress

    run = build_run_config(
        {
            "train": {
                "dataset": "mnist",
                "data_dir": str(tiny_data),
                "download": False,
                "device": "cpu",
                "train_subset": 64,
                "batch_size": 8,
                "epochs": 2,
            },
            "method": {"n_views": 2},
        }
    )
    stream = io.StringIO()  # not a terminal
    trainer = Trainer(run, tmp_path, progress=True)
    callbacks = trainer.default_callbacks()
    callbacks[0] = Progress(True, every_s=0.0, stream=stream)
    trainer.fit(callbacks=callbacks)
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.strip().splitlines()
    assert sum(line.startswith("epoch 1/2: loss=") for line in lines) == 1
    assert any(line.startswith("epoch 2/2: loss=") for line in lines)
    assert any("estimated training time" in line for line in lines)
    assert len(lines) < 30


def test_evaluating_a_run_never_imports_the_training_loop(tmp_path):
    """The modules `simvae evaluate RUN_DIR` imports (measured in a fresh interpreter)."""
    code = (
        "import sys, simvae.cli, simvae.pipeline, simvae.run, simvae.evaluate, simvae.report, simvae.report.compare;"
        "print(sorted(m for m in sys.modules if m.startswith('simvae')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    modules = eval(out.stdout.strip())
    assert "simvae.run" in modules and "simvae.evaluate" in modules
    assert not any(m == "simvae.train" or m.startswith("simvae.train.") for m in modules), modules


def test_import_layers_hold():
    """import-linter's contracts (pyproject.toml) pass: layers point one way."""
    exe = __import__("pathlib").Path(sys.executable).parent / "lint-imports"
    if not exe.exists():
        import pytest

        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    out = subprocess.run([str(exe)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "broken" in out.stdout and " 0 broken" in out.stdout


def test_per_epoch_callback_values_join_the_epoch_record(tiny_data, tmp_path):
    """``fit(on_epoch_end=...)`` adds its values to each epoch's record; its time is not training time."""
    import time as _time

    from simvae.train import Trainer

    run = build_run_config(
        {
            "train": {
                "dataset": "mnist",
                "data_dir": str(tiny_data),
                "download": False,
                "device": "cpu",
                "train_subset": 32,
                "batch_size": 8,
                "epochs": 2,
            },
            "method": {"n_views": 2},
        }
    )
    seen = []

    def on_epoch_end(trainer, record):
        seen.append(record["epoch"])
        _time.sleep(0.3)
        return {"val_score": 0.5 + record["epoch"]}

    summary = Trainer(run, tmp_path, progress=False).fit(on_epoch_end)
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert seen == [1, 2] and [r["val_score"] for r in log] == [1.5, 2.5]
    assert summary["train_seconds"] < log[-1]["wall_seconds"] + 0.3  # the 0.6 s of callbacks is not counted


def test_latent_map_draws_every_class(tmp_path):
    from PIL import Image

    from simvae.report.figures import latent_map

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 4
    reps = torch.randn(200, 6, generator=g) + 4 * torch.nn.functional.one_hot(labels, 6).float()
    latent_map(reps, labels, ["a", "b", "c", "d"], tmp_path / "map.png", n_points=150, seed=0, title="t")
    img = Image.open(tmp_path / "map.png")
    assert img.size[0] > 200 and img.size[1] > 200
    colours = {tuple(p) for p in __import__("numpy").asarray(img.convert("RGB")).reshape(-1, 3).tolist()}
    assert len(colours) > 4  # more than background and axes: the coloured classes


def test_a_new_data_set_is_one_file_plus_one_import(tmp_path):
    """tests/toy_dataset.py registers a data set with its preset; importing it is all it takes to
    train on it, and its preset (not another data set's) decides the networks."""
    import importlib

    from simvae.data import DATASETS, DatasetSpec, register_dataset
    from simvae.errors import ConfigError
    from simvae.run_config import model_spec
    from simvae.train import train

    with pytest.raises(ConfigError, match="unknown data set 'toy-bars'"):
        build_run_config({"train": {"dataset": "toy-bars"}})
    importlib.import_module("toy_dataset")  # the one import line
    try:
        run = build_run_config({"train": {"dataset": "toy-bars", "device": "cpu", "batch_size": 16, "epochs": 1}, "method": {"n_views": 2}})
        assert model_spec(run, (1, 16, 16)).latent_dim == 4
        summary = train(run, tmp_path / "run", progress=False)
        assert summary["finished"] and summary["train_images"] == 96
        with pytest.raises(TypeError, match="has no preset"):
            register_dataset(DatasetSpec("no-preset", lambda **kw: None, None))
        assert "no-preset" not in DATASETS
    finally:
        DATASETS.pop("toy-bars", None)


def test_the_readme_lists_every_run_folder_file():
    """The run-folder table of the README is the one in simvae/rundir.py (one place)."""
    from simvae.rundir import RUN_FILES, RUN_FOLDERS

    readme = (REPO / "README.md").read_text()
    for name in [*RUN_FILES, *(f"{n}/" for n in RUN_FOLDERS)]:
        assert f"| `{name}` |" in readme, name
