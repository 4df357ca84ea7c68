"""Explicit groups (``--groups FILE.csv``): the groups file, the listed-groups source (members drawn
per group, slicing across processes) and training with groups end to end."""

import numpy as np
import pytest
import torch
from test_folder_data import make_folder

from simvae.data import GREY_AUGMENT, NO_AUGMENT, load_dataset
from simvae.dist import DistInfo
from simvae.errors import ConfigError, DataError
from simvae.train.groups import AugmentedImageGroups, ListedGroups


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMVAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SIMVAE_DATA_DIR", raising=False)


def _source(sizes, n_views_ok=True, world=1, rank=0, separate=False, spec=NO_AUGMENT):
    """Images whose pixels are their own index, in groups of ``sizes``."""
    n = sum(sizes)
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    groups = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return ListedGroups(images, groups, spec, torch.device("cpu"), DistInfo(rank, world), separate_image=separate), groups


def _ids(x):
    return (x[..., 0, 0, 0] * 255).round().long()


def test_members_are_drawn_from_their_group_without_replacement_where_they_can_be():
    src, groups = _source([5, 3, 1, 4])
    assert len(src) == 4 and src.with_replacement(3) == 1 and src.with_replacement(4) == 2
    assert "1 with fewer than 3 members, drawn with replacement" in src.describe(3)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        idx = torch.tensor([0, 1, 2, 3])
        b = src.batch(idx, 3, g)
        ids = _ids(b.views)  # [4, 3]
        assert b.views.shape == (4, 3, 1, 4, 4) and b.images.shape == (4, 1, 4, 4)
        assert all((groups[ids[i]] == idx[i]).all() for i in range(4))  # every member from its own group
        assert all(len(set(ids[i].tolist())) == 3 for i in (0, 1))  # enough members: distinct
        assert set(ids[2].tolist()) == {8}  # a group of one: that image J times
        assert torch.equal(_ids(b.images[:, None])[:, 0], ids[:, 0])  # Batch.images: the first member, as it is


def test_separate_image_takes_the_image_from_another_member():
    src, groups = _source([2, 2, 3], separate=True)
    b = src.batch(torch.tensor([0, 1, 2]), 1, torch.Generator().manual_seed(1))
    first, view = _ids(b.images[:, None])[:, 0], _ids(b.views)[:, 0]
    assert b.views.shape == (3, 1, 1, 4, 4) and (first != view).all() and torch.equal(groups[first], groups[view])


@pytest.mark.parametrize("world", [2, 4])
def test_processes_slice_exactly_the_one_process_step(world):
    sizes = [6, 2, 9, 4, 1, 7, 3, 5]
    n = sum(sizes)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, size=(n, 1, 12, 12), dtype=np.uint8))
    groups = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    idx = torch.tensor([3, 0, 6, 2, 7, 5, 1, 4])

    def step(rank, w):
        src = ListedGroups(images, groups, GREY_AUGMENT, torch.device("cpu"), DistInfo(rank, w))
        b = src.batch(idx, 3, torch.Generator().manual_seed(5))
        return b.images, b.views, b.randn(3, 2)

    whole = step(0, 1)
    parts = [step(r, world) for r in range(world)]
    for k in range(3):
        assert torch.equal(torch.cat([p[k] for p in parts]), whole[k])


def test_augment_none_views_are_the_member_images():
    src, _ = _source([3, 3])
    b = src.batch(torch.tensor([0, 1]), 3, torch.Generator().manual_seed(2))
    n = 6
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4) / 255
    assert torch.equal(b.views, images[_ids(b.views).view(-1)].view(2, 3, 1, 4, 4))


def _groups_file(path, rows, header="path,group"):
    path.write_text(header + "\n" + "".join(f"{p},{g}\n" for p, g in rows))
    return path


def test_groups_file_is_read_into_training_groups(tmp_path, capsys):
    root = make_folder(tmp_path / "d", n=10)
    rows = [(f"{c}/{i:03d}.png", f"{c}{i // 3}") for c in ("cat", "dog") for i in range(9 if c == "cat" else 6)]
    rows.append(("cat/009.png", "alone"))  # dog/006..009 in no group
    f = _groups_file(tmp_path / "g.csv", rows, header="path,group,comment")
    data = load_dataset("folder", root, groups=str(f))
    # the seeded split keeps each group whole on one side
    test_rows = {p for p, _ in rows if p in set(data.test_files)}
    groups_of = dict(rows)
    assert all(all(q in test_rows for q, g in rows if g == groups_of[p]) for p in test_rows)
    g = data.train_groups
    assert g.shape == (len(data.train_images),) and set(g.tolist()) <= set(range(len(data.group_names))) | {-1}
    for i, name in enumerate(data.group_names):  # each group's rows are exactly its files
        assert {data.train_files[k] for k in torch.nonzero(g == i).squeeze(1).tolist()} == {p for p, gn in rows if gn == name}
    line = next(ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("folder:"))
    assert "groups:" in line and "of one image" in line and "in no group (not trained on)" in line


