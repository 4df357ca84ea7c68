"""What a user meets in the first hour with the ``simvae`` command: --version, --help that states
each default once, ``simvae methods`` with whole descriptions, SimVAE refusing J = 1, ``compare
--overwrite``, and a Ctrl-C message that names the real run folder.

Most cases call ``simvae.cli.main`` in this process (no training: where a run would start,
``simvae.train.train`` is replaced); the refused-run case runs the real command in a process.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from conftest import REPO, run_cli_forked, tiny_train_args

from simvae.cli import main


def _exit_output(capsys, argv: list[str]) -> str:
    """stdout of a command that exits through argparse (--help, --version) with status 0."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    return capsys.readouterr().out


def _option_blocks(help_text: str) -> dict[str, str]:
    """option (its first spelling) -> its whole help entry, continuation lines joined."""
    blocks: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        m = re.match(r"^  (-[-\w]+)", line)
        if m:
            current = m.group(1)
            blocks[current] = line
        elif current and line.startswith("   "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return {k: " ".join(v.split()) for k, v in blocks.items()}


# -- 1. --version --------------------------------------------------------------------------------


def test_version(capsys):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" in project["dynamic"] and "version" not in project  # one place: simvae/_version.py
    expected = re.search(r'__version__ = "(.+)"', (REPO / "simvae" / "_version.py").read_text()).group(1)
    out = _exit_output(capsys, ["--version"])
    assert out == f"simvae {expected}\n"
    assert re.fullmatch(r"simvae \d+\.\d+\.\d+\n", out)


# -- 2. each default once in --help ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "evaluate", "compare"])
def test_help_states_each_default_at_most_once(capsys, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "100")
    text = _exit_output(capsys, [command, "--help"])
    assert "(default: None)" not in text
    blocks = _option_blocks(text)
    assert len(blocks) >= 2, text
    for block in blocks.values():
        assert block.lower().count("default") <= 1, block


def test_train_help_shows_the_real_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    blocks = _option_blocks(_exit_output(capsys, ["train", "--help"]))
    assert blocks["--epochs"].count("(default: 2)") == 1, blocks["--epochs"]
    assert blocks["--seed"].endswith("(default: 0)"), blocks["--seed"]
    assert blocks["--method"].endswith("(default: simvae)")
    assert blocks["--dataset"].endswith("(default: fashion-mnist)")
    assert blocks["--download"].endswith("(default: on)")  # a --x/--no-x pair
    assert "8e-5" in blocks["--lr"] and "None" not in blocks["--lr"], blocks["--lr"]
    assert blocks["--train-subset"].endswith("(default: all training images)")
    assert blocks["--gmm-restarts"].endswith("(default: 10)")
    # method options list each method's own default, once
    assert blocks["--prior-var"].endswith("(default: 0.15)")  # a simvae-only option, in the simvae section
    assert "simvae 10" in blocks["--n-views"] and "simclr 2" in blocks["--n-views"]
    assert blocks["--out"].endswith("(default: runs/DATASET-METHOD-TIME)")


def test_evaluate_and_compare_help_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    ev = _option_blocks(_exit_output(capsys, ["evaluate", "--help"]))
    assert ev["--knn-max-k"].endswith("(default: 15)") and ev["--device"].endswith("(default: auto)")
    cmp = _option_blocks(_exit_output(capsys, ["compare", "--help"]))
    assert cmp["--out"].endswith("(default: comparison)")
    assert "--overwrite" in cmp


# -- 3. simvae methods ---------------------------------------------------------------------------


def test_methods_prints_whole_first_paragraph_and_options(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    flat = " ".join(out.split())
    # the second line of moco.py's docstring (its first paragraph spans two lines)
    assert "MoCo (He et al., 2020) and MoCo v2 (Chen et al., 2020b): a momentum key encoder and a FIFO queue of negative keys." in flat
    sections = {s.split(":", 1)[0]: " ".join(s.split()) for s in out.strip().split("\n\n")}
    assert {"simvae", "vae", "beta-vae", "cr-vae", "simclr", "moco", "mocov2", "vicreg", "random"} <= set(sections)
    simvae = sections["simvae"]
    assert simvae.startswith("simvae: SimVAE (paper §5): ELBO_SSL over groups of J augmented views of an image.")
    assert "--n-views J, augmented views per image (default: 10)" in simvae
    assert "--prior-var variance s^2 of p(z|y) (default: 0.15)" in simvae
    assert "--lr Adam learning rate (default: 8e-05)" in simvae
    assert "(default: 0.0001)" in sections["vicreg"]
    assert "--consistency-weight" in sections["cr-vae"] and "--n-views" not in sections["cr-vae"]


# -- 4. SimVAE refuses J = 1 ---------------------------------------------------------------------


def test_simvae_refuses_one_view_and_leaves_no_run_folder(tmp_path, tiny_data):
    out = tmp_path / "run"
    tiny = tiny_train_args(tiny_data, "--no-eval", "--quiet", subset=64, views=1)  # cheap, should it ever train
    ran = run_cli_forked(
        [
            ["train", *tiny, "--out", str(out)],
            ["train", *tiny],  # auto-named folder under runs/
            ["train", *tiny_train_args(tiny_data, "--method", "cr-vae", views=2)],
        ],
        cwd=tmp_path,
    )
    for r in ran[:2]:
        assert r.returncode == 2, r.stderr
        assert len(r.stderr_lines) == 1 and "Traceback" not in r.stderr, r.stderr
        line = r.stderr_lines[0]
        assert line.startswith("simvae: error: SimVAE needs at least 2 views per image"), line
        assert "group prior term is identically 0" in line and "use --method vae" in line, line
    assert not out.exists()
    assert not (tmp_path / "runs").exists()
    # CR-VAE keeps its rule: it has no n_views option (it always uses x and one t(x))
    assert ran[2].returncode == 2 and "--n-views does not apply to method 'cr-vae'" in ran[2].stderr


def test_view_count_rules_of_the_other_methods():
    from simvae.errors import ConfigError
    from simvae.methods import method_config

    assert method_config("simvae", {"n_views": 2}).n_views == 2
    assert method_config("vae", {"n_views": 1}).n_views == 1  # a plain VAE: one view is fine
    assert method_config("beta-vae", {"n_views": 1}).n_views == 1
    assert method_config("cr-vae", {}).n_views == 1
    for name in ("simclr", "vicreg"):
        with pytest.raises(ConfigError, match=">= 2"):
            method_config(name, {"n_views": 1})
    with pytest.raises(ConfigError, match=">= 1"):
        method_config("simvae", {"n_views": 0})


# -- 5. compare --overwrite ----------------------------------------------------------------------


@pytest.mark.parametrize("flag", [True, False])
def test_compare_passes_overwrite_and_names_the_files(tmp_path, monkeypatch, capsys, flag):
    import simvae.report.compare as compare

    calls = []

    def fake_compare_runs(run_dirs, out_dir, **kw):
        calls.append((run_dirs, out_dir, kw))
        return [out_dir / n for n in ("comparison.md", "comparison.csv", "reconstructions.png")]

    monkeypatch.setattr(compare, "compare_runs", fake_compare_runs)
    out = tmp_path / "cmp"
    assert main(["compare", "a", "b", "--out", str(out)] + (["--overwrite"] if flag else [])) == 0
    assert calls == [([Path("a"), Path("b")], out, {"overwrite": flag})]
    assert capsys.readouterr().out == f"comparison written to {out}: comparison.md, comparison.csv, reconstructions.png\n"


def test_compare_runs_takes_overwrite():
    import inspect

    from simvae.report.compare import compare_runs

    assert "overwrite" in inspect.signature(compare_runs).parameters


# -- 6. Ctrl-C names the real run folder ---------------------------------------------------------

AUTO_NAMED = r"runs/mnist-simvae-\d{8}-\d{6}"


def _interrupt_train(monkeypatch, tmp_path, argv, write_checkpoint=False, during_eval=False):
    """Run ``simvae train ARGV`` with training (or evaluation) interrupted; return (exit status, the run folder train got)."""
    import simvae.pipeline
    import simvae.train

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RANK", raising=False)
    seen = []

    def fake_train(run, out, **kw):
        seen.append(Path(out))
        if during_eval:
            return {"method": run.train.method, "dataset": run.train.dataset, "epochs": 1, "train_seconds": 1.0, "train_views_per_s": 1.0}
        if write_checkpoint:
            Path(out).mkdir(parents=True)
            (Path(out) / "checkpoint.pt").write_bytes(b"")
        raise KeyboardInterrupt

    def fake_evaluate_run(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(simvae.train, "train", fake_train)
    monkeypatch.setattr(simvae.pipeline, "evaluate_and_report", fake_evaluate_run)
    return main(["train", "--dataset", "mnist", "--quiet", *argv]), seen[0]


def test_interrupt_names_the_auto_named_folder(monkeypatch, tmp_path, capsys):
    status, folder = _interrupt_train(monkeypatch, tmp_path, ["--no-eval"], write_checkpoint=True)
    assert status == 130
    assert re.fullmatch(AUTO_NAMED, folder.as_posix())
    assert capsys.readouterr().err == f"simvae: interrupted; continue with 'simvae train --resume {folder}'\n"


def test_interrupt_before_a_checkpoint(monkeypatch, tmp_path, capsys):
    status, folder = _interrupt_train(monkeypatch, tmp_path, ["--no-eval"])
    err = capsys.readouterr().err
    assert status == 130 and re.fullmatch(AUTO_NAMED, folder.as_posix())
    assert err.count("\n") == 1 and str(folder) in err and f"--out {folder} --overwrite" in err, err
    assert "--resume" not in err


def test_interrupt_with_out_and_during_evaluation(monkeypatch, tmp_path, capsys):
    status, folder = _interrupt_train(monkeypatch, tmp_path, ["--out", "mine"], write_checkpoint=True)
    assert status == 130 and folder == Path("mine")
    assert capsys.readouterr().err == "simvae: interrupted; continue with 'simvae train --resume mine'\n"
    status, folder = _interrupt_train(monkeypatch, tmp_path, [], during_eval=True)
    err = capsys.readouterr().err.splitlines()
    assert status == 130 and re.fullmatch(AUTO_NAMED, folder.as_posix())
    assert err[-1] == f"simvae: interrupted; training finished, evaluate with 'simvae evaluate {folder}'"
