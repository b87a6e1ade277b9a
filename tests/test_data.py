"""Tests for icsnn_core.data: loaders (digits, CIFAR pickles / image folders / archive, Fashion-MNIST IDX),
their error messages, batching and augmentation. Everything is built in tmp_path; nothing touches the network."""
from __future__ import annotations

import gzip
import importlib.util
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from icsnn_core import data as D
from icsnn_core.data import batches, load_dataset, load_digits, random_crop_flip, Split
from icsnn_core.errors import ConfigError, DataError


# --- digits ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


def test_digits_sizes_and_range(digits):
    assert len(digits.train) + len(digits.test) == 1797
    assert digits.num_classes == 10
    assert tuple(digits.train.x.shape[1:]) == (1, 8, 8)
    assert digits.in_channels == 1 and digits.image_size == 8
    for split in (digits.train, digits.test):
        x = split.images()
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert digits.train.images().max() == 1.0  # 16/16 occurs


def test_digits_split_is_a_partition_of_the_full_set(digits):
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    full = np.concatenate([bunch.images.reshape(len(bunch.images), -1) / 16.0, bunch.target[:, None]], axis=1)
    ours = np.concatenate([
        np.concatenate([s.images().reshape(len(s), -1).numpy().astype(np.float64), s.y.numpy()[:, None]], axis=1)
        for s in (digits.train, digits.test)])
    # same multiset of (image, label) rows: every sample is used exactly once across train + test
    key = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    np.testing.assert_allclose(key(ours), key(full), atol=1e-7)


