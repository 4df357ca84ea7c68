"""`simvae compare` averages only like with like: runs share a row when their whole configuration
matches except the seed (and keys that do not change the experiment); rows of one method are
labelled by what differs, and comparison.md says which keys split them. Runs without config.json
are grouped by method only, with a note; runs without checkpoint.pt are left out of the figure,
with a note; an earlier comparison is not overwritten unless asked.

Run folders are written by hand (metrics.json, config.json): no training.
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest

import simvae.report.compare as compare
from simvae.errors import RunDirError
from simvae.report.compare import compare_runs, comparison_rows, read_runs

TRAIN = {
    "dataset": "fashion-mnist",
    "method": "simvae",
    "epochs": 2,
    "batch_size": 128,
    "lr": 8e-5,
    "latent_dim": None,
    "seed": 0,
    "train_subset": None,
    "data_dir": None,
    "binarize": None,
    "download": True,
    "device": "auto",
    "compile": False,
    "checkpoint_every": 1,
    "checkpoint_every_steps": 0,
    "checkpoint_minutes": 10.0,
    "divergence_check_every": 0,
}
METHOD = {"n_views": 10, "prior_var": 1.0}
EVAL = {"val_size": 10000, "knn_max_k": 15, "probe_lr": 3e-4, "gmm_restarts": 10, "map_points": 3000, "seed": 0, "device": "auto"}


def write_run(
    folder: Path,
    knn: float,
    train: dict | None = None,
    method: dict | None = None,
    eval_: dict | None = None,
    config: bool = True,
    eval_in_metrics: bool = True,
    checkpoint: bool = False,
) -> Path:
    """A run folder holding metrics.json (and config.json, an empty checkpoint.pt where asked)."""
    folder.mkdir(parents=True)
    t = {**TRAIN, **(train or {})}
    ev = {**EVAL, **(eval_ or {})}
    metrics = {"method": t["method"], "dataset": t["dataset"], "knn_acc": knn, "linear_acc": knn - 0.05}
    if eval_in_metrics:
        metrics["eval_config"] = ev
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if config:
        cfg = {"train": t, "method": {**METHOD, **(method or {})}, "eval": copy.deepcopy(EVAL if eval_in_metrics else ev)}
        (folder / "config.json").write_text(json.dumps(cfg))
    if checkpoint:
        (folder / "checkpoint.pt").write_bytes(b"")
    return folder


def test_different_experiments_are_separate_rows_labelled_by_what_differs(tmp_path):
    a = write_run(tmp_path / "a", 0.76, {"epochs": 2, "train_subset": None})
    b = write_run(tmp_path / "b", 0.67, {"epochs": 1, "train_subset": 3000, "seed": 1})
    paths = compare_runs([a, b], tmp_path / "cmp")
    assert paths == [tmp_path / "cmp" / "comparison.md", tmp_path / "cmp" / "comparison.csv"]  # no checkpoint: no figure
    md = paths[0].read_text()
    assert "| simvae (ep=2, sub=all) | 1 | 76.0 |" in md, md
    assert "| simvae (ep=1, sub=3k)† | 1 | 67.0 |" in md, md
    assert not any("±" in line for line in md.splitlines() if line.startswith("| simvae")), md  # nothing averaged
    assert "Note: Rows of simvae differ in epochs (ep), train_subset (sub);" in md, md
    assert "Note: No reconstruction figure: no run has a checkpoint.pt" in md, md
    rows = list(csv.DictReader(paths[1].open()))
    assert [(r["method"], r["n_runs"], r["label"]) for r in rows] == [
        ("simvae", "1", "simvae (ep=2, sub=all)"),
        ("simvae", "1", "simvae (ep=1, sub=3k)"),
    ]


def test_seeds_and_incidental_keys_are_averaged(tmp_path):
    a = write_run(tmp_path / "s0", 0.70)
    b = write_run(
        tmp_path / "s1",
        0.80,
        {
            "seed": 1,
            "device": "cuda",
            "data_dir": "/elsewhere",
            "download": False,
            "compile": True,
            "checkpoint_every": 5,
            "checkpoint_every_steps": 100,
            "checkpoint_minutes": 0.0,
            "divergence_check_every": 25,
        },
        eval_={"seed": 3, "device": "cpu", "map_points": 0},
    )
    v = write_run(tmp_path / "vae", 0.60, {"method": "vae"}, method={"beta": 1.0})
    groups = read_runs([a, b, v])
    assert list(groups) == ["simvae", "vae"]
    rows = comparison_rows(groups)
    assert rows[0]["n_runs"] == 2 and rows[0]["knn_acc"] == pytest.approx(0.75) and rows[0]["knn_acc_se"] == pytest.approx(0.05)
    md = compare_runs([a, b, v], tmp_path / "cmp")[0].read_text()
    assert "| simvae | 2 | 75.0 ± 5.0 |" in md and "| vae | 1 | 60.0 |" in md, md
    assert "differ in" not in md, md


@pytest.mark.parametrize("section", ["method", "eval_used", "eval_config_json"])
def test_method_and_evaluation_settings_split_rows(tmp_path, section):
    if section == "method":
        kw = [{"method": {"n_views": 10}}, {"method": {"n_views": 2}}]
    elif section == "eval_used":  # the settings evaluation ran with (metrics.json) decide
        kw = [{"eval_": {"knn_max_k": 15}}, {"eval_": {"knn_max_k": 3}}]
    else:  # metrics.json without eval_config: config.json's eval section decides
        kw = [{"eval_": {"knn_max_k": 15}, "eval_in_metrics": False}, {"eval_": {"knn_max_k": 3}, "eval_in_metrics": False}]
    a, b = (write_run(tmp_path / f"r{i}", 0.7, **k) for i, k in enumerate(kw))
    labels = list(read_runs([a, b]))
    key = "J" if section == "method" else "knn_max_k"  # n_views is the paper's J
    assert labels == [f"simvae ({key}={10 if section == 'method' else 15})", f"simvae ({key}={2 if section == 'method' else 3})"]


def test_runs_without_config_are_grouped_by_method_and_said_so(tmp_path):
    a = write_run(tmp_path / "a", 0.70, config=False)
    b = write_run(tmp_path / "b", 0.80, {"epochs": 1}, config=False)
    md = compare_runs([a, b], tmp_path / "cmp")[0].read_text()
    assert "| simvae | 2 | 75.0 ± 5.0 |" in md, md
    assert f"Note: No config.json in {a}, {b}: grouped by method only" in md, md
    c = write_run(tmp_path / "c", 0.60)
    assert list(read_runs([a, c, b])) == ["simvae (no config.json)", "simvae"]


def test_an_earlier_comparison_is_not_overwritten(tmp_path):
    a = write_run(tmp_path / "a", 0.70)
    out = tmp_path / "cmp"
    compare_runs([a], out)
    before = (out / "comparison.md").read_text()
    b = write_run(tmp_path / "b", 0.50, {"epochs": 9})
    with pytest.raises(RunDirError) as info:
        compare_runs([a, b], out)
    msg = str(info.value)
    assert "\n" not in msg and str(out) in msg and "--overwrite" in msg and "--out" in msg, msg
    assert (out / "comparison.md").read_text() == before
    compare_runs([a, b], out, overwrite=True)
    assert "ep=9" in (out / "comparison.md").read_text()


def test_figure_shows_runs_with_a_checkpoint_and_notes_the_rest(tmp_path, monkeypatch):
    shown = {}

    def fake_figure(runs, path):
        shown.update(runs)
        path.write_bytes(b"png")
        return [path]

    monkeypatch.setattr(compare, "reconstruction_figure", fake_figure)
    a = write_run(tmp_path / "a", 0.7)  # same experiment as b, no checkpoint: b is shown for the row
    b = write_run(tmp_path / "b", 0.8, {"seed": 1}, checkpoint=True)
    metrics = json.loads((b / "metrics.json").read_text())
    (b / "metrics.json").write_text(json.dumps({**metrics, "recon_mse": 0.02}))  # it has a decoder of its own
    c = write_run(tmp_path / "c", 0.6, {"epochs": 1})  # its own row, no checkpoint
    paths = compare_runs([a, b, c], tmp_path / "cmp")
    assert paths[-1] == tmp_path / "cmp" / "reconstructions.png"
    assert shown == {"simvae (ep=2)": str(b)}
    md = paths[0].read_text()
    assert f"Note: Reconstruction figure: simvae (ep=1) left out (no checkpoint.pt, config.json and decoder in {c};" in md, md


def test_a_folder_given_twice_is_refused(tmp_path):
    a = write_run(tmp_path / "a", 0.7)
    with pytest.raises(RunDirError, match="given twice"):
        read_runs([a, tmp_path / "." / "a"])


def test_labels_list_the_differing_keys_in_config_order(tmp_path):
    a = write_run(tmp_path / "a", 0.7, {"train_subset": 500, "binarize": True})
    b = write_run(tmp_path / "b", 0.7, {"train_subset": None, "binarize": False})
    assert list(read_runs([a, b])) == ["simvae (sub=500, bin=on)", "simvae (sub=all, bin=off)"]
