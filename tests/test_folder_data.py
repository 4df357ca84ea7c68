"""Image folders (``--dataset folder``), the shared image cache, and the folder rules of CIFAR-10's
image folders: layouts, defaults, the split, what is skipped and what is refused, the cache."""

import os
import re
import threading

import numpy as np
import pytest
import torch

from simvae.data import folder, image_cache, load_dataset, preset
from simvae.errors import DataError


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A private cache folder per test."""
    monkeypatch.setenv("SIMVAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SIMVAE_DATA_DIR", raising=False)
    return tmp_path / "cache"


def _pixels(i, h, w, colour=True, seed=0):
    rng = np.random.default_rng(seed * 1000 + i)
    x = rng.integers(0, 256, size=(h, w, 3) if colour else (h, w), dtype=np.uint8)
    return x


def make_folder(root, classes=("cat", "dog"), n=8, size=(40, 48), colour=True, seed=0, ext="png"):
    """``root/<class>/<i>.png`` (or images in ``root`` itself when ``classes`` is empty)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(classes or ("",)):
        d = root / name if name else root
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(_pixels(i + 100 * c, *size, colour, seed)).save(d / f"{i:03d}.{ext}")
    return root


def test_class_folders_load_with_a_stratified_seeded_split(tmp_path, capsys):
    root = make_folder(tmp_path / "d", n=10)
    data = load_dataset("folder", root)
    assert data.classes == ["cat", "dog"] and data.has_labels
    assert data.train_images.shape == (18, 3, 32, 32) and data.test_images.shape == (2, 3, 32, 32)  # 40 px -> 32
    assert data.train_images.dtype == torch.uint8
    assert sorted(data.test_labels.tolist()) == [0, 1]  # each class held out: 10 % of 10 images = 1
    rec = data.split_record()
    assert rec["how"].startswith("seeded split") and sorted(rec["test"]) == sorted(data.test_files)
    assert set(rec["train"]) | set(rec["test"]) == {f"{c}/{i:03d}.png" for c in ("cat", "dog") for i in range(10)}
    # rows follow the files: a training row is its file, decoded as read_image does
    i = 3
    want = folder.read_image(str(root / data.train_files[i]), 32, 3)
    assert np.array_equal(data.train_images[i].numpy(), want)
    assert data.train_labels[i] == data.classes.index(data.train_files[i].split("/")[0])
    # the training order is shuffled once (not class-major) and the same on every load
    assert len(set(data.train_labels[:4].tolist())) == 2
    again = load_dataset("folder", root)
    assert again.train_files == data.train_files and torch.equal(again.train_images, data.train_images)
    assert "folder: 20 images in" in capsys.readouterr().err


def test_plain_folder_has_no_labels_and_a_preset_from_the_images(tmp_path):
    root = make_folder(tmp_path / "d", classes=(), n=12, size=(26, 30), colour=False)
    data = load_dataset("folder", root)
    assert not data.has_labels and data.image_shape == (1, 28, 28)  # grey, 26 px -> 28
    p = preset("folder", data.image_shape)
    assert p.network == "mlp" and p.latent_dim == 10 and p.augment.jitter_p == 0
    c = preset("folder", (3, 64, 64))
    assert c.network == "conv" and c.latent_dim == 64 and c.augment.jitter_p == 0.8
    assert preset("folder", (3, 28, 28)).latent_dim == 64
    # one colour image makes the folder colour; --channels and --image-size override
    from PIL import Image

    Image.fromarray(_pixels(0, 26, 30)).save(root / "colour.png")
    assert load_dataset("folder", root).image_shape == (3, 28, 28)
    assert load_dataset("folder", root, channels=1, image_size=64).image_shape == (1, 64, 64)


def test_train_and_test_folders_are_used_as_they_are(tmp_path):
    make_folder(tmp_path / "d" / "train", n=6)
    make_folder(tmp_path / "d" / "test", n=2, seed=1)
    data = load_dataset("folder", tmp_path / "d")
    assert len(data.train_images) == 12 and len(data.test_images) == 4
    assert all(f.startswith("train/") for f in data.train_files) and all(f.startswith("test/") for f in data.test_files)
    assert data.split_record()["how"] == "train/ and test/ folders"


