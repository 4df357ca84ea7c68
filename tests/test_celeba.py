"""CelebA in its standard layout (``img_align_celeba/*.jpg`` of 178 x 218, ``list_attr_celeba.txt``,
``list_eval_partition.txt``), written here in exactly that format: loaded through the 64x64
cache, checked, and trained end to end with the conv nets."""

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY_EVAL_ARGS, run_cli

from simvae.data import DATASETS, celeba, load_dataset, preset
from simvae.errors import ConfigError, DataError

# CelebA's 40 attributes in file order, with their published positive rates (whole data set):
# the tiny files below use these rates on their training partition.
RATES = {
    "5_o_Clock_Shadow": 0.111,
    "Arched_Eyebrows": 0.267,
    "Attractive": 0.512,
    "Bags_Under_Eyes": 0.205,
    "Bald": 0.022,
    "Bangs": 0.152,
    "Big_Lips": 0.241,
    "Big_Nose": 0.235,
    "Black_Hair": 0.239,
    "Blond_Hair": 0.148,
    "Blurry": 0.051,
    "Brown_Hair": 0.205,
    "Bushy_Eyebrows": 0.142,
    "Chubby": 0.058,
    "Double_Chin": 0.047,
    "Eyeglasses": 0.065,
    "Goatee": 0.063,
    "Gray_Hair": 0.042,
    "Heavy_Makeup": 0.387,
    "High_Cheekbones": 0.455,
    "Male": 0.417,
    "Mouth_Slightly_Open": 0.483,
    "Mustache": 0.042,
    "Narrow_Eyes": 0.115,
    "No_Beard": 0.835,
    "Oval_Face": 0.284,
    "Pale_Skin": 0.043,
    "Pointy_Nose": 0.277,
    "Receding_Hairline": 0.080,
    "Rosy_Cheeks": 0.066,
    "Sideburns": 0.057,
    "Smiling": 0.482,
    "Straight_Hair": 0.208,
    "Wavy_Hair": 0.320,
    "Wearing_Earrings": 0.189,
    "Wearing_Hat": 0.048,
    "Wearing_Lipstick": 0.472,
    "Wearing_Necklace": 0.123,
    "Wearing_Necktie": 0.073,
    "Young": 0.774,
}
NAMES = list(RATES)
# what the balance rule gives on those rates (and, as documented, on the real CelebA)
EXPECTED_ATTRS = [
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Bushy_Eyebrows",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Mouth_Slightly_Open",
    "No_Beard",
    "Oval_Face",
    "Pointy_Nose",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Young",
]
N0, N1, N2 = 200, 20, 40  # train, valid, test partitions
N = N0 + N1 + N2
HAIR_COLOURS = np.array([[20, 20, 20], [40, 25, 15], [230, 200, 90], [120, 70, 30], [170, 170, 170]], np.uint8)


def _tables(seed=0):
    """(file names, attribute values {0, 1} [N, 40], partitions [N], hair class or -1 [N]) in file order;
    two test images sit among the training ones (real CelebA is sorted, a loader must not rely on it)."""
    rng = np.random.default_rng(seed)
    part = np.array([0] * N0 + [1] * N1 + [2] * N2)
    part[[10, 150]], part[[N0 + N1 + 3, N0 + N1 + 7]] = 2, 0
    attrs = np.zeros((N, 40), np.int64)
    train = np.flatnonzero(part == 0)
    for j, name in enumerate(NAMES):
        attrs[rng.choice(train, int(round(RATES[name] * N0)), replace=False), j] = 1  # exact rates on partition 0
        rest = np.flatnonzero(part != 0)
        attrs[rest, j] = rng.random(rest.size) < RATES[name]
    hair_cols = np.array([NAMES.index(a) for a in celeba.HAIR_ATTRS])
    attrs[:, hair_cols] = 0
    hair = rng.integers(0, 5, N)
    for i in range(N):
        attrs[i, hair_cols[hair[i]]] = 1
    none = np.arange(5, N, 11)  # no hair colour
    several = np.setdiff1d(np.arange(7, N, 13), none)  # two hair colours
    attrs[none[:, None], hair_cols] = 0
    attrs[several, hair_cols[(hair[several] + 1) % 5]] = 1
    hair[none], hair[several] = -1, -1
    return [f"{i + 1:06d}.jpg" for i in range(N)], attrs, part, hair


