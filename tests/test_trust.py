"""What simvae tells a user can be trusted: comparisons never pass unequal experiments off as
comparable, messages match what happens, and the faults other tools met do not happen here:

- a collapsed encoder still gets its report (t-SNE on constant representations crashes the process);
- a full disk during a checkpoint ends in one line with the --resume command, no temporary file, and
  the last good checkpoint kept;
- a second process on a run folder is refused in one line; a stale lock is no obstacle;
- a run folder edited between start and resume is refused, naming the keys;
- --resume takes options that do not change the experiment and refuses the others;
- evaluations with other settings are kept side by side, the full one stays the headline;
- a distributed run whose peer died ends in one line with the --resume command.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_EVAL_ARGS, cli_env, run_cli, tiny_train_args, write_tiny_idx

import simvae.cli as cli
from simvae.report.compare import compare_runs, comparison_rows, read_runs


def _main(capsys, *args) -> tuple[int, list[str]]:
    """``simvae ARGS`` in this process: exit status and the non-empty lines of stderr."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny SimVAE run (1 epoch, checkpoint, no evaluation); tests copy it before changing it."""
    root = tmp_path_factory.mktemp("trust")
    data = write_tiny_idx(root / "data", n_train=128, n_test=64)
    out = root / "run"
    r = run_cli("train", *tiny_train_args(data, subset=128, batch=32), "--out", out, "--no-eval", "--quiet")
    assert r.returncode == 0, r.stderr
    return out


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".lock"))
    return to


# -- compare ------------------------------------------------------------------------------------------


