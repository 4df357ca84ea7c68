"""``simvae reproduce`` / ``simvae sweep``: planning a grid, the state of each run folder, the paper's
tables and claims, and (slow) a tiny grid run end to end, killed and resumed, and through submitit."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import cli_env, run_cli, simvae_cmd

from simvae.errors import ConfigError, RunDirError
from simvae.grid import GridRun, commands, eval_options, parse_epochs_for, parse_methods, parse_seeds, run_state, set_to_args
from simvae.report.claims import build_claims, claims_markdown
from simvae.report.paper import paper_text, paper_value
from simvae.report.tables import build_tables, read_grid, write_sweep, write_tables

METHODS = ["random", "simclr", "moco", "mocov2", "vicreg", "vae", "beta-vae", "cr-vae", "simvae"]


# ------------------------------------------------------------------------------------------ parsing


def test_seeds_methods_and_options_parse():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("0,4,7") == [0, 4, 7]
    with pytest.raises(ConfigError):
        parse_seeds("two")
    with pytest.raises(ConfigError):
        parse_seeds("1,1")
    assert parse_methods("all", METHODS) == METHODS  # the paper's row order
    assert parse_methods("simvae,vae", METHODS) == ["vae", "simvae"]
    with pytest.raises(ConfigError, match="did you mean 'simvae'"):
        parse_methods("simvea", METHODS)
    assert parse_epochs_for(["vae=3"], ["vae", "simvae"]) == {"vae": 3}
    with pytest.raises(ConfigError):
        parse_epochs_for(["random=3"], ["random"])
    assert set_to_args(["train.lr=3e-4", "eval.paper_probes=true", "method.beta=false"]) == ["--lr", "3e-4", "--paper-probes", "--no-beta"]
    with pytest.raises(ConfigError):
        set_to_args(["lr=3"])
    args = [
        "--dataset",
        "mnist",
        "--seed",
        "2",
        "--gmm-restarts",
        "3",
        "--quick-eval",
        "--no-linear-lr-search",
        "--lr",
        "1e-3",
        "--device",
        "cpu",
    ]
    assert eval_options(args) == ["--gmm-restarts", "3", "--quick-eval", "--no-linear-lr-search", "--device", "cpu"]


def test_a_method_option_goes_to_the_methods_that_take_it():
    from simvae.grid import method_options_for_grid

    out = method_options_for_grid(["--beta", "0.25", "--lr", "1e-3", "--temperature", "0.5"], ["vae", "beta-vae", "simclr"])
    assert out == {
        "vae": ["--lr", "1e-3"],
        "beta-vae": ["--beta", "0.25", "--lr", "1e-3"],
        "simclr": ["--lr", "1e-3", "--temperature", "0.5"],
    }
    with pytest.raises(ConfigError, match="beta-vae"):
        method_options_for_grid(["--beta", "0.25"], ["vae"])


def test_paper_figures_are_the_papers():
    assert paper_value("mlp_acc", "simvae", "fashion-mnist") == pytest.approx((0.821, 0.0))
    assert paper_value("knn_acc", "random", "mnist") == pytest.approx((0.461, 0.025))
    assert paper_value("gmm_nmi", "simvae", "fashion-mnist") == pytest.approx((0.771, 0.0))
    assert paper_value("fid", "simvae", "cifar10") == pytest.approx((349.9, 2.1))
    assert paper_value("recon_mse", "cr-vae", "mnist") == pytest.approx((0.030, 0.0))
    assert paper_value("linear_acc", "moco", "celeba") is None  # "-" in Table 5
    assert paper_value("linear_acc", "mocov2", "mnist") is None  # no MoCo v2 row in Table 5
    assert paper_text("fid", "cr-vae", "mnist") == "153.0 ± 0.9"


# ------------------------------------------------------------------------------------------ a fake grid


def fake_grid(
    root: Path, metrics: dict[str, list[dict]], dataset: str = "fashion-mnist", kind: str = "reproduce", param: str | None = None
) -> dict:
    """A grid folder with evaluated runs: ``metrics`` maps method (or "method@value") to one dict per seed."""
    runs, seeds = [], set()
    for key, per_seed in metrics.items():
        method, _, value = key.partition("@")
        for seed, m in enumerate(per_seed):
            seeds.add(seed)
            name = f"{method}-{value}-s{seed}" if value else f"{method}-s{seed}"
            folder = root / "runs" / name
            (folder / "eval" / "quick").mkdir(parents=True)
            full = {
                "method": method,
                "dataset": dataset,
                "finished": True,
                "model_epoch": 1,
                "eval_config": {
                    "quick": True,
                    "max_train_images": 10000,
                    "val_size": 2000,
                    "probe_max_epochs": 50,
                    "probe_patience": 5,
                    "knn_max_k": 15,
                    "gmm_restarts": 1,
                    "gen_samples": 2000,
                },
                **m,
            }
            (folder / "eval" / "quick" / "metrics.json").write_text(json.dumps(full))
            (folder / "train_summary.json").write_text(
                json.dumps(
                    {
                        "method": method,
                        "epochs": 1,
                        "epochs_planned": 1,
                        "steps": 100,
                        "finished": True,
                        "train_images": 1200,
                        "images_per_step": 12,
                        "n_views": 10,
                        "views_per_step": 120,
                        "train_seconds": 3.0,
                        "simvae_commit": "abc1234",
                        "host": "test host",
                        "precision": "fp32",
                        "device": "cpu",
                        "threads": 1,
                    }
                )
            )
            runs.append(
                {
                    "name": name,
                    "method": method,
                    "seed": seed,
                    "folder": str(folder),
                    "train_args": [],
                    "eval_args": [],
                    "eval_name": "quick",
                    "epochs": 1,
                    "steps": 100,
                    "value": value or None,
                    "config": {"train": {"method": method}},
                }
            )
    grid = {
        "kind": kind,
        "dataset": dataset,
        "methods": list(dict.fromkeys(k.partition("@")[0] for k in metrics)),
        "seeds": sorted(seeds),
        "epochs": 1,
        "runs": runs,
        "command": ["simvae", kind],
    }
    if param:
        grid["param"] = param
    (root / "grid.json").write_text(json.dumps(grid))
    return read_grid(root)


def content(mlp, knn, **more):
    return {
        "mlp_acc": mlp,
        "knn_acc": knn,
        "linear_acc": mlp - 0.02,
        "gmm_acc": 0.6,
        "gmm_nmi": 0.7,
        "gmm_ari": 0.5,
        "recon_mse": 0.02,
        "classifier_fid": 5.0,
        **more,
    }


def test_tables_have_paper_layout_mean_se_and_blank_se_for_one_seed(tmp_path):
    grid = fake_grid(tmp_path, {"simvae": [content(0.80, 0.85), content(0.82, 0.87)], "vae": [content(0.75, 0.80)]})
    paths = write_tables(tmp_path, grid)
    names = {p.name for p in paths}
    assert {"table1.md", "table1.csv", "table5.csv", "table6.csv", "table7.csv"} <= names
    rows = {r["method"]: r for r in csv.DictReader(open(tmp_path / "table1.csv"))}
    assert list(rows) == METHODS  # every method the paper reports, in its order
    assert float(rows["simvae"]["mlp_acc_mean"]) == pytest.approx(0.81)
    assert float(rows["simvae"]["mlp_acc_se"]) == pytest.approx(0.01)
    assert rows["vae"]["mlp_acc_se"] == ""  # one seed: no standard error, not 0
    assert rows["simclr"]["n_runs"] == "0" and rows["simclr"]["mlp_acc_mean"] == ""
    assert float(rows["simclr"]["paper_mlp_acc_mean"]) == pytest.approx(0.749)
    md = (tmp_path / "table1.md").read_text()
    assert "| SimVAE | 2 | 81.0 ± 1.0 | 82.1 ± 0.0 | 86.0 ± 1.0 | 86.5 ± 0.0 |" in md
    assert "| VAE | 1 | 75.0 | 80.2 ± 0.3 |" in md
    assert "400 epochs" in md and "100 steps" in md and "12 x 10 views per step" in md
    t6 = list(csv.DictReader(open(tmp_path / "table6.csv")))
    assert "random" not in {r["method"] for r in t6}  # Table 6 has no Random column, and we did not run it


def test_style_table_has_chance_and_no_invented_paper_figures(tmp_path):
    style = {"style/flip/mlp_acc": 0.9, "style/flip/chance": 0.5, "style/crop_scale/mlp_acc": 0.4, "style/crop_scale/chance": 0.25}
    grid = fake_grid(tmp_path, {"simvae": [content(0.8, 0.8, **style)] * 2, "simclr": [content(0.7, 0.7)] * 2})
    tables = {name: (table, rows) for name, _, table, rows, _ in build_tables(grid)}
    table, rows = tables["style"]
    assert [r[0] for r in table.rows] == ["SimCLR", "SimVAE", "chance"]
    assert table.rows[-1][2:] == ["25.0", "50.0"]
    assert not any("paper" in c for c in table.columns)


def test_claims_verdicts(tmp_path):
    style_hi = {"style/flip/mlp_acc": 0.9}
    style_lo = {"style/flip/mlp_acc": 0.55}
    grid = fake_grid(
        tmp_path,
        {
            "simvae": [content(0.80, 0.85, **style_hi), content(0.81, 0.86, **style_hi), content(0.82, 0.87, **style_hi)],
            "simclr": [content(0.70, 0.75, **style_lo), content(0.71, 0.76, **style_lo), content(0.72, 0.77, **style_lo)],
            "vae": [content(0.90, 0.80), content(0.91, 0.95), content(0.92, 0.70)],
        },
    )
    claims = {c.name: c for c in build_claims(grid)}
    assert claims["H1"].verdict == "supported"  # 10 points apart, SE 0.8
    assert claims["H2"].verdict == "supported"
    h3 = {c.metric: c.verdict for c in claims["H3"].comparisons}
    assert h3 == {"MLP probe": "contradicted", "k-NN": "not resolved"}  # VAE clearly higher on MLP; noisy k-NN
    assert claims["H3"].verdict == "contradicted"
    p = claims["H1"].comparisons[0].p_value
    assert p is not None and p < 0.01
    text = claims_markdown(grid)
    assert "H1: supported" in text and "82.1" in text  # the paper's SimVAE figure beside ours


def test_one_seed_gives_no_verdict(tmp_path):
    grid = fake_grid(tmp_path, {"simvae": [content(0.9, 0.9)], "simclr": [content(0.5, 0.5)]})
    h1 = next(c for c in build_claims(grid) if c.name == "H1")
    assert h1.verdict == "not resolved"
    assert all("one seed" in c.why for c in h1.comparisons)


def test_sweep_table_and_plots_use_validation_figures(tmp_path):
    metrics = {
        f"simvae@{v}": [
            {"knn_val_acc": a, "linear_val_acc": a - 0.1, "mlp_val_acc": a - 0.05, "knn_acc": 0.5},
            {"knn_val_acc": a + 0.02, "linear_val_acc": a - 0.1, "mlp_val_acc": a - 0.05, "knn_acc": 0.5},
        ]
        for v, a in (("0.01", 0.7), ("0.1", 0.8), ("1", 0.6))
    }
    grid = fake_grid(tmp_path, metrics, kind="sweep", param="method.prior_var")
    paths = write_sweep(tmp_path, grid)
    assert {"sweep.md", "sweep.csv", "sweep_knn_val_acc.png", "sweep_mlp_val_acc.png"} <= {p.name for p in paths}
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert [r["method.prior_var"] for r in rows] == ["0.01", "0.1", "1"]
    assert float(rows[1]["knn_val_acc_mean"]) == pytest.approx(0.81)
    md = (tmp_path / "sweep.md").read_text()
    assert "| SimVAE | 0.1 | 2 | 81.0 ± 1.0 | 70.0 ± 0.0 | 75.0 ± 0.0 |" in md  # validation figures, in %


# ------------------------------------------------------------------------------------------ run folder state


def _run(tmp_path, epochs=2) -> GridRun:
    cfg = {"train": {"method": "vae", "dataset": "mnist", "epochs": epochs, "seed": 0, "lr": 8e-5}, "method": {"beta": 1.0}}
    return GridRun("vae-s0", "vae", 0, str(tmp_path / "vae-s0"), ["--method", "vae"], ["--quick-eval"], "quick", epochs, 10, config=cfg)


def test_run_state_follows_the_folder(tmp_path):
    r = _run(tmp_path)
    f = r.path
    assert run_state(r) == "train"
    f.mkdir()
    (f / "config.json").write_text(json.dumps(r.config))
    assert run_state(r) == "restart"  # stopped before its first checkpoint
    (f / "checkpoint.pt").write_bytes(b"x")
    assert run_state(r) == "resume"
    (f / "train_summary.json").write_text(json.dumps({"finished": True, "epochs": 2}))
    assert run_state(r) == "evaluate"
    (f / "eval" / "quick").mkdir(parents=True)
    (f / "eval" / "quick" / "metrics.json").write_text(json.dumps({"finished": True, "model_epoch": 2}))
    assert run_state(r) == "done"
    assert commands(r, "resume", 1)[0][:3] == ["train", "--resume", str(f)]
    assert commands(r, "evaluate", 1) == [["evaluate", str(f), "--quiet", "--quick-eval"]]
    longer = _run(tmp_path, epochs=3)
    assert run_state(longer) == "extend"
    assert "--epochs" in commands(longer, "extend", 1)[0]
    other = _run(tmp_path)
    other.config = {**r.config, "method": {"beta": 2.0}}
    with pytest.raises(RunDirError, match="method.beta"):
        run_state(other)


# ------------------------------------------------------------------------------------------ end to end (slow)

TINY = [
    "--dataset",
    "mnist",
    "--epochs",
    "2",
    "--no-download",
    "--device",
    "cpu",
    "--train-subset",
    "256",
    "--batch-size",
    "32",
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
    "--gen-samples",
    "100",
    "--no-estimate",
    "--checkpoint-every-steps",
    "2",
]
TABLES = ["table1.csv", "table5.csv", "table6.csv", "table7.csv", "style.csv", "table1.md", "claims.md"]


def _tables(folder: Path) -> dict[str, str]:
    """The tables, with the grid folder's name and the simvae commit (another agent may commit meanwhile) masked."""
    import re

    return {
        name: re.sub(r"simvae commit [^;]*;", "simvae commit C;", (folder / name).read_text().replace(str(folder), "OUT"))
        for name in TABLES
    }


