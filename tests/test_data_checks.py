"""Every data file is checked when it is loaded, not after training: labels outside the data set's
classes, image/label counts that differ and headers that disagree with the file's size are refused
for the training and the test files alike. ``subset_train`` refuses a subset larger than the
training set. An explicit data folder is the only place looked (never a download), and the error
names exactly the files missing there; without one, the files missing from the folder closest to
complete.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import IDX_STEMS, make_tiny_images, write_tiny_idx

import simvae.data.mnist as datasets
from simvae.data import ImageData, load_dataset
from simvae.data.checks import check_labels
from simvae.data.idx import write_idx
from simvae.errors import ConfigError, DataError

SPLITS = {"train": (IDX_STEMS["train_images"], IDX_STEMS["train_labels"]), "test": (IDX_STEMS["test_images"], IDX_STEMS["test_labels"])}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Never download, and no data folder from the environment."""
    monkeypatch.setenv("SIMVAE_OFFLINE", "1")
    monkeypatch.delenv("SIMVAE_DATA_DIR", raising=False)


def _load(d, name="mnist", download=False):
    return load_dataset(name, None if d is None else str(d), download=download)


def _one_line(msg: str) -> str:
    assert "\n" not in msg, msg
    return msg


# -- labels outside the classes --------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("gz", [False, True])
def test_label_outside_the_classes_is_refused_when_loaded(tmp_path, name, split, gz):
    d = write_tiny_idx(tmp_path / "data", 20, 10, gz=gz)
    labels_path = d / (SPLITS[split][1] + (".gz" if gz else ""))
    _, y = make_tiny_images(20 if split == "train" else 10, 0 if split == "train" else 1)
    y[3], y[7] = 10, 12
    write_idx(labels_path, y)
    with pytest.raises(DataError) as info:
        _load(d, name)
    msg = _one_line(str(info.value))
    assert msg == (
        f"{labels_path}: label 10 at index 3 is outside 0..9 for {name}'s 10 classes; the file is damaged or from another data set"
    ), msg


def test_check_labels_names_the_first_offender():
    check_labels(torch.tensor([0, 9, 3]), 10, "f", "ds")  # in range: nothing raised
    check_labels(torch.tensor([], dtype=torch.long), 10, "f", "ds")
    with pytest.raises(DataError, match=r"^f: label -1 at index 2 is outside 0\.\.2 for ds's 3 classes"):
        check_labels(torch.tensor([0, 1, -1, 5]), 3, "f", "ds")
    with pytest.raises(DataError, match=r"label 255 at index 0 is outside 0\.\.9"):
        check_labels(torch.tensor([255, 0], dtype=torch.uint8), 10, "f", "ds")


# -- counts and header sizes, for the training and the test files ------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_image_and_label_counts_differ(tmp_path, split):
    d = write_tiny_idx(tmp_path / "data", 20, 10)
    images, labels = SPLITS[split]
    n = 20 if split == "train" else 10
    write_idx(d / labels, np.zeros(n - 3, np.uint8))
    with pytest.raises(DataError) as info:
        _load(d)
    msg = _one_line(str(info.value))
    assert str(d / images) in msg and str(d / labels) in msg, msg
    assert f"{n} images" in msg and f"{n - 3} labels" in msg, msg


@pytest.mark.parametrize("stem", list(IDX_STEMS.values()))
@pytest.mark.parametrize("damage", ["short", "long"])
def test_header_and_size_disagree(tmp_path, stem, damage):
    """A file shorter or longer than its header states is refused, naming the file."""
    d = write_tiny_idx(tmp_path / "data", 20, 10)
    raw = (d / stem).read_bytes()
    (d / stem).write_bytes(raw[:-5] if damage == "short" else raw + bytes(5))
    with pytest.raises(DataError) as info:
        _load(d)
    msg = _one_line(str(info.value))
    assert msg.startswith(f"{d / stem}: "), msg
    assert ("truncated file" in msg) if damage == "short" else ("5 bytes more than" in msg and "header" in msg), msg


@pytest.mark.parametrize("stem", list(IDX_STEMS.values()))
def test_wrong_kind_of_file(tmp_path, stem):
    d = write_tiny_idx(tmp_path / "data", 20, 10)
    is_labels = "labels" in stem
    write_idx(d / stem, np.zeros((20, 28, 28) if is_labels else (20,), np.uint8))  # images where labels belong, or v.v.
    with pytest.raises(DataError) as info:
        _load(d)
    msg = _one_line(str(info.value))
    assert msg.startswith(f"{d / stem}: wrong magic number"), msg


# -- subset_train ----------------------------------------------------------------------------


def _data(n_train=60):
    x = torch.zeros(n_train, 1, 4, 4, dtype=torch.uint8)
    return ImageData("mnist", x, torch.arange(n_train) % 10, x[:5], torch.arange(5), [str(i) for i in range(10)])