def _fake_run(folder: Path, method: str, knn: float, epochs: int, images: int, eval_name: str, quick: bool) -> Path:
    folder.mkdir(parents=True)
    ev = {"quick": quick, "probe_max_epochs": 50 if quick else 200, "seed": 0, "device": "auto", "map_points": 3000}
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "method": method,
                "dataset": "fashion-mnist",
                "knn_acc": knn,
                "model_epoch": epochs,
                "model_epoch_step": 0,
                "model_step": epochs * images // 12,
                "finished": True,
                "eval_name": eval_name,
                "eval_config": ev,
            }
        )
    )
    (folder / "config.json").write_text(
        json.dumps(
            {
                "train": {
                    "dataset": "fashion-mnist",
                    "method": method,
                    "epochs": epochs,
                    "seed": 0,
                    "views_per_step": 128,
                    "batch_size": None,
                    "train_subset": None if images == 60000 else images,
                    "threads": 1,
                },
                "method": {},
                "eval": ev,
            }
        )
    )
    (folder / "train_summary.json").write_text(
        json.dumps({"epochs": epochs, "steps": epochs * images // 12, "train_images": images, "views_per_step": 128})
    )
    return folder


def test_compare_marks_rows_trained_or_evaluated_unlike_the_others(tmp_path, capsys):
    q = _fake_run(tmp_path / "simclr-q", "simclr", 0.642, 1, 3000, "quick", True)
    d = _fake_run(tmp_path / "demo", "simvae", 0.824, 2, 60000, "full", False)
    v = _fake_run(tmp_path / "vae", "vae", 0.70, 2, 60000, "full", False)
    md = compare_runs([q, d, v], tmp_path / "cmp", figure=False)[0].read_text()
    lines = md.splitlines()
    simclr = next(line for line in lines if line.startswith("| simclr"))
    assert simclr.startswith("| simclr†‡ | 1 | 64.2 |") and "| 1 | 250 | 3,000 | 128 | quick |" in simclr, md
    assert next(line for line in lines if line.startswith("| simvae")).startswith("| simvae | 1 | 82.4 |"), md
    assert "| 2 | 10,000 | 60,000 | 128 | full |" in md, md
    assert (
        "† training budget unlike the reference row's: simvae trained 2 epochs, 10,000 steps, 60,000 training "
        "images, 128 views per step; simclr 1 epoch, 250 steps, 3,000 training images" in md
    ), md
    assert (
        "‡ evaluation unlike the reference row's: simvae was evaluated with full (the full protocol); simclr with "
        "quick (the quick preset)" in md
    ), md
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(
        "simvae: warning: simclr†‡ differs from the other rows in training budget and evaluation settings"
    ), err
    rows = {r["label"]: r for r in __import__("csv").DictReader((tmp_path / "cmp" / "comparison.csv").open())}
    assert rows["simclr"]["knn_acc_se"] == "" and rows["simclr"]["comparable"] == "no: budget, evaluation"
    assert rows["simvae"]["comparable"] == "yes" and rows["simvae"]["eval_kind"] == "full"


def test_compare_equal_budgets_have_no_marks_and_no_warning(tmp_path, capsys):
    a = _fake_run(tmp_path / "a", "simvae", 0.8, 2, 60000, "full", False)
    b = _fake_run(tmp_path / "b", "simclr", 0.7, 2, 60000, "full", False)
    md = compare_runs([a, b], tmp_path / "cmp", figure=False)[0].read_text()
    assert "†" not in md and "‡" not in md and capsys.readouterr().err == ""


def test_compare_labels_name_the_differing_keys_abbreviated(tmp_path):
    a = _fake_run(tmp_path / "a", "simvae", 0.8, 2, 60000, "full", False)
    b = _fake_run(tmp_path / "b", "simvae", 0.7, 1, 3000, "full", False)
    assert list(read_runs([a, b])) == ["simvae (ep=2, sub=all)", "simvae (ep=1, sub=3k)"]


def test_a_single_runs_standard_error_is_empty_not_zero(tmp_path):
    a = _fake_run(tmp_path / "a", "simvae", 0.8, 2, 60000, "full", False)
    (row,) = comparison_rows(read_runs([a]))
    assert row["knn_acc_se"] is None


def test_compare_says_a_missing_folder_is_missing(tmp_path, capsys):
    a = _fake_run(tmp_path / "a", "simvae", 0.8, 2, 60000, "full", False)
    code, err = _main(capsys, "compare", tmp_path / "nothere", a, "--out", tmp_path / "cmp")
    assert code == 2 and err == [f"simvae: error: {tmp_path / 'nothere'} does not exist; give the folder of an evaluated run"]


# -- messages -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, meant", [("--learning-rate", "--lr"), ("--batch", "--batch-size"), ("--views", "--n-views"), ("--batch_size", "--batch-size")]
)
def test_common_option_names_suggest_ours(capsys, given, meant):
    code, err = _main(capsys, "train", given, "3")
    assert code == 2 and err == [f"simvae train: error: unrecognized option {given} (did you mean '{meant}'?); see 'simvae train --help'"]


def test_a_mistyped_command_gets_a_suggestion(capsys):
    code, err = _main(capsys, "trian")
    assert code == 2 and len(err) == 1 and err[0].startswith("simvae: error: unknown command 'trian' (did you mean 'train'?)")


def test_a_config_file_value_of_the_wrong_type_names_the_file(tmp_path, capsys):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"train": {"dataset": 3}}))
    code, err = _main(capsys, "train", "--config", f, "--out", tmp_path / "run")
    assert code == 2 and err == [f"simvae: error: 'dataset' in config file {f} section 'train' must be a string, got 3"]
    assert not (tmp_path / "run").exists()


def test_counts_in_printed_lines_are_singular_or_plural():
    assert (
        cli.plural(1, "epoch"),
        cli.plural(2, "epoch"),
        cli.plural(1, "process", "processes"),
        cli.plural(4, "process", "processes"),
    ) == ("1 epoch", "2 epochs", "1 process", "4 processes")


