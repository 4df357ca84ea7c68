"""`simvae compare` with targets beyond the class: style/hair-colour columns with standard errors,
the chance note, and the content-vs-style and per-target gain figures."""

import csv
import json

from simvae.report.compare import compare_runs


def _run(root, method, seed, **metrics):
    d = root / f"{method}-{seed}"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"method": method, "dataset": "celeba", "mlp_acc": 0.9, **metrics}))
    (d / "config.json").write_text(json.dumps({"train": {"method": method, "seed": seed}, "method": {}, "eval": {}}))
    return d


def test_compare_shows_hair_colour_with_standard_error_and_draws_the_target_figures(tmp_path):
    dirs = [
        _run(
            tmp_path,
            "simvae",
            0,
            **{"hair_colour/mlp_acc": 0.70, "attr/Smiling/mlp_acc": 0.9, "style/flip/mlp_acc": 0.8, "style/flip/chance": 0.5},
        ),
        _run(tmp_path, "simvae", 1, **{"hair_colour/mlp_acc": 0.74, "attr/Smiling/mlp_acc": 0.9, "style/flip/mlp_acc": 0.9}),
        _run(tmp_path, "simclr", 0, **{"hair_colour/mlp_acc": 0.60, "attr/Smiling/mlp_acc": 0.92, "style/flip/mlp_acc": 0.5}),
    ]
    paths = compare_runs(dirs, tmp_path / "cmp", figure=False)
    names = {p.name for p in paths}
    assert {"content_style.png", "target_gains.png"} <= names
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "hair_colour MLP" in md and "style/flip MLP" in md and "attr/Smiling MLP" not in md
    assert "72.0 ± 2.0" in md  # mean ± standard error of 70 and 74
    assert "chance (the most frequent class): style/flip 50.0" in md
    rows = list(csv.DictReader(open(tmp_path / "cmp" / "comparison.csv")))
    assert abs(float(rows[0]["hair_colour/mlp_acc"]) - 0.72) < 1e-9 and abs(float(rows[0]["hair_colour/mlp_acc_se"]) - 0.02) < 1e-9
    assert (tmp_path / "cmp" / "target_gains.png").stat().st_size > 5000