def test_hidden_entries_non_images_and_empty_folders_are_skipped_and_counted(tmp_path, capsys):
    root = make_folder(tmp_path / "d", n=6)
    make_folder(root / ".ipynb_checkpoints", classes=("x",), n=2)  # hidden: never a class
    (root / "cat" / ".DS_Store").write_bytes(b"\0")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    data = load_dataset("folder", root)
    assert data.classes == ["cat", "dog"] and len(data.train_images) + len(data.test_images) == 12
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("folder:"))
    assert "2 hidden entries" in line and "1 file that is not an image (cat/notes.txt)" in line
    assert "1 folder without images (empty/)" in line


def _truncated_png(path):
    from PIL import Image

    Image.fromarray(_pixels(7, 40, 48)).save(path)
    path.write_bytes(path.read_bytes()[:200])


def test_unreadable_images_are_listed_and_skipped_or_fatal_with_strict(tmp_path, capsys, cache):
    root = make_folder(tmp_path / "d", n=6)
    _truncated_png(root / "cat" / "broken.png")
    (root / "dog" / "fake.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError) as e:
        load_dataset("folder", root, strict=True)
    msg = str(e.value)
    assert "\n" not in msg and str(root / "cat" / "broken.png") in msg and "--strict" in msg
    assert not list(cache.glob("folder/folder-*.np[yz]"))  # nothing cached by the refused build
    capsys.readouterr()
    data = load_dataset("folder", root)
    assert len(data.train_files) + len(data.test_files) == 12  # the two bad files left out
    line = next(ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("folder:"))
    assert "2 unreadable images: cat/broken.png (" in line and "dog/fake.jpg (" in line
    assert [p for p, _ in data.split_record()["skipped_unreadable"]] == ["cat/broken.png", "dog/fake.jpg"]
    with pytest.raises(DataError, match=re.escape(str(root / "cat" / "broken.png"))):  # from the cache too
        load_dataset("folder", root, strict=True)


def test_cmyk_palette_sixteen_bit_and_transparent_images_are_converted(tmp_path):
    from PIL import Image

    root = tmp_path / "d"
    root.mkdir()
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(root / "cmyk.jpg")  # red
    Image.new("RGB", (32, 32), (0, 0, 200)).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "palette.png")
    Image.fromarray(np.full((32, 32), 65535, np.uint16)).save(root / "white16.png")
    assert Image.open(root / "white16.png").mode.startswith("I")
    Image.fromarray(np.full((32, 32), 32896, np.uint16)).save(root / "grey16.png")
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(root / "clear.png")  # fully transparent: white
    Image.new("RGB", (32, 32), (10, 200, 10)).save(root / "green.webp", lossless=True)
    Image.new("RGB", (32, 32), (200, 10, 10)).save(root / "red.bmp")
    data = load_dataset("folder", root, test_fraction=0.2)
    files = data.train_files + data.test_files
    x = torch.cat([data.train_images, data.test_images])
    px = {f: x[i, :, 16, 16].tolist() for i, f in enumerate(files)}
    assert len(files) == 7 and data.image_shape == (3, 32, 32)
    assert px["cmyk.jpg"][0] > 200 and px["cmyk.jpg"][1] < 40
    assert px["palette.png"] == [0, 0, 200] and px["white16.png"] == [255] * 3 and px["grey16.png"] == [128] * 3
    assert px["clear.png"] == [255] * 3 and px["green.webp"] == [10, 200, 10] and px["red.bmp"] == [200, 10, 10]


def test_empty_folder_and_inconsistent_splits_are_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty holds no images"):
        load_dataset("folder", tmp_path / "empty")
    make_folder(tmp_path / "a" / "train", n=3)
    make_folder(tmp_path / "a" / "test", classes=("cat",), n=2)
    with pytest.raises(DataError, match=r"a/test has no class folder 'dog' \(which .*a/train has\)"):
        load_dataset("folder", tmp_path / "a")
    (tmp_path / "a" / "test" / "dog").mkdir()
    with pytest.raises(DataError, match=r"class folder .*a/test/dog holds no images but .*a/train/dog does"):
        load_dataset("folder", tmp_path / "a")
    make_folder(tmp_path / "b" / "train", n=3)
    with pytest.raises(DataError, match=r"b has train/ but no test/"):
        load_dataset("folder", tmp_path / "b")
    root = make_folder(tmp_path / "c", n=4)
    make_folder(root / "solo", classes=(), n=1)
    with pytest.raises(DataError, match=r"class folder .*c/solo holds 1 image: a class needs at least two"):
        load_dataset("folder", root)