@pytest.mark.parametrize(
    "content, message",
    [
        ("", r"g.csv is empty"),
        ("path,label\ncat/000.png,a\n", r"g.csv line 1: no column 'group'"),
        ("path,group\n", r"lists no images \(only its header\)"),
        ("path,group\ncat/000.png,a\ncat/404.png,a\n", r"g.csv line 3: .*cat/404.png does not exist"),
        ("path,group\ncat/000.png,a\ncat/001.png,b\ncat/000.png,b\n", r"line 4: cat/000.png is listed twice \(first on line 2\)"),
        ("path,group\n../d/cat/000.png,a\n", r"line 2: '../d/cat/000.png' leaves"),
        ("path,group\ncat/../../x.png,a\n", r"line 2: 'cat/../../x.png' leaves"),
        ("path,group\ncat/000.png,\n", r"line 2: cat/000.png has no group"),
        ("path,group\ncat/notes.txt,a\n", r"line 2: .*notes.txt is not an image file"),
    ],
)
def test_bad_groups_files_are_refused_in_one_line(tmp_path, content, message):
    root = make_folder(tmp_path / "d", n=4)
    (root / "cat" / "notes.txt").write_text("x")
    f = tmp_path / "g.csv"
    f.write_text(content)
    with pytest.raises(DataError, match=message) as e:
        load_dataset("folder", root, groups=str(f))
    assert "\n" not in str(e.value)


def test_groups_of_test_images_are_refused(tmp_path):
    make_folder(tmp_path / "d" / "train", n=4)
    make_folder(tmp_path / "d" / "test", n=2, seed=1)
    f = _groups_file(tmp_path / "g.csv", [("train/cat/000.png", "a"), ("test/cat/000.png", "a")])
    with pytest.raises(DataError, match=r"test/cat/000.png is a test image"):
        load_dataset("folder", tmp_path / "d", groups=str(f))


def _config(root, groups_file, method="simvae", method_opts=None, **train):
    from simvae.run_config import build_run_config

    t = {
        "dataset": "folder",
        "method": method,
        "data_dir": str(root),
        "device": "cpu",
        "batch_size": 4,
        "epochs": 1,
        "groups": str(groups_file),
        "augment": "none",
        "image_size": 28,
        "channels": 1,
    }
    t.update(train)
    return build_run_config({"train": t, "method": method_opts or {}})


@pytest.mark.parametrize("method, opts", [("simvae", {"n_views": 3}), ("cr-vae", {}), ("simclr", {}), ("vae", {})])
def test_training_with_groups_end_to_end(tmp_path, method, opts):
    from simvae.train import Trainer, train

    root = make_folder(tmp_path / "d", n=12, colour=False)
    rows = [(f"{c}/{i:03d}.png", f"{c}{i // 3}") for c in ("cat", "dog") for i in range(12)]
    f = _groups_file(tmp_path / "g.csv", rows)
    run = _config(root, f, method, opts)
    trainer = Trainer(run, tmp_path / "probe-run", progress=False)
    assert isinstance(trainer.source, ListedGroups) and trainer.source.separate_image == (method == "cr-vae")
    n_groups = len(trainer.source)
    assert n_groups == len(trainer.data.group_names) and trainer.steps_per_epoch == n_groups // 4
    summary = train(run, tmp_path / "run", progress=False)
    assert summary["finished"] and summary["steps"] == n_groups // 4


def test_without_groups_the_source_is_augmented_images_and_too_few_groups_are_refused(tmp_path):
    from simvae.train import Trainer

    root = make_folder(tmp_path / "d", n=12, colour=False)
    run = _config(root, None, groups=None)
    assert isinstance(Trainer(run, tmp_path / "r", progress=False).source, AugmentedImageGroups)
    f = _groups_file(tmp_path / "g.csv", [("cat/000.png", "a"), ("cat/001.png", "a"), ("dog/000.png", "b"), ("dog/001.png", "b")])
    with pytest.raises(ConfigError, match=r"2 groups, but a step takes 4"):
        Trainer(_config(root, f), tmp_path / "r2", progress=False)
    rows = [(f"{c}/{i:03d}.png", f"{c}{i // 2}") for c in ("cat", "dog") for i in range(12)]
    sub = Trainer(
        _config(root, _groups_file(tmp_path / "g2.csv", rows), train_subset=10), tmp_path / "r3", progress=False
    )  # the first 10 training images: some groups lose members, some all of them
    files = sub.data.train_files
    src = sub.source
    assert sum(src.sizes.tolist()) == 10 and len(src) == len({dict(rows)[p] for p in files})
