"""Every bad input to the ``simvae`` command ends with a non-zero exit status, ONE line on stderr
that names the problem (and the closest valid name where there is one), and no traceback.

Each case runs ``python -m simvae ...`` in its own process (real exit status, real stderr). A
fresh interpreter imports torch (~2-3 s of CPU), so the module fixture ``results`` prepares every
case and runs them all as processes forked from one server that imported simvae once
(``conftest.run_cli_forked``); ``test_forked_commands_behave_as_fresh_interpreters`` checks, for a
few cases, that a fresh ``python -m simvae`` gives the same status and the same stderr.

Set SIMVAE_CLI_ERRORS_DUMP=FILE to write every case's exit status and message to FILE (JSON).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import TINY_EVAL_ARGS, float32_default, run_cli_forked, run_cli_many, tiny_train_args, tiny_train_config

pytestmark = pytest.mark.usefixtures("float32")  # whatever the default dtype other test modules left


@dataclass
class Case:
    id: str
    args: list[str]
    expect: list[str]  # substrings the one stderr line must contain
    ok: bool = False  # the command must succeed instead
    check: object = None  # extra check(result, paths) after the run


def _train_in_process(data_dir: Path, out: Path, method: str, **train):
    from simvae.run_config import build_run_config
    from simvae.train import train as train_run

    cfg = tiny_train_config(data_dir, method=method, train_subset=64, batch_size=32, epochs=1, **train)
    if method not in ("simvae", "vae"):
        cfg["method"] = {}
    torch.set_num_threads(1)  # not restored: see conftest.single_thread
    with float32_default():  # a module fixture runs before the function-scoped 'float32'
        train_run(build_run_config(cfg), out, progress=False)


def _tiny(data_dir, out, *extra, subset=64):
    return ["train", *tiny_train_args(data_dir, "--out", str(out), "--no-eval", "--quiet", *extra, subset=subset)]


@pytest.fixture(scope="module")
def results(tiny_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("cli-errors")
    d = tiny_data
    p = {
        name: base / name
        for name in (
            "simvae_run",
            "vae_run",
            "wrong_method",
            "wrong_latent",
            "corrupt",
            "truncated",
            "foreign",
            "resume_wrong",
            "empty_ckpt",
            "pickle_ckpt",
            "not_a_run",
            "a_file",
            "overwrite_run",
            "big_batch",
            "ro_dir",
        )
    }
    # Real runs, trained in-process (no process start): a SimVAE run and a VAE run.
    _train_in_process(d, p["simvae_run"], "simvae")
    _train_in_process(d, p["vae_run"], "vae")
    _train_in_process(d, p["overwrite_run"], "simvae")
    ckpt = p["simvae_run"] / "checkpoint.pt"
    # A VAE run folder holding a SimVAE checkpoint.
    shutil.copytree(p["vae_run"], p["wrong_method"])
    shutil.copy(ckpt, p["wrong_method"] / "checkpoint.pt")
    # A SimVAE run whose config asks for another latent size than its checkpoint holds.
    shutil.copytree(p["simvae_run"], p["wrong_latent"])
    cfg = json.loads((p["wrong_latent"] / "config.json").read_text())
    cfg["train"]["latent_dim"] = 7
    (p["wrong_latent"] / "config.json").write_text(json.dumps(cfg))
    # Damaged checkpoints: random bytes, a truncated file, a torch file that is no simvae checkpoint.
    for name in ("corrupt", "truncated", "foreign", "resume_wrong", "empty_ckpt", "pickle_ckpt"):
        shutil.copytree(p["simvae_run"], p[name])
    (p["corrupt"] / "checkpoint.pt").write_bytes(random.Random(0).randbytes(4096))
    raw = ckpt.read_bytes()
    (p["truncated"] / "checkpoint.pt").write_bytes(raw[: len(raw) // 2])
    torch.save({"weights": torch.zeros(3)}, p["foreign"] / "checkpoint.pt")
    (p["empty_ckpt"] / "checkpoint.pt").write_bytes(b"")
    # A plain pickle (protocol 4) that refers to a class: a safe load must refuse it, not run it.
    (p["pickle_ckpt"] / "checkpoint.pt").write_bytes(pickle.dumps({"format": 1, "model": Path}, protocol=4))
    # --resume of a SimVAE run whose checkpoint is a VAE's.
    shutil.copy(p["vae_run"] / "checkpoint.pt", p["resume_wrong"] / "checkpoint.pt")
    p["not_a_run"].mkdir()
    (p["not_a_run"] / "notes.txt").write_text("not a run")
    p["a_file"].write_text("a regular file")
    # A read-only folder (as root, permissions do not stop writing: see test_read_only_folder).
    p["ro_dir"].mkdir()
    os.chmod(p["ro_dir"], 0o555)
    # --config files.
    cfgs = {
        "unknown_key": {"train": {"epochz": 3}},
        "unknown_section": {"trian": {"epochs": 3}},
        "unknown_method_key": {"method": {"prior_vr": 1.0}},
        "wrong_type": {"train": {"epochs": "many"}},
        "wrong_bool": {"train": {"bf16": "maybe"}},
        "not_object": [1, 2, 3],
    }
    for name, value in cfgs.items():
        (base / f"{name}.json").write_text(json.dumps(value))
    (base / "bad_json.json").write_text('{"train": {"epochs": 3,}}')

    out = base / "out"  # a fresh run folder for cases that fail before any work
    cases = [
        Case("unknown_option", ["train", "--epohcs", "3"], ["--epohcs", "did you mean '--epochs'"]),
        Case("unknown_option_evaluate", ["evaluate", str(p["simvae_run"]), "--knn-max", "3"], ["--knn-max", "did you mean '--knn-max-k'"]),
        Case("unknown_command", ["trian"], ["trian", "train"]),
        Case(
            "config_unknown_key",
            ["train", "--config", str(base / "unknown_key.json"), "--out", str(out)],
            ["unknown key 'epochz'", "did you mean 'epochs'", "unknown_key.json"],
        ),
        Case(
            "config_unknown_section",
            ["train", "--config", str(base / "unknown_section.json"), "--out", str(out)],
            ["unknown section 'trian'", "did you mean 'train'"],
        ),
        Case(
            "config_unknown_method_key",
            ["train", "--config", str(base / "unknown_method_key.json"), "--out", str(out)],
            ["unknown key 'prior_vr'", "did you mean 'prior_var'"],
        ),
        Case(
            "config_wrong_type", ["train", "--config", str(base / "wrong_type.json"), "--out", str(out)], ["'epochs'", "integer", "'many'"]
        ),
        Case(
            "config_not_object", ["train", "--config", str(base / "not_object.json"), "--out", str(out)], ["not_object.json", "JSON object"]
        ),
        Case(
            "config_bad_json",
            ["train", "--config", str(base / "bad_json.json"), "--out", str(out)],
            ["bad_json.json", "not valid JSON", "line 1"],
        ),
        Case("config_missing_file", ["train", "--config", str(base / "nope.json"), "--out", str(out)], ["nope.json", "cannot read"]),
        Case("lr_not_a_number", ["train", "--lr", "abc", "--out", str(out)], ["'lr'", "'abc'"]),
        Case("epochs_not_an_integer", ["train", "--epochs", "2.5", "--out", str(out)], ["'epochs'", "integer", "2.5"]),
        Case(
            "bool_not_a_bool",
            ["train", "--config", str(base / "wrong_bool.json"), "--out", str(out)],
            ["'bf16'", "true or false", "'maybe'"],
        ),
        Case("lr_infinite", ["train", "--lr", "inf", "--out", str(out)], ["'lr'", "inf"]),
        Case("n_views_zero", ["train", "--n-views", "0", "--out", str(out)], ["n_views", ">= 1", "got 0"]),
        Case("simclr_one_view", ["train", "--method", "simclr", "--n-views", "1", "--out", str(out)], ["n_views", ">= 2", "got 1"]),
        Case("prior_var_zero", ["train", "--prior-var", "0", "--out", str(out)], ["prior_var", "> 0", "got 0"]),
        Case("likelihood_var_negative", ["train", "--likelihood-var", "-1", "--out", str(out)], ["likelihood_var", "> 0", "got -1"]),
        Case("latent_dim_zero", ["train", "--latent-dim", "0", "--out", str(out)], ["latent_dim", ">= 1", "got 0"]),
        Case("batch_size_zero", ["train", "--batch-size", "0", "--out", str(out)], ["batch_size", ">= 1", "got 0"]),
        Case("eval_option_invalid", ["train", "--probe-max-epochs", "0", "--out", str(out)], ["probe_max_epochs", ">= 1", "got 0"]),
        Case(
            "batch_larger_than_training_set",
            _tiny(d, p["big_batch"], "--batch-size", "128", subset=64),
            ["batch_size 128", "larger than the training set", "64 images"],
            check=lambda r, p: not (p["big_batch"] / "config.json").exists(),
        ),
        Case("vicreg_batch_of_one", _tiny(d, base / "vicreg_b1", "--method", "vicreg", "--batch-size", "1"), ["batch_size", "vicreg"]),
        Case("unknown_method", ["train", "--method", "simclrr", "--out", str(out)], ["unknown method 'simclrr'", "did you mean 'simclr'"]),
        Case(
            "unknown_dataset",
            ["train", "--dataset", "fashion", "--out", str(out)],
            ["unknown data set 'fashion'", "did you mean 'fashion-mnist'"],
        ),
        Case(
            "option_not_for_method",
            ["train", "--temperature", "0.5", "--out", str(out)],
            ["--temperature", "does not apply to method 'simvae'", "simclr"],
        ),
        Case(
            "option_not_for_method_config",
            ["train", "--method", "vae", "--prior-var", "0.5", "--out", str(out)],
            ["--prior-var", "does not apply to method 'vae'", "simvae"],
        ),
        Case("device_cuda_without_gpu", _tiny(d, base / "cuda_run") + ["--device", "cuda"], ["cuda", "not available"]),
        Case("data_dir_missing", _tiny(base / "no-such-data", base / "nodata_run"), ["no-such-data"]),
        Case(
            "data_dir_without_files",
            _tiny(p["not_a_run"], base / "nodata_run2"),
            ["mnist not found", "train-images-idx3-ubyte", str(p["not_a_run"]), "--data-dir"],
        ),
        Case("out_is_a_file", _tiny(d, p["a_file"]), [str(p["a_file"]), "not a folder"]),
        Case("out_under_a_file", _tiny(d, p["a_file"] / "run"), [str(p["a_file"] / "run"), "not writable"]),
        Case(
            "out_holds_a_different_run",
            _tiny(d, p["simvae_run"], "--seed", "5"),
            [str(p["simvae_run"]), "holds a different run", "--overwrite", "--resume"],
        ),
        Case(
            "out_holds_this_run_already",
            ["train", "--config", str(p["simvae_run"] / "config.json"), "--out", str(p["simvae_run"]), "--no-eval", "--quiet"],
            [str(p["simvae_run"]), "holds this run already", "--resume"],
        ),
        Case(
            "overwrite_accepted",
            _tiny(d, p["overwrite_run"], "--seed", "5", "--overwrite"),
            [],
            ok=True,
            check=lambda r, p: json.loads((p["overwrite_run"] / "config.json").read_text())["train"]["seed"] == 5,
        ),
        Case("evaluate_not_a_run", ["evaluate", str(p["not_a_run"]), *TINY_EVAL_ARGS], [str(p["not_a_run"]), "not a run folder"]),
        Case(
            "evaluate_missing_folder",
            ["evaluate", str(base / "missing-run"), *TINY_EVAL_ARGS],
            [str(base / "missing-run"), "not a run folder"],
        ),
        Case("evaluate_bad_option_value", ["evaluate", str(p["simvae_run"]), "--gmm-restarts", "0"], ["gmm_restarts", ">= 1", "got 0"]),
        Case("evaluate_zero_threads", ["evaluate", str(p["simvae_run"]), "--threads", "0"], ["--threads", "at least 1", "got 0"]),
        Case("checkpoint_of_another_method", ["evaluate", str(p["wrong_method"]), *TINY_EVAL_ARGS], ["checkpoint.pt", "'simvae'", "'vae'"]),
        Case(
            "checkpoint_of_another_architecture",
            ["evaluate", str(p["wrong_latent"]), *TINY_EVAL_ARGS],
            ["checkpoint.pt", "does not fit", "simvae", "shape"],
        ),
        Case(
            "resume_with_checkpoint_of_another_method",
            ["train", "--resume", str(p["resume_wrong"]), "--no-eval", "--quiet"],
            ["checkpoint.pt", "'vae'", "'simvae'"],
        ),
        Case(
            "corrupt_checkpoint",
            ["evaluate", str(p["corrupt"]), *TINY_EVAL_ARGS],
            [str(p["corrupt"] / "checkpoint.pt"), "cannot load checkpoint"],
        ),
        Case(
            "truncated_checkpoint",
            ["evaluate", str(p["truncated"]), *TINY_EVAL_ARGS],
            [str(p["truncated"] / "checkpoint.pt"), "cannot load checkpoint"],
        ),
        Case(
            "foreign_checkpoint",
            ["evaluate", str(p["foreign"]), *TINY_EVAL_ARGS],
            [str(p["foreign"] / "checkpoint.pt"), "not a simvae checkpoint"],
        ),
        Case(
            "empty_checkpoint",
            ["evaluate", str(p["empty_ckpt"]), *TINY_EVAL_ARGS],
            [str(p["empty_ckpt"] / "checkpoint.pt"), "cannot load checkpoint", "empty"],
        ),
        Case(
            "pickle_checkpoint",
            ["evaluate", str(p["pickle_ckpt"]), *TINY_EVAL_ARGS],
            [str(p["pickle_ckpt"] / "checkpoint.pt"), "cannot load checkpoint", "not a checkpoint written by simvae"],
        ),
        Case(
            "corrupt_checkpoint_resume",
            ["train", "--resume", str(p["corrupt"]), "--no-eval", "--quiet"],
            [str(p["corrupt"] / "checkpoint.pt"), "cannot load checkpoint"],
        ),
    ]
    ran = run_cli_forked([c.args for c in cases], cwd=base, timeout=600)
    by_id = {c.id: (c, r) for c, r in zip(cases, ran)}
    dump = os.environ.get("SIMVAE_CLI_ERRORS_DUMP")
    if dump:
        Path(dump).write_text(
            json.dumps(
                [
                    {
                        "id": c.id,
                        "args": [a.replace(str(base), "BASE").replace(str(d), "DATA") for a in c.args],
                        "status": r.returncode,
                        "stderr": r.stderr.replace(str(base), "BASE").replace(str(d), "DATA"),
                    }
                    for c, r in zip(cases, ran)
                ],
                indent=1,
            )
        )
    return {"cases": by_id, "paths": p, "base": base, "all": cases}


CASE_IDS = [
    "unknown_option",
    "unknown_option_evaluate",
    "unknown_command",
    "config_unknown_key",
    "config_unknown_section",
    "config_unknown_method_key",
    "config_wrong_type",
    "config_not_object",
    "config_bad_json",
    "config_missing_file",
    "lr_not_a_number",
    "epochs_not_an_integer",
    "bool_not_a_bool",
    "lr_infinite",
    "n_views_zero",
    "simclr_one_view",
    "prior_var_zero",
    "likelihood_var_negative",
    "latent_dim_zero",
    "batch_size_zero",
    "eval_option_invalid",
    "batch_larger_than_training_set",
    "vicreg_batch_of_one",
    "unknown_method",
    "unknown_dataset",
    "option_not_for_method",
    "option_not_for_method_config",
    "device_cuda_without_gpu",
    "data_dir_missing",
    "data_dir_without_files",
    "out_is_a_file",
    "out_under_a_file",
    "out_holds_a_different_run",
    "out_holds_this_run_already",
    "evaluate_not_a_run",
    "evaluate_missing_folder",
    "evaluate_bad_option_value",
    "evaluate_zero_threads",
    "checkpoint_of_another_method",
    "checkpoint_of_another_architecture",
    "resume_with_checkpoint_of_another_method",
    "corrupt_checkpoint",
    "truncated_checkpoint",
    "foreign_checkpoint",
    "empty_checkpoint",
    "pickle_checkpoint",
    "corrupt_checkpoint_resume",
]

# Cases rerun in a fresh ``python -m simvae`` (one per kind of failure: argparse, config, data, run folder, checkpoint).
FRESH_IDS = ["unknown_option", "config_unknown_key", "out_holds_a_different_run", "corrupt_checkpoint"]


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input_gives_one_line_error(results, case_id):
    if case_id == "device_cuda_without_gpu" and torch.cuda.is_available():
        pytest.skip("a GPU is present here")
    case, r = results["cases"][case_id]
    assert r.returncode != 0, f"{case.args} succeeded: {r.stderr}"
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert len(r.stderr_lines) == 1, f"expected one line on stderr, got:\n{r.stderr}"
    line = r.stderr_lines[0]
    assert line.startswith("simvae") and ": error: " in line, line
    for want in case.expect:
        assert want in line, f"{want!r} not in {line!r}"
    if case.check is not None:
        assert case.check(r, results["paths"]), line
    if "checkpoint" in case_id:
        # torch's advice to load with weights_only=False (i.e. run the file's code) must never reach the user.
        assert "weights_only" not in line and "arbitrary code" not in line, line


def test_forked_commands_behave_as_fresh_interpreters(results):
    cases = [results["cases"][i][0] for i in FRESH_IDS]  # (ids of cases that pass)
    fresh = run_cli_many([c.args for c in cases], cwd=results["base"], workers=2)
    for c, r in zip(cases, fresh):
        forked = results["cases"][c.id][1]
        assert (r.returncode, r.stderr, r.stdout) == (forked.returncode, forked.stderr, forked.stdout), c.id


def test_every_case_is_checked(results):
    ids = {c if isinstance(c, str) else c.values[0] for c in CASE_IDS}
    assert ids | {"overwrite_accepted"} == set(results["cases"])


def test_overwrite_is_accepted(results):
    case, r = results["cases"]["overwrite_accepted"]
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert case.check(r, results["paths"]), "the new config was not written"
    lines = (results["paths"]["overwrite_run"] / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # the old run's log was replaced, not appended to


def test_failed_runs_leave_the_run_folder_reusable(results):
    # Runs refused before training write no config.json, so the same command can be run again once fixed.
    for name in ("big_batch",):
        assert not (results["paths"][name] / "config.json").exists()
    assert not (results["base"] / "out" / "config.json").exists()
    # And a refused run never touches the run already in the folder.
    cfg = json.loads((results["paths"]["simvae_run"] / "config.json").read_text())
    assert cfg["train"]["seed"] == 0


def test_read_only_folder(results, tiny_data):
    """As root, chmod cannot make a folder unwritable; run the case only where it can."""
    ro = results["paths"]["ro_dir"]
    if os.access(ro, os.W_OK):
        pytest.skip("running as root: a read-only mode does not stop writing (covered by out_under_a_file)")
    r = run_cli_forked([_tiny(tiny_data, ro / "run")], cwd=results["base"])[0]
    assert r.returncode != 0
    assert len(r.stderr_lines) == 1 and "not writable" in r.stderr_lines[0] and str(ro / "run") in r.stderr_lines[0]