def _face(i, attrs, hair):
    """A 218 x 178 RGB image: background by gender, a hair band by hair colour, a green frame outside the
    centre 148 x 148 crop (which must not survive the crop)."""
    rng = np.random.default_rng(1000 + i)
    img = rng.integers(0, 30, size=(218, 178, 3), dtype=np.uint8)
    img[35:183, 15:163] += np.array([150, 40, 40] if attrs[i, NAMES.index("Male")] else [40, 40, 150], np.uint8)
    if hair[i] >= 0:
        img[40:70, 30:148] = HAIR_COLOURS[hair[i]]
    img[:30], img[-30:], img[:, :12], img[:, -12:] = 0, 0, 0, 0
    img[:30, :, 1], img[-30:, :, 1], img[:, :12, 1], img[:, -12:, 1] = 255, 255, 255, 255
    return img


def attr_lines(files, attrs):
    lines = [str(len(files)), " ".join(NAMES) + " "]
    lines += [f + "".join(f" {v:2d}" for v in 2 * row - 1) for f, row in zip(files, attrs)]  # runs of spaces
    return "\n".join(lines) + "\n"


def write_celeba(folder, seed=0):
    """Write a tiny CelebA in its standard layout into ``folder``; returns its tables."""
    from PIL import Image

    files, attrs, part, hair = _tables(seed)
    (folder / "img_align_celeba").mkdir(parents=True)
    for i, f in enumerate(files):
        Image.fromarray(_face(i, attrs, hair)).save(folder / "img_align_celeba" / f, quality=90)
    (folder / "list_attr_celeba.txt").write_text(attr_lines(files, attrs))
    (folder / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in zip(files, part)))
    return files, attrs, part, hair


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    d = tmp_path_factory.mktemp("celeba-master")
    return d, write_celeba(d)


@pytest.fixture
def celeba_dir(master, tmp_path):
    """A private copy of the tiny CelebA (tests may damage it)."""
    d = tmp_path / "data"
    shutil.copytree(master[0], d)
    return d


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """The cache in a temporary folder, never under the home folder."""
    monkeypatch.setenv("SIMVAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SIMVAE_DATA_DIR", raising=False)
    return tmp_path / "cache" / "celeba"


def _expected_order(part):
    return np.concatenate([np.flatnonzero(part != 2), np.flatnonzero(part == 2)])


def test_registered_with_the_conv_preset():
    assert DATASETS["celeba"].image_shape == (3, 64, 64) and DATASETS["celeba"].classes == ("female", "male")
    p = preset("celeba")
    assert p.network == "conv" and p.latent_dim == 64 and p.augment.jitter_p == 0.8 and p.augment.crop_scale == (0.6, 1.0)