def test_subset_larger_than_the_training_set_is_refused():
    data = _data(60)
    with pytest.raises(ConfigError) as info:
        data.subset_train(100)
    assert str(info.value) == "train_subset 100 is larger than the training set (60 images); drop --train-subset or lower it"
    with pytest.raises(ConfigError, match="train_subset 0 must be at least 1"):
        data.subset_train(0)


def test_subset_within_the_training_set():
    data = _data(60)
    assert data.subset_train(None) is data and data.subset_train(60) is data
    sub = data.subset_train(7)
    assert len(sub.train_images) == 7 and torch.equal(sub.train_labels, data.train_labels[:7])
    assert sub.test_images is data.test_images


# -- where the files are looked for ----------------------------------------------------------


def _no_download(monkeypatch):
    def refuse(name):
        raise AssertionError(f"_download_idx({name!r}) called")

    monkeypatch.setattr(datasets, "_download_idx", refuse)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_explicit_folder_with_only_the_test_files_names_the_missing_ones(tmp_path, monkeypatch, name):
    monkeypatch.delenv("SIMVAE_OFFLINE")  # a download would be allowed here ...
    _no_download(monkeypatch)  # ... but an explicit folder must never try one
    d = write_tiny_idx(tmp_path / "data", 20, 10)
    for stem in SPLITS["train"]:
        (d / stem).unlink()
    with pytest.raises(DataError) as info:
        _load(d, name, download=True)
    msg = _one_line(str(info.value))
    assert msg.startswith(f"{name} not found in {d}: missing {IDX_STEMS['train_images']}[.gz], {IDX_STEMS['train_labels']}[.gz] "), msg
    assert IDX_STEMS["test_images"] not in msg and IDX_STEMS["test_labels"] not in msg, msg
    assert str(d / name) in msg and "--data-dir" in msg and "download disabled" not in msg, msg


def test_explicit_folder_never_downloads_when_empty(tmp_path, monkeypatch):
    monkeypatch.delenv("SIMVAE_OFFLINE")
    _no_download(monkeypatch)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="mnist not found in .*: missing train-images"):
        _load(tmp_path / "empty", download=True)


def test_explicit_folder_names_its_most_complete_subfolder(tmp_path):
    d = tmp_path / "data"
    write_tiny_idx(d / "mnist" / "raw", 20, 10)
    (d / "mnist" / "raw" / IDX_STEMS["test_labels"]).unlink()
    with pytest.raises(DataError) as info:
        _load(d)
    msg = _one_line(str(info.value))
    assert msg.startswith(f"mnist not found in {d / 'mnist' / 'raw'}: missing {IDX_STEMS['test_labels']}[.gz] "), msg
    for stem in ("train_images", "train_labels", "test_images"):
        assert IDX_STEMS[stem] not in msg, msg


def test_without_a_folder_the_closest_to_complete_is_named(tmp_path, monkeypatch):
    env = tmp_path / "env"
    write_tiny_idx(env, 20, 10)
    for stem in SPLITS["train"]:
        (env / stem).unlink()  # env: 2 of 4
    write_tiny_idx(env / "mnist", 20, 10)
    (env / "mnist" / IDX_STEMS["test_images"]).unlink()  # env/mnist: 3 of 4
    monkeypatch.setenv("SIMVAE_DATA_DIR", str(env))
    with pytest.raises(DataError) as info:
        _load(None)
    msg = _one_line(str(info.value))
    assert msg.startswith(
        f"mnist not found: the most complete folder, {env / 'mnist'}, lacks {IDX_STEMS['test_images']}[.gz] (download disabled)"
    ), msg
    assert str(env) in msg and str(env / "mnist" / "raw") in msg, msg  # every folder looked in
    for stem in ("train_images", "train_labels", "test_labels"):
        assert IDX_STEMS[stem] not in msg, msg


def test_without_a_folder_a_failed_download_is_said(tmp_path, monkeypatch):
    fetched = write_tiny_idx(tmp_path / "cache", 20, 10)
    (fetched / IDX_STEMS["train_labels"]).unlink()
    monkeypatch.setattr(datasets, "_download_idx", lambda name: fetched)  # a partial download
    with pytest.raises(DataError) as info:
        _load(None, download=True)
    msg = _one_line(str(info.value))
    assert msg.startswith(
        f"mnist not found: the most complete folder, {fetched}, lacks {IDX_STEMS['train_labels']}[.gz] (download incomplete)"
    ), msg
    monkeypatch.setattr(datasets, "_download_idx", lambda name: None)
    with pytest.raises(DataError, match=r"looked for .* in \(no folders\) \(download failed, or SIMVAE_OFFLINE is set\)"):
        _load(None, download=True)