# -- degenerate representations ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["constant", "near-constant", "near-zero", "few-distinct"])
def test_latent_map_refuses_degenerate_representations_before_tsne(tmp_path, monkeypatch, kind):
    import sklearn.manifold

    from simvae.report import figures

    def no_tsne(*a, **k):
        raise AssertionError("t-SNE must not see degenerate representations (it can crash the process)")

    monkeypatch.setattr(sklearn.manifold, "TSNE", no_tsne)
    g = torch.Generator().manual_seed(0)
    x = {
        "constant": torch.full((300, 10), 0.37),
        "near-constant": 0.37 + 1e-9 * torch.randn(300, 10, generator=g, dtype=torch.float64),
        "near-zero": 1e-7 * torch.randn(300, 10, generator=g),
        "few-distinct": torch.randn(3, 10, generator=g).repeat(100, 1),
    }[kind]
    with pytest.raises(ValueError, match="degenerate representations"):
        figures.latent_map(x, torch.arange(300) % 10, [str(i) for i in range(10)], tmp_path / "map.png")
    assert not (tmp_path / "map.png").exists()


def test_latent_map_still_maps_ordinary_representations(tmp_path):
    from simvae.report import figures

    x = torch.randn(60, 10, generator=torch.Generator().manual_seed(0))
    assert figures.latent_map(x, torch.arange(60) % 10, [str(i) for i in range(10)], tmp_path / "map.png") == "t-SNE"
    assert (tmp_path / "map.png").stat().st_size > 1000


_COLLAPSED = r"""
import sys, torch, simvae, simvae.run
simvae.run.Run.encode = lambda self, images, batch_size=4096: torch.zeros(images.shape[0], 10)
simvae.evaluate_run(sys.argv[1], quiet=True, probe_max_epochs=3, probe_patience=2, gmm_restarts=1, gmm_max_iter=20,
                    val_size=32, knn_max_k=3, probe_hidden=16, map_points=64, device="cpu", skip=["generation", "style"])
"""


def test_a_collapsed_encoder_gets_its_report_with_a_note(trained, tmp_path):
    run = _copy(trained, tmp_path / "run")
    p = subprocess.run([sys.executable, "-c", _COLLAPSED, str(run)], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]  # before: t-SNE crashed the process (exit 139), no report
    report = (run / "report.md").read_text()
    assert "figure 'Test representations, coloured by class' could not be drawn (ValueError: degenerate representations" in report, report
    assert not (run / "latent_map.png").exists()


# -- failed writes ---------------------------------------------------------------------------------------


def test_a_full_disk_at_a_checkpoint_ends_in_one_line_with_the_resume_command(trained, tmp_path, monkeypatch, capsys):
    data = json.loads((trained / "config.json").read_text())["train"]["data_dir"]
    out = tmp_path / "run"
    real_replace, saves = os.replace, []

    def replace(src, dst):
        if Path(dst).name == "checkpoint.pt":
            saves.append(dst)
            if len(saves) == 2:  # the second epoch's checkpoint: the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    code, err = _main(capsys, "train", *tiny_train_args(data, subset=128, batch=32, epochs=2), "--out", out, "--no-eval", "--quiet")
    monkeypatch.setattr(os, "replace", real_replace)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"simvae: error: no space left on the device of {out} to write checkpoint.pt (") and err[0].endswith(
        f"the previous checkpoint.pt is kept; free some space; continue with 'simvae train --resume {out}'"
    ), err
    assert not list(out.glob(".*.tmp-*")), list(out.iterdir())
    from simvae.checkpoint import load_checkpoint

    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1  # the last good checkpoint


# -- two processes on one run folder ------------------------------------------------------------------------


def _hold_lock(folder: Path):
    """The run folder's lock, held through a file descriptor of its own (as another process would)."""
    fh = open(folder / ".lock", "a+")
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fh.seek(0)
    fh.truncate()
    fh.write("process 4242 (simvae train, since 2026-12-04 10:00:00)\n")
    fh.flush()
    return fh


