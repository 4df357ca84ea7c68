"""Representations out (``simvae embed``, ``Run.embed``), and the README's worked example
"Train on your own images" run on a small folder generated here."""

import numpy as np
import pytest
import torch
from test_folder_data import make_folder

from simvae.errors import DataError


def _groups_csv(path, root):
    rows = ["path,group"]
    for c in ("cats", "dogs"):
        files = sorted(p.name for p in (root / c).iterdir())
        rows += [f"{c}/{f},{c}-{i // 3}" for i, f in enumerate(files)]
    path.write_text("\n".join(rows) + "\n")
    return path


TINY = ["--epochs", "1", "--batch-size", "4", "--n-views", "2", "--image-size", "28", "--device", "cpu", "--no-eval", "--quiet"]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The README example's folder, groups file and trained run (tiny settings), in one folder."""
    import os

    from simvae.cli import main

    here = tmp_path_factory.mktemp("own-images")
    photos = make_folder(here / "photos", classes=("cats", "dogs"), n=12, size=(40, 40), colour=False, ext="jpg")
    _groups_csv(here / "photos-groups.csv", photos)
    old = os.getcwd()
    os.chdir(here)
    try:
        assert (
            main(
                [
                    "train",
                    "--dataset",
                    "folder",
                    "--data-dir",
                    "photos",
                    "--groups",
                    "photos-groups.csv",
                    "--augment",
                    "none",
                    "--out",
                    "runs/photos",
                    *TINY,
                ]
            )
            == 0
        )
        assert (
            main(["train", "--dataset", "folder", "--data-dir", "photos", "--method", "simclr", "--out", "runs/photos-simclr", *TINY]) == 0
        )
    finally:
        os.chdir(old)
    return here


def test_the_readme_example_embeds_every_image(example, monkeypatch, capsys):
    from simvae.cli import main

    monkeypatch.chdir(example)
    assert main(["embed", "runs/photos", "--data-dir", "photos", "--out", "photos-emb"]) == 0
    z = np.load(example / "photos-emb.npy", allow_pickle=False)
    var = np.load(example / "photos-emb.var.npy", allow_pickle=False)
    paths = (example / "photos-emb.paths.txt").read_text().splitlines()
    want = sorted(f"{c}/{i:03d}.jpg" for c in ("cats", "dogs") for i in range(12))
    assert z.dtype == np.float32 and z.shape == (24, 10) and var.shape == z.shape and paths == want
    assert np.isfinite(z).all() and (var > 0).all()
    assert "embedded 24 images (10 dimensions, with variances)" in capsys.readouterr().err


@pytest.fixture
def at_example(example, monkeypatch):
    """Commands run where the example's run was trained (its config names photos/ relative to it)."""
    monkeypatch.chdir(example)
    return example


def test_rows_are_the_runs_posterior_of_each_image(at_example):
    example = at_example
    from simvae import load_run
    from simvae.data.folder import read_image
    from simvae.embed import embed_images

    out = example / "check"
    embed_images(example / "runs" / "photos", out, data_dir=example / "photos", progress=False)
    z, var = np.load(f"{out}.npy"), np.load(f"{out}.var.npy")
    paths = (example / "check.paths.txt").read_text().splitlines()
    run = load_run(example / "runs" / "photos", device="cpu")
    x = torch.stack([torch.from_numpy(read_image(str(example / "photos" / p), 28, 1)) for p in paths[:5]])
    mean, v = run.embed(x)
    mu, logvar = run.method.posterior(x.float() / 255)
    assert torch.allclose(mean, mu, atol=1e-5) and torch.allclose(v, logvar.exp(), atol=1e-5)
    assert np.allclose(z[:5], mean.numpy(), atol=1e-5) and np.allclose(var[:5], v.numpy(), atol=1e-5)
    assert torch.allclose(mean, run.encode(x), atol=1e-5)
    # another size is resized, another channel count refused in one line
    assert run.embed(torch.nn.functional.interpolate(x.float() / 255, size=(40, 40)))[0].shape == (5, 10)
    with pytest.raises(DataError, match=r"3 channels; the run .* takes \[n, 1, H, W\]"):
        run.embed(x.expand(5, 3, 28, 28))


def test_parquet_and_a_discriminative_method(at_example):
    example = at_example
    pq = pytest.importorskip("pyarrow.parquet")
    from simvae.embed import embed_images

    done = embed_images(example / "runs" / "photos-simclr", example / "simclr.parquet", data_dir=example / "photos", progress=False)
    t = pq.read_table(example / "simclr.parquet")
    assert t.column_names == ["path", "label", "mean"] and done["variances"] is False  # no posterior: no variances
    assert str(t.schema.field("mean").type) == "fixed_size_list<element: float>[10]"  # grey 28 x 28: latent 10
    assert t.column("label").to_pylist()[:2] == ["cats", "cats"] and t.num_rows == 24
    (example / "simclr.var.npy").write_bytes(b"stale")
    embed_images(example / "runs" / "photos-simclr", example / "simclr", data_dir=example / "photos", progress=False)
    assert not (example / "simclr.var.npy").exists()
    rows = np.array(t.column("mean").to_pylist(), dtype=np.float32)
    assert np.allclose(rows, np.load(example / "simclr.npy"), atol=1e-6)


def test_other_sizes_are_resized_and_other_channels_refused(at_example, tmp_path):
    example = at_example
    from simvae.embed import embed_images

    big = make_folder(tmp_path / "big", classes=(), n=5, size=(64, 80), colour=False)
    done = embed_images(example / "runs" / "photos", tmp_path / "big-emb", data_dir=big, progress=False)
    assert done["n"] == 5 and np.load(tmp_path / "big-emb.npy").shape == (5, 10)
    colour = make_folder(tmp_path / "colour", classes=(), n=3, size=(28, 28), colour=True)
    with pytest.raises(
        DataError,
        match=r"read as colour \(3 channels\) but the run was trained on grey images \(1\); "
        r"pass --channels 1",
    ):
        embed_images(example / "runs" / "photos", tmp_path / "c-emb", data_dir=colour, progress=False)
    assert embed_images(example / "runs" / "photos", tmp_path / "c-emb", data_dir=colour, channels=1, progress=False)["n"] == 3


def test_a_non_folder_data_set_is_embedded_by_index(at_example, tmp_path):
    example = at_example
    from conftest import write_tiny_idx

    from simvae.embed import embed_images

    idx = write_tiny_idx(tmp_path / "mnist", n_train=20, n_test=6)
    embed_images(example / "runs" / "photos", tmp_path / "m", data_dir=idx, dataset="mnist", progress=False)
    paths = (tmp_path / "m.paths.txt").read_text().splitlines()
    assert paths[:2] == ["train/0", "train/1"] and paths[-1] == "test/5" and np.load(tmp_path / "m.npy").shape == (26, 10)