def test_train_subset_samples_every_class_and_keeps_files_aligned(tmp_path):
    root = make_folder(tmp_path / "d", classes=("a", "b", "c", "d"), n=10)
    data = load_dataset("folder", root)
    sub = data.subset_train(8)
    assert len(set(sub.train_labels.tolist())) >= 3
    assert sub.train_files == data.train_files[:8]
    assert all(sub.classes[y] == f.split("/")[0] for f, y in zip(sub.train_files, sub.train_labels.tolist()))


def test_the_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch, cache):
    root = make_folder(tmp_path / "d", n=6)
    first = load_dataset("folder", root)
    (npy,) = list((cache / "folder").glob("folder-*.npy"))

    def no_decoding(*a, **k):
        raise AssertionError("decoded although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(folder, "read_image", no_decoding)
        m.setattr(folder, "probe", no_decoding)
        again = load_dataset("folder", root)
    assert torch.equal(again.train_images, first.train_images)
    from PIL import Image

    f = root / first.train_files[0]
    Image.fromarray(np.full((40, 48, 3), 7, np.uint8)).save(f)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = load_dataset("folder", root)
    assert changed.train_files == first.train_files and int(changed.train_images[0].max()) == 7
    assert not npy.exists() and len(list((cache / "folder").glob("folder-*.npy"))) == 1  # the old one removed


def test_the_process_pool_writes_the_same_cache(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "d", n=12)
    serial = load_dataset("folder", root)
    monkeypatch.setenv("SIMVAE_CACHE_DIR", str(tmp_path / "cache2"))
    monkeypatch.setattr(image_cache, "CHUNK", 5)
    monkeypatch.setattr(image_cache, "n_workers", lambda: 2)
    pooled = load_dataset("folder", root)
    assert torch.equal(pooled.train_images, serial.train_images) and torch.equal(pooled.test_images, serial.test_images)


def test_a_cache_being_written_is_waited_for_never_read_half_written(capsys):
    entry = image_cache.CacheEntry("locktest", "k")
    want = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    built, result = [], {}

    def build(tmp):
        built.append(tmp)
        np.save(tmp, want)
        return {}

    with image_cache.exclusive(entry.folder / f".{entry.stem}.lock"):  # another process is building it
        np.save(entry.images_path, want)  # its images are in place, its metadata not yet
        assert entry.open() is None  # so the entry is not complete
        t = threading.Thread(target=lambda: result.update(got=entry.get(build, source="x")))
        t.start()
        waited = ""
        for _ in range(500):  # until the reader says it waits
            waited += capsys.readouterr().err
            if "waiting for another process" in waited:
                break
            t.join(0.01)
        assert "waiting for another process" in waited and t.is_alive()
        with open(entry.meta_path, "wb") as fh:  # the other process finishes: metadata renamed in last
            np.savez(fh, shape=np.array(want.shape), source=np.array("x"))
    t.join()
    assert not built and np.array_equal(result["got"][0], want)


# -- CIFAR-10's image folders follow the same rules --------------------------------------------


def test_cifar_folders_skip_hidden_folders_and_refuse_inconsistent_classes(tmp_path):
    import shutil

    from test_cifar import write_jpeg_folders

    from simvae.data.cifar import CLASSES

    base = write_jpeg_folders(tmp_path / "a", n_train=30, n_test=10)
    make_folder(base / "train" / ".ipynb_checkpoints", classes=(), n=1, size=(32, 32))
    data = load_dataset("cifar10", base, download=False)  # was refused: "holds 11 class folders"
    assert data.classes == sorted(CLASSES) and len(data.train_images) == 30
    shutil.rmtree(base / "train" / "truck")
    shutil.rmtree(base / "test" / "truck")
    with pytest.raises(DataError, match=r"holds 9 class folders with images"):  # was: .ipynb_checkpoints as class 0
        load_dataset("cifar10", base, download=False)
    base = write_jpeg_folders(tmp_path / "b", n_train=30, n_test=10)
    for f in (base / "test" / "cat").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"class folder .*b/test/cat holds no images but .*b/train/cat does"):
        load_dataset("cifar10", base, download=False)  # was: trained on 9 test classes silently
