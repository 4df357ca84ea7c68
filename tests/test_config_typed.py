"""Typed, strict configs (pydantic): values are never converted behind the user's back, each
method's options have unprefixed names, and old names still load with a one-line note."""

import json

import pytest
from conftest import run_cli, tiny_train_args

from simvae.config import from_text
from simvae.errors import ConfigError
from simvae.run_config import TrainConfig, build_run_config


@pytest.mark.parametrize(
    "train, message",
    [
        ({"epochs": "1"}, "'epochs' in config section 'train' must be an integer, got '1'"),
        ({"bf16": "no"}, "'bf16' in config section 'train' must be true or false, got 'no'"),
        ({"epochs": 2.0}, "'epochs' in config section 'train' must be an integer, got 2.0"),
        ({"download": 1}, "'download' in config section 'train' must be true or false, got 1"),
        ({"lr": "1e-3"}, "'lr' in config section 'train' must be a number, got '1e-3'"),
    ],
)
def test_json_values_of_the_wrong_type_are_refused_not_converted(train, message):
    with pytest.raises(ConfigError) as e:
        build_run_config({"train": train})
    assert str(e.value) == message


def test_command_line_text_is_converted_by_the_fields_type():
    assert from_text(TrainConfig, "epochs", "3") == 3
    assert from_text(TrainConfig, "binarize", "false") is False
    assert from_text(TrainConfig, "train_subset", "none") is None
    with pytest.raises(ConfigError, match="'epochs' must be an integer, got '2.5'"):
        from_text(TrainConfig, "epochs", "2.5")


def test_old_method_option_names_load_with_a_note(capsys):
    run = build_run_config({"train": {"method": "moco"}, "method": {"moco_queue_size": 64, "moco_momentum": 0.9}})
    assert (run.method.queue_size, run.method.momentum) == (64, 0.9)
    err = capsys.readouterr().err
    assert "'moco_queue_size' in the options of method 'moco' is now 'queue_size'" in err
    assert json.dumps(run.to_dict()).count("moco_") == 0  # saved under the new names


def test_old_command_line_spelling_works_with_a_note(tiny_data, tmp_path):
    out = tmp_path / "run"
    args = [a for a in tiny_train_args(tiny_data, subset=64, batch=16, epochs=1)]
    i = args.index("--n-views")
    del args[i : i + 2]  # CR-VAE takes one augmentation
    r = run_cli("train", *args, "--method", "cr-vae", "--crvae-lambda", "0.3", "--out", str(out), "--no-eval", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "simvae: note: --crvae-lambda is now --consistency-weight" in r.stderr
    assert json.loads((out / "config.json").read_text())["method"]["consistency_weight"] == 0.3