@pytest.mark.slow
def test_grid_killed_then_rerun_gives_the_tables_of_an_uninterrupted_grid(tmp_path, tiny_data):
    args = ["reproduce", "--methods", "simvae,vae", "--seeds", "1", "--jobs", "2", "--data-dir", str(tiny_data), *TINY]
    ref = run_cli(*args, "--out", str(tmp_path / "ref"), timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    assert (tmp_path / "ref" / "report.html").is_file()

    out = tmp_path / "killed"
    p = subprocess.Popen(
        simvae_cmd(*args, "--out", str(out)), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    # kill the grid once both runs are training (each has written a checkpoint)
    while time.monotonic() < deadline and p.poll() is None:
        if all((out / "runs" / n / "checkpoint.pt").is_file() for n in ("vae-s0", "simvae-s0")):
            break
        time.sleep(0.05)
    assert p.poll() is None, "the grid finished before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (out / "table1.csv").exists()
    again = run_cli(*args, "--out", str(out), timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    plan = next(line for line in again.stderr.splitlines() if line.startswith("reproduce: 2 runs"))
    assert any(s in plan for s in ("resume", "restart", "evaluate")), plan  # it picked up where it was killed
    assert _tables(out) == _tables(tmp_path / "ref")


@pytest.mark.slow
def test_sweep_and_report_cli(tmp_path, tiny_data):
    res = run_cli(
        "sweep",
        "--method",
        "beta-vae",
        "--param",
        "method.beta",
        "--values",
        "0.5",
        "1",
        "--seeds",
        "1",
        "--data-dir",
        str(tiny_data),
        *TINY,
        "--out",
        str(tmp_path / "sw"),
        "--jobs",
        "2",
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "sw" / "sweep.csv")))
    assert [r["method.beta"] for r in rows] == ["0.5", "1"]
    assert rows[0]["knn_val_acc_mean"] != ""
    rep = run_cli("report", str(tmp_path / "sw" / "runs" / "beta-vae-beta=1-s0"))
    assert rep.returncode == 0, rep.stderr
    html = (tmp_path / "sw" / "runs" / "beta-vae-beta=1-s0" / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html


@pytest.mark.slow
def test_slurm_launcher_through_submitits_local_executor(tmp_path, tiny_data, monkeypatch):
    submitit = pytest.importorskip("submitit")
    from simvae.cli import _grid_resolver
    from simvae.grid import make_grid, run_grid

    common = [
        "--data-dir",
        str(tiny_data),
        *TINY[4 : TINY.index("--no-estimate")],  # without dataset and epochs
        "--decoder-max-epochs",
        "1",
        "--skip",
        "generation,style",
    ]
    grid = make_grid("reproduce", tmp_path / "g", "mnist", ["random"], [0], 1, {}, common, _grid_resolver())
    for k, v in cli_env().items():
        monkeypatch.setenv(k, v)
    executor = submitit.LocalExecutor(folder=str(tmp_path / "submitit"))
    executor.update_parameters(timeout_min=10)
    results = run_grid(grid, launcher="slurm", slurm={"executor": executor, "poll_s": 1}, estimate=False, threads=1)
    assert [r["ok"] for r in results] == [True], results
    assert grid.runs[0].metrics_path.is_file()