def test_loads_images_labels_and_targets(master, cache):
    from PIL import Image

    d, (files, attrs, part, hair) = master
    data = load_dataset("celeba", d, download=False)
    order = _expected_order(part)
    n_train = int((part != 2).sum())
    assert data.train_images.shape == (n_train, 3, 64, 64) and data.test_images.shape == (N - n_train, 3, 64, 64)
    assert data.train_images.dtype == torch.uint8 and data.classes == ["female", "male"]
    male = attrs[order, NAMES.index("Male")]
    assert data.train_labels.tolist() == male[:n_train].tolist() and data.test_labels.tolist() == male[n_train:].tolist()
    # the centre 148 x 148 crop resized to 64 x 64 with Pillow's bilinear filter, exactly; no green frame left
    i = int(order[n_train + 1])
    with Image.open(d / "img_align_celeba" / files[i]) as im:
        want = np.asarray(im.convert("RGB").crop((15, 35, 163, 183)).resize((64, 64), Image.Resampling.BILINEAR))
    assert np.array_equal(data.test_images[1].numpy(), want.transpose(2, 0, 1))
    targets = {t.name: t for t in data.targets()}
    assert list(targets)[:2] == ["class", "hair_colour"] and len(targets) == 2 + 20
    hc = targets["hair_colour"]
    assert hc.role == "style" and hc.n_classes == 5 and hc.class_names == ["bald", "black", "blond", "brown", "gray"]
    assert torch.cat([hc.train, hc.test]).tolist() == hair[order].tolist()  # -1: no or several hair colours
    assert (hc.train == -1).sum() > 5 and set(hc.train.tolist()) == {-1, 0, 1, 2, 3, 4}
    assert [n.removeprefix("attr/") for n in list(targets)[2:]] == EXPECTED_ATTRS
    smiling = targets["attr/Smiling"]
    assert smiling.role == "style" and smiling.class_names == ["no", "yes"] and smiling.n_classes == 2
    assert torch.cat([smiling.train, smiling.test]).tolist() == attrs[order, NAMES.index("Smiling")].tolist()
    # memory-mapped from the cache, not copied
    npy = next(cache.glob("celeba-64-*.npy"))
    if os.path.exists("/proc/self/maps"):
        assert str(npy) in open("/proc/self/maps").read()


def test_balance_rule():
    rng = np.random.default_rng(0)
    names = [f"A{j}" for j in range(40)]
    names[0], names[1:6] = "Male", list(celeba.HAIR_ATTRS)
    rates = np.linspace(0.02, 0.5, 40)[rng.permutation(40)]
    rates[:6] = 0.5  # the target attributes: balanced, yet never chosen
    values = np.zeros((1000, 40), np.int8)
    for j, r in enumerate(rates):
        values[: int(round(r * 1000)), j] = 1
    minority = np.minimum(values.mean(0), 1 - values.mean(0))
    passing = [j for j in range(6, 40) if minority[j] >= celeba.ATTR_MIN_MINORITY]
    top = sorted(sorted(passing, key=lambda j: -minority[j])[:20])
    assert len(passing) > 20 and celeba.select_attributes(names, values) == [names[j] for j in top]
    values[:, 30:] = 1 - values[:, 30:]  # mostly-positive is as imbalanced as mostly-negative
    assert celeba.select_attributes(names, values) == [names[j] for j in top]
    few = values[:, :10].copy()  # fewer than 20 pass: all of them, in file order
    few_names = names[:10]
    assert celeba.select_attributes(few_names + names[10:], np.concatenate([few, np.zeros((1000, 30), np.int8)], 1)) == [
        names[j] for j in range(6, 10) if minority[j] >= 0.1
    ]


def test_cache_is_reused_and_rebuilt_when_the_source_changes(celeba_dir, cache, monkeypatch):
    first = load_dataset("celeba", celeba_dir, download=False)
    (npy,), (meta,) = list(cache.glob("*.npy")), list(cache.glob("*.npz"))
    stamp = npy.stat().st_mtime_ns

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(celeba, "_read_face", no_decoding)
        again = load_dataset("celeba", celeba_dir, download=False)
    assert torch.equal(again.train_images, first.train_images) and npy.stat().st_mtime_ns == stamp
    # an edited attribute file (a new mtime and size): rebuilt, the superseded cache removed
    path = celeba_dir / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    j = NAMES.index("Smiling")
    vals = lines[2].split()[1:]
    vals[j] = "1" if vals[j] == "-1" else "-1"
    lines[2] = "000001.jpg " + " ".join(vals)  # single spaces: still valid
    path.write_text("\n".join(lines) + "\n")
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    changed = load_dataset("celeba", celeba_dir, download=False)
    smiling = {t.name: t for t in changed.targets()}["attr/Smiling"].train
    assert smiling[0] != {t.name: t for t in first.targets()}["attr/Smiling"].train[0]
    assert not npy.exists() and not meta.exists() and len(list(cache.glob("*.npy"))) == 1
    # a replaced image: rebuilt, with its new pixels
    from PIL import Image

    img = celeba_dir / "img_align_celeba" / "000001.jpg"
    Image.fromarray(np.full((218, 178, 3), 200, np.uint8)).save(img, quality=90)
    os.utime(img, ns=(stamp + 2 * 10**9, stamp + 2 * 10**9))
    assert (load_dataset("celeba", celeba_dir, download=False).train_images[0].float().mean() - 200).abs() < 3