def test_digits_split_deterministic_per_seed(digits):
    again = load_digits(seed=0)
    for a, b in ((digits.train, again.train), (digits.test, again.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    other = load_digits(seed=1)
    assert len(other.test) == len(digits.test)
    assert not torch.equal(other.test.x, digits.test.x)
    assert not torch.equal(other.train.x, digits.train.x)


def test_digits_seed_through_load_dataset(digits):
    ds = load_dataset("digits", seed=0)
    assert torch.equal(ds.test.x, digits.test.x)


def test_digits_stratified(digits):
    from sklearn.datasets import load_digits as sk_load_digits

    totals = np.bincount(sk_load_digits().target, minlength=10)
    test_counts = np.bincount(digits.test.y.numpy(), minlength=10)
    train_counts = np.bincount(digits.train.y.numpy(), minlength=10)
    np.testing.assert_array_equal(test_counts + train_counts, totals)
    for c in range(10):
        assert abs(test_counts[c] - 0.2 * totals[c]) <= 1, (c, test_counts[c], totals[c])


def test_digits_mean_std_from_train(digits):
    x = digits.train.x.numpy().astype(np.float64) * digits.train.scale  # [N, 1, 8, 8]
    mean = x.mean(axis=(0, 2, 3))
    std = x.std(axis=(0, 2, 3), ddof=1)  # torch.std's default (unbiased); ddof=0 differs by ~5e-6 relative
    assert len(digits.mean) == len(digits.std) == 1
    assert digits.mean == pytest.approx(tuple(mean), rel=1e-9, abs=1e-12)
    assert digits.std == pytest.approx(tuple(std), rel=1e-9, abs=1e-12)
    assert digits.std == pytest.approx(tuple(x.std(axis=(0, 2, 3))), rel=1e-4)
    # measured on train only, not on train + test
    both = np.concatenate([x, digits.test.x.numpy().astype(np.float64)])
    assert digits.mean[0] != pytest.approx(both.mean(), rel=1e-9, abs=1e-12)


def test_unknown_dataset_is_config_error():
    with pytest.raises(ConfigError, match="mnist2"):
        load_dataset("mnist2")


# --- CIFAR pickle folders --------------------------------------------------------------------------

def _cifar_images(n: int, offset: int) -> np.ndarray:
    """n distinct uint8 images in the official flat layout [n, 3072] (R plane, G plane, B plane)."""
    rng = np.random.default_rng(offset)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _dump(path, d):
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


@pytest.fixture
def cifar10_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches_ = {}
    for i in range(1, 6):
        x = _cifar_images(4, i)
        labels = [(i * 4 + k) % 10 for k in range(4)]
        _dump(folder / f"data_batch_{i}", {b"batch_label": b"training batch", b"data": x, b"labels": labels,
                                           b"filenames": [b"f%d.png" % k for k in range(4)]})
        batches_[f"data_batch_{i}"] = (x, labels)
    x = _cifar_images(4, 99)
    _dump(folder / "test_batch", {b"data": x, b"labels": [9, 8, 7, 6]})
    batches_["test_batch"] = (x, [9, 8, 7, 6])
    return tmp_path, folder, batches_


def test_cifar10_from_pickles(cifar10_pickles):
    root, folder, raw = cifar10_pickles
    ds = load_dataset("cifar10", root)
    assert ds.name == "cifar10" and ds.num_classes == 10
    assert tuple(ds.train.x.shape) == (20, 3, 32, 32)
    assert tuple(ds.test.x.shape) == (4, 3, 32, 32)
    assert ds.train.x.dtype == torch.uint8
    assert ds.train.scale == pytest.approx(1 / 255)
    # labels in batch order
    expected_train_labels = sum((raw[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert ds.train.y.tolist() == expected_train_labels
    assert ds.test.y.tolist() == [9, 8, 7, 6]
    assert ds.train.y.dtype == torch.long
    # image 2 of data_batch_3 is train index 2*4 + 2 = 10; the first 1024 bytes are the red plane, row-major
    flat = raw["data_batch_3"][0][2]
    img = ds.train.x[10]
    assert torch.equal(img[0].flatten(), torch.from_numpy(flat[:1024].copy()))
    assert torch.equal(img[1].flatten(), torch.from_numpy(flat[1024:2048].copy()))
    assert torch.equal(img[2].flatten(), torch.from_numpy(flat[2048:].copy()))
    assert int(img[0, 0, 1]) == int(flat[1]) and int(img[0, 1, 0]) == int(flat[32])
    assert int(img[1, 0, 0]) == int(flat[1024])
    # scaled images
    imgs = ds.test.images()
    assert imgs.dtype == torch.float32
    assert torch.allclose(imgs[3], torch.from_numpy(raw["test_batch"][0][3].reshape(3, 32, 32)).float() / 255)
    assert imgs.min() >= 0 and imgs.max() <= 1
    # the folder itself works as root, too
    ds2 = load_dataset("cifar10", folder)
    assert torch.equal(ds2.train.x, ds.train.x)
    # mean/std measured on train
    x = ds.train.x.numpy().astype(np.float64) / 255
    assert ds.mean == pytest.approx(tuple(x.mean(axis=(0, 2, 3))), rel=1e-6)  # float32 scaling
    assert len(ds.std) == 3


def test_cifar100_from_pickles(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    xtr, xte = _cifar_images(6, 1), _cifar_images(3, 2)
    _dump(folder / "train", {b"data": xtr, b"fine_labels": [0, 17, 42, 99, 5, 63], b"coarse_labels": [0] * 6})
    _dump(folder / "test", {b"data": xte, b"fine_labels": [99, 1, 50], b"coarse_labels": [0] * 3})
    ds = load_dataset("cifar100", tmp_path)
    assert ds.num_classes == 100
    assert tuple(ds.train.x.shape) == (6, 3, 32, 32) and tuple(ds.test.x.shape) == (3, 3, 32, 32)
    assert ds.train.y.tolist() == [0, 17, 42, 99, 5, 63]
    assert ds.test.y.tolist() == [99, 1, 50]
    assert torch.equal(ds.test.x[1], torch.from_numpy(xte[1].reshape(3, 32, 32)))


def test_cifar10_missing_batch_file(cifar10_pickles):
    root, folder, _ = cifar10_pickles
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", root)
    assert "Fix:" in str(e.value) and "data_batch_3" in str(e.value)


# --- CIFAR-10 image folders and archive ------------------------------------------------------------

def _make_image_folder(base, n_train=2, n_test=1, classes=D.CIFAR10_CLASSES):
    """train/<class>/*.png and test/<class>/*.png; returns {(part, class): [HWC uint8 arrays in file order]}."""
    rng = np.random.default_rng(0)
    made = {}
    for cls in reversed(classes):  # creation order unlike sorted order: the loader must sort
        for part, n in (("train", n_train), ("test", n_test)):
            d = base / part / cls
            d.mkdir(parents=True)
            arrs = []
            for k in range(n):
                a = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(a, "RGB").save(d / f"{k:04d}.png")
                arrs.append(a)
            made[(part, cls)] = arrs
    return made


def _check_image_folder_dataset(ds, made, n_train=2, n_test=1):
    classes = sorted(D.CIFAR10_CLASSES)
    assert ds.num_classes == 10
    assert tuple(ds.train.x.shape) == (10 * n_train, 3, 32, 32)
    assert tuple(ds.test.x.shape) == (10 * n_test, 3, 32, 32)
    assert ds.train.scale == pytest.approx(1 / 255)
    for part, split, n in (("train", ds.train, n_train), ("test", ds.test, n_test)):
        # the loader reads class after class, then applies a fixed shuffle (seed 0) so classes interleave
        order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
        i = 0
        for label, cls in enumerate(classes):
            for a in made[(part, cls)]:
                j = int((order == i).nonzero())
                assert int(split.y[j]) == label
                assert torch.equal(split.x[j], torch.from_numpy(a).permute(2, 0, 1)), (part, cls, i)
                i += 1
        assert i == len(split)
        assert len(set(split.y[: max(2, len(split) // 2)].tolist())) > 1  # the first images are not one class


def test_cifar10_image_folder_round_trip(tmp_path):
    made = _make_image_folder(tmp_path / "imgs")
    ds = load_dataset("cifar10", tmp_path / "imgs")
    _check_image_folder_dataset(ds, made)
    # one level up also works (the loader looks in sub-folders)
    ds2 = load_dataset("cifar10", tmp_path)
    assert torch.equal(ds2.train.x, ds.train.x) and torch.equal(ds2.test.y, ds.test.y)


def test_cifar10_image_folder_missing_test_class(tmp_path):
    _make_image_folder(tmp_path)
    for f in (tmp_path / "test" / "horse").iterdir():
        f.unlink()
    (tmp_path / "test" / "horse").rmdir()
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path)
    assert "Fix:" in str(e.value) and "test/horse" in str(e.value)


def test_cifar10_image_folder_missing_train_class(tmp_path):
    _make_image_folder(tmp_path, classes=[c for c in D.CIFAR10_CLASSES if c != "frog"])
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path)
    msg = str(e.value)
    assert "Fix:" in msg and "train/" in msg and "9 class folders" in msg and "10" in msg


def test_cifar10_from_tar_xz_archive(tmp_path, monkeypatch):
    src = tmp_path / "src" / "cifar10-jpeg"
    made = _make_image_folder(src)
    archive_dir = tmp_path / "archives"
    archive_dir.mkdir()
    archive = archive_dir / "cifar10-jpeg.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(src, arcname="cifar10-jpeg")
    cache = tmp_path / "cache"
    monkeypatch.setenv("ICSNN_DATA_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # a stray default ./data would land here, and be caught below

    ds = load_dataset("cifar10", archive)
    _check_image_folder_dataset(ds, made)
    # extracted into the cache, not beside the archive, and no temp folders left behind
    assert sorted(p.name for p in archive_dir.iterdir()) == ["cifar10-jpeg.tar.xz"]
    assert sorted(p.name for p in cache.iterdir()) == ["cifar10-jpeg"]
    assert (cache / "cifar10-jpeg" / "train" / "airplane").is_dir()
    assert not (tmp_path / "data").exists()

    # second load reuses the extraction: the archive is not opened again, and edits to the cache show
    def no_tar(*a, **k):
        raise AssertionError("archive extracted a second time")

    monkeypatch.setattr(D.tarfile, "open", no_tar)
    marker = cache / "cifar10-jpeg" / "test" / "airplane" / "0000.png"
    Image.fromarray(np.full((32, 32, 3), 7, dtype=np.uint8), "RGB").save(marker)
    ds2 = load_dataset("cifar10", archive)
    assert torch.equal(ds2.train.x, ds.train.x)
    first_airplane = int((torch.randperm(len(ds2.test), generator=torch.Generator().manual_seed(0)) == 0).nonzero())
    assert torch.equal(ds2.test.x[first_airplane], torch.full((3, 32, 32), 7, dtype=torch.uint8))
    assert sorted(p.name for p in cache.iterdir()) == ["cifar10-jpeg"]


# --- CIFAR errors ----------------------------------------------------------------------------------

def test_cifar10_missing_folder(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", missing)
    assert "Fix:" in str(e.value) and str(missing) in str(e.value)


def test_cifar10_empty_folder(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path)
    assert "Fix:" in str(e.value) and "cifar-10-batches-py" in str(e.value)


def test_cifar_root_none_without_download():
    for name in ("cifar10", "cifar100"):
        with pytest.raises(DataError) as e:
            load_dataset(name, None)
        msg = str(e.value)
        assert "Fix:" in msg and "--data-root" in msg and name in msg


def test_data_error_is_file_not_found():
    with pytest.raises(FileNotFoundError):
        load_dataset("cifar10", None)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None,
                    reason="torchvision is importable: --download would try the network")
def test_cifar_download_without_torchvision_fails_fast(tmp_path, monkeypatch):
    import socket

    def no_network(*a, **k):
        raise AssertionError("a test touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(DataError) as e:
        D.load_cifar("cifar10", tmp_path / "dl", download=True)
    assert "Fix:" in str(e.value) and "torchvision" in str(e.value)


# --- Fashion-MNIST ---------------------------------------------------------------------------------

def _write_idx(path, arr: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_dir(tmp_path):
    rng = np.random.default_rng(3)
    arrays = {
        "train-images-idx3-ubyte.gz": (rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), 0x00000803),
        "train-labels-idx1-ubyte.gz": (np.array([0, 9, 3, 3, 7], dtype=np.uint8), 0x00000801),
        "t10k-images-idx3-ubyte.gz": (rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), 0x00000803),
        "t10k-labels-idx1-ubyte.gz": (np.array([1, 2, 8], dtype=np.uint8), 0x00000801),
    }
    for name, (a, magic) in arrays.items():
        _write_idx(tmp_path / name, a, magic)
    return tmp_path, {k: v[0] for k, v in arrays.items()}


def test_fashion_mnist_from_idx(fashion_dir):
    root, arrays = fashion_dir
    ds = load_dataset("fashion-mnist", root)
    assert ds.name == "fashion-mnist" and ds.num_classes == 10
    assert tuple(ds.train.x.shape) == (5, 1, 28, 28) and tuple(ds.test.x.shape) == (3, 1, 28, 28)
    assert torch.equal(ds.train.x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte.gz"]))
    assert torch.equal(ds.test.x[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte.gz"]))
    assert ds.train.y.tolist() == [0, 9, 3, 3, 7] and ds.test.y.tolist() == [1, 2, 8]
    assert ds.train.y.dtype == torch.long
    assert ds.train.scale == pytest.approx(1 / 255)
    assert ds.in_channels == 1 and ds.image_size == 28


def test_fashion_mnist_uncompressed_idx(fashion_dir):
    root, arrays = fashion_dir
    for name in list(arrays):
        gz = root / name
        (root / name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    ds = load_dataset("fashion-mnist", root)
    assert torch.equal(ds.test.x[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte.gz"]))


def test_fashion_mnist_missing_file(fashion_dir):
    root, _ = fashion_dir
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist", root)
    assert "Fix:" in str(e.value) and "t10k-labels-idx1-ubyte" in str(e.value)


def test_fashion_mnist_bad_idx_header(fashion_dir):
    root, _ = fashion_dir
    with gzip.open(root / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">I", 0x00000D01) + struct.pack(">I", 5) + bytes(20))  # float32 dtype code
    with pytest.raises(DataError, match="Fix:"):
        load_dataset("fashion-mnist", root)


def test_fashion_mnist_truncated_idx_is_data_error(fashion_dir):
    root, arrays = fashion_dir
    path = root / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    with gzip.open(path, "wb") as f:
        f.write(raw[:-100])  # a cut-off copy: the header promises 5 x 28 x 28 bytes
    with pytest.raises(DataError, match="Fix:"):
        load_dataset("fashion-mnist", root)


def test_cifar10_truncated_batch_is_data_error(cifar10_pickles):
    root, folder, _ = cifar10_pickles
    path = folder / "data_batch_2"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match="Fix:"):
        load_dataset("cifar10", root)


# --- batching and augmentation ---------------------------------------------------------------------

def _toy_split(n=23):
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return Split(x, torch.arange(n), 1.0)


def test_batches_without_shuffle_in_order():
    s = _toy_split()
    got = list(batches(s, 5))
    assert [len(y) for _, y in got] == [5, 5, 5, 5, 3]
    ys = torch.cat([y for _, y in got])
    assert torch.equal(ys, torch.arange(23))
    for x, y in got:
        assert x.dtype == torch.float32
        assert torch.equal(x[:, 0, 0, 0], y.float())  # images travel with their labels


def test_batches_shuffle_covers_every_index_once():
    s = _toy_split()
    got = list(batches(s, 4, shuffle=True, generator=torch.Generator().manual_seed(5)))
    ys = torch.cat([y for _, y in got])
    assert sorted(ys.tolist()) == list(range(23))
    assert not torch.equal(ys, torch.arange(23))
    for x, y in got:
        assert torch.equal(x[:, 0, 0, 0], y.float())


def test_batches_same_seed_same_order():
    s = _toy_split(50)
    order = lambda seed: torch.cat([y for _, y in batches(s, 8, shuffle=True,  # noqa: E731
                                                           generator=torch.Generator().manual_seed(seed))])
    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))


def test_batches_rejects_bad_batch_size():
    with pytest.raises(ConfigError):
        list(batches(_toy_split(), 0))


def _matches_some_crop(out: torch.Tensor, img: torch.Tensor, padding: int) -> list[tuple[int, int, bool]]:
    c, h, w = img.shape
    padded = torch.nn.functional.pad(img, (padding,) * 4)
    hits = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            for flip in (False, True):
                cand = crop.flip(-1) if flip else crop
                if torch.equal(cand, out):
                    hits.append((dy, dx, flip))
    return hits


def test_random_crop_flip_is_a_padded_crop_possibly_flipped():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 10, 10, generator=g) + 0.1  # strictly positive: padding zeros are recognisable
    out = random_crop_flip(x, torch.Generator().manual_seed(1), padding=4)
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(len(x)):
        hits = _matches_some_crop(out[i], x[i], 4)
        assert hits, f"output image {i} is not a (flipped) crop of the padded input"
    assert not torch.equal(out, x)  # something was cropped or flipped (fixed seed)


def test_random_crop_flip_padding_zero_is_identity_or_flip():
    x = torch.rand(8, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    out = random_crop_flip(x, torch.Generator().manual_seed(0), padding=0)
    for i in range(len(x)):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))


def test_random_crop_flip_deterministic():
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = random_crop_flip(x, torch.Generator().manual_seed(3))
    b = random_crop_flip(x, torch.Generator().manual_seed(3))
    c = random_crop_flip(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_batches_augment_deterministic_and_shape_preserving():
    s = Split(torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)),
              torch.arange(20), 1 / 255)
    run = lambda: list(batches(s, 6, shuffle=True, augment=True,  # noqa: E731
                               generator=torch.Generator().manual_seed(9)))
    a, b = run(), run()
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert tuple(xa.shape[1:]) == (3, 8, 8)
    for x, y in a:
        for i in range(len(y)):
            assert _matches_some_crop(x[i], s.images(y[i:i + 1])[0], 4)


class _RunsCode:
    """A pickle payload: unpickling it would call os.system (it must never be called)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_cifar_pickle_that_would_run_code_is_refused_unrun(cifar10_pickles):
    root, folder, _ = cifar10_pickles
    marker = root / "pwned"
    _dump(folder / "test_batch", {b"data": _RunsCode(marker), b"labels": [1]})
    with pytest.raises(D.DataError, match=r"test_batch is unreadable .*names posix\.system.*refused unread"):
        D.load_dataset("cifar10", root)
    assert not marker.exists()


def test_the_restricted_unpickler_reads_numpy_arrays_in_every_protocol(cifar10_pickles):
    root, folder, raw = cifar10_pickles
    x = _cifar_images(4, 7)
    for protocol in (2, 4, 5):
        with open(folder / "test_batch", "wb") as f:
            pickle.dump({b"data": x, b"labels": np.array([1, 2, 3, 4])}, f, protocol=protocol)
        ds = D.load_dataset("cifar10", root)
        assert torch.equal(ds.test.x, torch.from_numpy(x.reshape(-1, 3, 32, 32)))
        assert ds.test.y.tolist() == [1, 2, 3, 4]


def test_the_restricted_unpickler_reads_batches_written_by_numpy_1(cifar10_pickles):
    """The official batches name numpy.core.multiarray._reconstruct (numpy 1), which numpy 2 calls numpy._core."""
    root, folder, _ = cifar10_pickles
    x = _cifar_images(4, 7)
    data = pickle.dumps({b"data": x, b"labels": [1, 2, 3, 4]}, protocol=2)
    if b"numpy._core.multiarray" in data:
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in data
    (folder / "test_batch").write_bytes(data)
    assert torch.equal(D.load_dataset("cifar10", root).test.x, torch.from_numpy(x.reshape(-1, 3, 32, 32)))
