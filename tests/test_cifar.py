"""CIFAR-10 in its two layouts (the python batches and JPEG class folders), written here in their
exact formats: loaded, checked, and trained end to end with the conv nets."""

import pickle

import numpy as np
import pytest
import torch

from simvae.data import load_dataset
from simvae.data.cifar import CLASSES
from simvae.errors import DataError


def _images(n, seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    x = rng.integers(0, 60, size=(n, 3, 32, 32), dtype=np.uint8)
    for i, c in enumerate(labels):
        x[i, c % 3, 2 + 2 * c : 5 + 2 * c, 4:28] = 220  # a class-dependent coloured bar
    return x, labels


def write_python_version(folder, n_per_batch=20, n_test=30):
    d = folder / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i in range(1, 6):
        x, y = _images(n_per_batch, i)
        with open(d / f"data_batch_{i}", "wb") as fh:
            pickle.dump({b"data": x.reshape(len(x), -1), b"labels": [int(v) for v in y]}, fh)
    x, y = _images(n_test, 9)
    with open(d / "test_batch", "wb") as fh:
        pickle.dump({b"data": x.reshape(len(x), -1), b"labels": [int(v) for v in y]}, fh)
    with open(d / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES]}, fh)
    return folder


def write_jpeg_folders(folder, n_train=60, n_test=20):
    from PIL import Image

    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        x, y = _images(n, seed)
        for i, (img, c) in enumerate(zip(x, y)):
            d = folder / split / CLASSES[c]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.transpose(1, 2, 0)).save(d / f"{i:05d}.jpg", quality=95)
    return folder


def test_python_version_loads_exactly(tmp_path):
    data = load_dataset("cifar10", write_python_version(tmp_path), download=False)
    assert data.train_images.shape == (100, 3, 32, 32) and data.test_images.shape == (30, 3, 32, 32)
    x, y = _images(20, 1)
    assert torch.equal(data.train_images[:20], torch.from_numpy(x)) and data.train_labels[:20].tolist() == y.tolist()
    assert data.classes == list(CLASSES)


def test_jpeg_folders_load_with_the_class_folders(tmp_path):
    data = load_dataset("cifar10", write_jpeg_folders(tmp_path), download=False)
    assert data.train_images.shape == (60, 3, 32, 32) and data.test_images.shape == (20, 3, 32, 32)
    assert data.classes == sorted(CLASSES) and "image folders" in data.source
    assert sorted(set(data.train_labels.tolist())) == list(range(10))
    x, y = _images(60, 1)
    # the folders are grouped by class; the loaded order is a fixed shuffle, so a prefix covers many classes
    assert len(set(data.train_labels[:20].tolist())) >= 5
    assert torch.equal(load_dataset("cifar10", tmp_path, download=False).train_labels, data.train_labels)
    for i in range(60):  # every image is there, under its class (JPEG: close, not equal)
        c = data.classes.index(CLASSES[y[i]])
        want = torch.from_numpy(x[i]).float()
        d = [
            (data.train_images[j].float().mean((1, 2)) - want.mean((1, 2))).abs().max()
            for j in torch.nonzero(data.train_labels == c).squeeze(1)
        ]
        assert min(d) < 3  # each channel's mean survives JPEG


def test_errors_name_the_file(tmp_path):
    write_python_version(tmp_path / "a")
    (tmp_path / "a" / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3.*damaged"):
        load_dataset("cifar10", tmp_path / "a", download=False)
    write_jpeg_folders(tmp_path / "b")
    bad = sorted((tmp_path / "b" / "train" / CLASSES[0]).iterdir())[0]
    bad.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=f"cannot decode image {bad}"):
        load_dataset("cifar10", tmp_path / "b", download=False)
    with pytest.raises(DataError, match="cifar10 not found in .*not downloaded: an explicit --data-dir"):
        load_dataset("cifar10", tmp_path / "b" / "train" / CLASSES[1], download=True)


def test_labels_out_of_range_are_refused(tmp_path):
    write_python_version(tmp_path)
    x, y = _images(20, 1)
    y[4] = 10
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": x.reshape(20, -1), b"labels": [int(v) for v in y]}, fh)
    with pytest.raises(DataError, match="label 10 at index 4 is outside 0..9 for cifar10"):
        load_dataset("cifar10", tmp_path, download=False)


def test_conv_simvae_trains_and_evaluates_on_cifar(tmp_path):
    """Train end to end: the conv nets of Table 4 (latent 64), colour augmentation, eval on the class."""
    from simvae import evaluate_run
    from simvae.run_config import build_run_config
    from simvae.train import train

    write_python_version(tmp_path / "data")
    run = build_run_config(
        {
            "train": {
                "dataset": "cifar10",
                "data_dir": str(tmp_path / "data"),
                "download": False,
                "device": "cpu",
                "train_subset": 32,
                "batch_size": 8,
                "epochs": 1,
            },
            "method": {"n_views": 2},
            "eval": {"probe_max_epochs": 2, "gmm_restarts": 1, "val_size": 20, "knn_max_k": 3, "map_points": 0, "gmm_max_iter": 10},
        }
    )
    summary = train(run, tmp_path / "run", progress=False)
    assert summary["steps"] == 4 and summary["finished"]
    m = evaluate_run(tmp_path / "run", quiet=True)
    assert m["probe_hidden"] == 64 and 0 <= m["knn_acc"] <= 1 and m["recon_mse"] >= 0