def test_an_interrupted_build_is_never_used(celeba_dir, cache, monkeypatch):
    calls = []
    real = celeba._read_face

    def interrupted(path):
        calls.append(path)
        if len(calls) == 50:
            raise KeyboardInterrupt
        return real(path)

    with monkeypatch.context() as m:
        m.setattr(celeba, "_read_face", interrupted)
        with pytest.raises(KeyboardInterrupt):
            load_dataset("celeba", celeba_dir, download=False)
    assert not [p for p in cache.iterdir() if not p.name.endswith(".lock")]  # no cache, no temporary file
    data = load_dataset("celeba", celeba_dir, download=False)
    assert data.train_images.float().mean(dim=(0, 2, 3))[0] > 50


def test_the_process_pool_writes_the_same_cache(master, tmp_path, monkeypatch):
    d = master[0]
    serial = load_dataset("celeba", d, download=False)
    monkeypatch.setenv("SIMVAE_CACHE_DIR", str(tmp_path / "cache2"))
    monkeypatch.setattr(celeba, "CHUNK", 64)
    monkeypatch.setattr(celeba, "_n_workers", lambda: 2)
    pooled = load_dataset("celeba", d, download=False)
    assert torch.equal(pooled.train_images, serial.train_images) and torch.equal(pooled.test_images, serial.test_images)


def test_missing_and_corrupt_images_are_named(celeba_dir, cache):
    img = celeba_dir / "img_align_celeba"
    (img / "000007.jpg").unlink()
    with pytest.raises(DataError, match=rf"1 of the {N} images listed in .* are missing from .*: " + re.escape(str(img / "000007.jpg"))):
        load_dataset("celeba", celeba_dir, download=False)
    shutil.copy(img / "000008.jpg", img / "000007.jpg")
    (img / "000003.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError) as e:
        load_dataset("celeba", celeba_dir, download=False)
    msg = str(e.value)
    assert f"1 of the {N} images cannot be used: {img / '000003.jpg'} (" in msg and "\n" not in msg
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img / "000004.jpg")
    with pytest.raises(
        DataError,
        match=r"2 of the .* images cannot be used: .*000003.jpg .*000004.jpg \(ValueError: "
        r"is 64x64, expected 178x218",
    ):
        load_dataset("celeba", celeba_dir, download=False)
    assert not list(cache.glob("*.np[yz]"))