def test_a_second_process_on_a_run_folder_is_refused_in_one_line(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path / "run")
    fh = _hold_lock(run)
    try:
        code, err = _main(capsys, "train", "--resume", run, "--epochs", "2", "--no-eval", "--quiet")
        assert code == 2 and err == [
            f"simvae: error: {run} is in use by process 4242 (simvae train, since "
            "2026-12-04 10:00:00); wait for it to finish, or choose another --out"
        ], err
        code, err = _main(capsys, "evaluate", run, *TINY_EVAL_ARGS, "--quiet")
        assert code == 2 and len(err) == 1 and "is in use by process 4242" in err[0], err
        assert not (run / "metrics.json").exists()
    finally:
        fh.close()
    # the lock file of a process that is gone (no flock held) does not block the next run
    code, err = _main(capsys, "train", "--resume", run, "--epochs", "2", "--no-eval", "--quiet")
    assert code == 0, err


@pytest.mark.slow
def test_two_trainings_started_together_on_one_folder(tiny_data, tmp_path):
    out = tmp_path / "run"
    args = ["train", *tiny_train_args(tiny_data, subset=256, batch=8, epochs=3), "--out", str(out), "--no-eval", "--quiet"]
    procs = [subprocess.Popen([sys.executable, "-m", "simvae", *args], env=cli_env(), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes == [0, 2], results
    refused = next(e for c, e in results if c == 2)
    lines = [line for line in refused.splitlines() if line.strip()]
    assert len(lines) == 1 and ("is in use by process" in lines[0] or "holds this run already" in lines[0]), refused


# -- resume --------------------------------------------------------------------------------------------


def test_resume_refuses_a_run_folder_edited_since_its_checkpoint(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path / "run")
    cfg = json.loads((run / "config.json").read_text())
    cfg["train"]["lr"], cfg["method"]["prior_var"] = 0.01, 1.0
    (run / "config.json").write_text(json.dumps(cfg))
    code, err = _main(capsys, "train", "--resume", run, "--epochs", "2", "--no-eval", "--quiet")
    assert code == 2 and len(err) == 1, err
    assert (
        "differs from the config its checkpoint was trained with" in err[0]
        and "method.prior_var 0.15 -> 1.0" in err[0]
        and "train.lr 8e-05 -> 0.01" in err[0]
    ), err
    assert not (run / "config_history.jsonl").exists()  # nothing recorded for a resume that did not run


def test_resume_takes_options_that_do_not_change_the_experiment(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path / "run")
    code, err = _main(
        capsys,
        "train",
        "--resume",
        run,
        "--epochs",
        "2",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--quick-eval",
        "--skip",
        "generation,style",
        "--no-eval",
        "--quiet",
    )
    assert code == 0, err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["eval"]["quick"] is True and cfg["eval"]["skip"] == ["generation", "style"] and cfg["train"]["epochs"] == 2
    for option, value in (("--lr", "0.1"), ("--prior-var", "1.0"), ("--n-views", "4")):
        code, err = _main(capsys, "train", "--resume", run, "--epochs", "3", option, value, "--no-eval", "--quiet")
        assert code == 2 and len(err) == 1 and f"{option} would change it" in err[0], err


def test_quick_eval_given_at_training_is_recorded_with_the_run(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = _main(
        capsys, "train", *tiny_train_args(tiny_data, subset=64, batch=32), "--out", out, "--quick-eval", "--no-eval", "--quiet"
    )
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["eval"]["quick"] is True


# -- evaluations side by side -------------------------------------------------------------------------------


def test_evaluations_with_other_settings_are_kept_side_by_side(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path / "run")
    fast = TINY_EVAL_ARGS[: TINY_EVAL_ARGS.index("--map-points")] + TINY_EVAL_ARGS[TINY_EVAL_ARGS.index("--map-points") + 2 :]
    code, err = _main(capsys, "evaluate", run, *fast, "--map-points", "0", "--gen-samples", "200", "--quiet")
    assert code == 0, err
    full = json.loads((run / "metrics.json").read_text())["eval_name"]
    assert full.startswith("full-") and (run / "samples.png").is_file()
    code, err = _main(capsys, "evaluate", run, "--quick-eval", "--skip", "generation", "--map-points", "0", "--quiet", "--device", "cpu")
    assert code == 0, err
    assert {p.name for p in (run / "eval").iterdir()} == {full, "quick-skip-generation"}
    assert json.loads((run / "metrics.json").read_text())["eval_name"] == full  # the top stays the fuller one
    assert "samples.png" in (run / "report.md").read_text()
    quick = run / "eval" / "quick-skip-generation"
    assert "samples.png" not in (quick / "report.md").read_text() and not (quick / "samples.png").exists()


# -- distributed runs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", ["DistBackendError", "RuntimeError"])
def test_a_distributed_run_whose_peer_died_ends_in_one_line_with_the_resume_command(trained, tmp_path, monkeypatch, capsys, error):
    run = _copy(trained, tmp_path / "run")
    import torch.distributed as dist

    # what gloo raised in a process whose peer was killed (torch 2.14, CPU): a plain RuntimeError
    text = (
        "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:49820. "
        "This is typically caused by a remote worker crashing.\nException raised from recvBytes ..."
    )

    def lost_peer(args):
        args.run_dir, args.training_started = run, True
        raise (dist.DistBackendError if error == "DistBackendError" else RuntimeError)(text)

    monkeypatch.setattr(cli, "cmd_train", lost_peer)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    code, err = _main(capsys, "train", "--resume", run)
    assert code == 1 and err == [
        f"simvae: error: process 1 of 2: another process of this distributed run stopped ({error}: "
        f"{text.splitlines()[0][:200]}); continue with the same torchrun command and 'simvae train --resume {run}'"
    ], err


def test_other_runtime_errors_keep_their_traceback(monkeypatch, capsys):
    def bug(args):
        raise RuntimeError("shape mismatch in a matmul")

    monkeypatch.setattr(cli, "cmd_train", bug)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="shape mismatch"):
        cli.main(["train"])


# -- a CPU-only install --------------------------------------------------------------------------------------

SETUP = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"


def _setup(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SETUP), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_setup_cpu_installs_from_the_cpu_index_where_it_answers(tmp_path):
    import http.server
    import threading

    (tmp_path / "whl" / "cpu" / "torch").mkdir(parents=True)
    (tmp_path / "whl" / "cpu" / "torch" / "index.html").write_text("<html></html>")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
        r = _setup("--cpu", "--dry-run", SIMVAE_TORCH_INDEX=index)
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stderr
    assert "the default (PyPI, with CUDA) takes about 5.6 GB in .venv; the CPU build (--cpu or SIMVAE_TORCH=cpu) about 1 GB" in r.stdout
    assert f"would run: .venv/bin/pip install -q --index-url {index} torch==2.14.1 torchvision==0.29.1" in r.stdout, r.stdout
    assert "nothing was installed" in r.stdout


def test_setup_cpu_falls_back_to_the_default_build_in_one_line(tmp_path):
    r = _setup("--dry-run", SIMVAE_TORCH="cpu", SIMVAE_TORCH_INDEX="http://127.0.0.1:9/whl/cpu")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert (
        "[setup] PyTorch's CPU wheel index http://127.0.0.1:9/whl/cpu cannot be reached: installing the default "
        "build from PyPI instead (about 5.6 GB)" in lines
    ), r.stdout
    assert "[setup] would run: .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1" in lines, r.stdout
    assert "--index-url" not in r.stdout


def test_setup_default_build_and_unknown_options():
    r = _setup("--dry-run")
    assert r.returncode == 0 and "would run: .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1" in r.stdout
    assert "--index-url" not in r.stdout
    r = _setup("--gpu")
    assert r.returncode == 2 and r.stderr.strip() == "setup.sh: error: unknown option --gpu (options: --cpu, --dry-run, --help)"