def _damage(celeba_dir, which, fn):
    path = celeba_dir / which
    lines = path.read_text().splitlines()
    fn(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "which, fn, message",
    [
        ("list_attr_celeba.txt", lambda ls: ls.__setitem__(1, " ".join(NAMES[:39])), r"line 2: 39 distinct attribute names"),
        ("list_attr_celeba.txt", lambda ls: ls.__setitem__(6, ls[6].rsplit(" ", 1)[0]), r"line 7: 39 values"),
        ("list_attr_celeba.txt", lambda ls: ls.__setitem__(9, ls[9][:-2] + " 0"), r"line 10: value '0' for Young is not -1 or 1"),
        ("list_attr_celeba.txt", lambda ls: ls.__setitem__(0, "261"), r"line 1: says 261 images but the file lists 260"),
        ("list_attr_celeba.txt", lambda ls: ls.__setitem__(0, "many"), r"line 1: 'many' is not the number of images"),
        ("list_attr_celeba.txt", lambda ls: ls.__setitem__(4, ls[3]), r"line 5: 000002.jpg is listed twice \(first on line 4\)"),
        ("list_attr_celeba.txt", lambda ls: ls.__setitem__(1, ls[1].replace("Male", "Mail")), r"line 2: no attribute Male"),
        ("list_eval_partition.txt", lambda ls: ls.__setitem__(4, "000005.jpg 3"), r"line 5: expected 'FILE 0\|1\|2'"),
        (
            "list_eval_partition.txt",
            lambda ls: ls.__setitem__(4, "999999.jpg 0"),
            r"list_eval_partition.txt line 5: 999999.jpg is not in .*list_attr_celeba.txt",
        ),
        (
            "list_eval_partition.txt",
            lambda ls: ls.pop(4),
            r"list_attr_celeba.txt: 1 images have no partition in .*list_eval_partition.txt, the first 000005.jpg \(line 7\)",
        ),
    ],
)
def test_malformed_text_files_name_the_file_and_line(celeba_dir, which, fn, message):
    path = _damage(celeba_dir, which, fn)
    with pytest.raises(DataError, match=message) as e:
        load_dataset("celeba", celeba_dir, download=False)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_where_it_looks(celeba_dir, tmp_path, monkeypatch):
    with pytest.raises(
        DataError,
        match=r"celeba not found: .*empty lacks img_align_celeba/, list_attr_celeba.txt, "
        r"list_eval_partition.txt \(an explicit --data-dir is used as it is\); also "
        r"looked in .*empty/celeba; download img_align_celeba.zip",
    ):
        (tmp_path / "empty").mkdir()
        load_dataset("celeba", tmp_path / "empty", download=True)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("celeba", tmp_path / "nowhere")
    (celeba_dir / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match=re.escape(f"{celeba_dir} lacks list_eval_partition.txt")):
        load_dataset("celeba", celeba_dir)
    with pytest.raises(DataError, match="no folder to look in"):
        load_dataset("celeba")
    # DIR/celeba/ (torchvision's layout), found through $SIMVAE_DATA_DIR
    write_celeba(tmp_path / "root" / "celeba")
    monkeypatch.setenv("SIMVAE_DATA_DIR", str(tmp_path / "root"))
    assert load_dataset("celeba").train_images.shape[0] == N0 + N1


def test_train_subset_keeps_every_target_aligned(master):
    data = load_dataset("celeba", master[0], download=False)
    sub = data.subset_train(50)
    assert sub.train_images.shape[0] == 50 and torch.equal(sub.test_images, data.test_images)
    full = {t.name: t for t in data.targets()}
    for t in sub.targets():
        assert t.train.shape == (50,) and torch.equal(t.train, full[t.name].train[:50])
        assert torch.equal(t.test, full[t.name].test)
    assert [t.name for t in sub.targets()] == list(full) and sub.subset_train(None) is sub
    with pytest.raises(ConfigError, match="larger than the training set"):
        data.subset_train(N + 1)


@pytest.mark.slow
def test_cli_trains_and_evaluates_every_target(master, tmp_path):
    """``simvae train --dataset celeba``: conv nets at 64x64 (latent 64), metrics for gender, hair colour
    and the 20 attributes."""
    from simvae.run_config import EvalConfig

    out = tmp_path / "run"
    # generated samples (35 s of decoding on a CPU) and augmentation-style retrieval are not CelebA's to test
    skip = ["--skip", "generation,style"] if "skip" in EvalConfig.model_fields else []
    r = run_cli(
        "train",
        "--dataset",
        "celeba",
        "--data-dir",
        str(master[0]),
        "--train-subset",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--n-views",
        "2",
        "--no-download",
        "--quiet",
        "--quick-eval",
        "--out",
        str(out),
        *TINY_EVAL_ARGS,
        *skip,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"] == "celeba" and 0 <= m["knn_acc"] <= 1
    assert 0 <= m["hair_colour/knn_acc"] <= 1 and "hair_colour/mlp_acc" in m
    assert {f"attr/{a}/knn_acc" for a in EXPECTED_ATTRS} <= set(m)
    assert "gmm_acc" in m and "hair_colour/gmm_acc" not in m  # the mixture is fitted to the content target only
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 4
