"""Datasets held in memory as tensors, batched and augmented on the tensors' own device.

Sources: scikit-learn's digits (embedded, no download: the default); CIFAR-10 / CIFAR-100 from the
``cifar-10-batches-py`` / ``cifar-100-python`` pickle folders, from an image-folder layout
(``train/<class>/*.jpg``, ``test/<class>/*.jpg``, as in the JPEG copy ``cifar10-jpeg.tar.xz``), from
that archive itself, or through torchvision's own classes when the user asks to download; Fashion-MNIST
from its IDX files. Images are kept in [0, 1] (``uint8`` plus a scale); per-channel normalisation lives
in the model (:class:`icsnn_core.models.Normalize`), with mean/std measured on the training split.
"""
from __future__ import annotations

import gzip
import lzma
import os
import pickle
import shutil
import socket
import struct
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Union

import numpy as np
import torch

from .errors import ConfigError, DataError

DATASETS = ("digits", "cifar10", "cifar100", "fashion-mnist")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@dataclass
class Split:
    """One split: inputs ``x`` (``uint8`` or float; images ``[N, C, H, W]`` or feature vectors ``[N, F]``; for
    images ``x * scale`` is in [0, 1]) and integer labels ``y``. Build one from your tensors with
    :meth:`from_tensors`; every function that takes data also takes what :func:`as_split` accepts."""

    x: torch.Tensor
    y: torch.Tensor
    scale: float

    @classmethod
    def from_tensors(cls, x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> "Split":
        """A split from inputs and labels (tensors or numpy arrays). ``uint8`` inputs are read as 0..255 and
        scaled by 1/255 (as images are stored); float inputs are taken as they are."""
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        if x.dim() < 2 or len(x) != len(y):
            raise ConfigError(f"inputs shaped {tuple(x.shape)} and labels shaped {tuple(y.shape)} do not pair up. "
                              "Fix: pass x as [N, ...] (images [N, C, H, W] or features [N, F]) and y as [N] labels")
        if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ConfigError(f"labels must be a 1-D tensor of integer class indices, got dtype {y.dtype} shaped "
                              f"{tuple(y.shape)}. Fix: pass y as class indices, e.g. y.argmax(1).long() for one-hot labels")
        if x.dtype == torch.uint8:
            return cls(x, y.long(), 1 / 255)
        if not x.is_floating_point():
            raise ConfigError(f"inputs of dtype {x.dtype} are neither images in uint8 (0..255) nor floats. Fix: pass "
                              "x.float() (values in [0, 1] for images) or uint8 pixels")
        return cls(x, y.long(), 1.0)

    def __len__(self) -> int:
        return len(self.y)

    def images(self, idx: torch.Tensor | slice | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
        x = self.x if idx is None else self.x[idx]
        return x.to(device).float().mul_(self.scale)

    def subset(self, n: int | None) -> "Split":
        """The first ``n`` samples (all when ``n`` is None or larger than the split)."""
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise ConfigError(f"a subset needs at least one sample, got n={n}. Fix: e.g. --n-test 1000, or leave it out "
                              "for the whole split")
        return Split(self.x[:n], self.y[:n], self.scale)


@dataclass
class Dataset:
    """A dataset's train and test splits with what a model needs to know about them."""

    name: str
    train: Split
    test: Split
    num_classes: int
    source: str  # where the images came from, recorded with every result
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.mean:
            self.mean, self.std = channel_stats(self.train)

    @property
    def in_channels(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.x.shape[-1])


def channel_stats(split: Split, max_images: int = 10000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of the first ``max_images`` images, in [0, 1] units."""
    x = split.images(slice(0, max_images)).double()
    dims = (0, *range(2, x.dim()))  # every axis but the channels (the features of [N, F] inputs)
    mean = x.mean(dim=dims)
    std = x.std(dim=dims).clamp_min(1e-6)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


DataLike = Union[Split, "torch.utils.data.Dataset", "torch.utils.data.DataLoader", tuple]


def as_split(data: object) -> Split:
    """The :class:`Split` that ``data`` holds: a Split as is; an ``(x, y)`` pair of tensors or arrays, a
    ``TensorDataset``, any map-style dataset of ``(x, y)`` samples or a ``DataLoader`` over one are collected in
    order (a shuffling loader's order is its first pass). Inputs are taken as :meth:`Split.from_tensors` does."""
    from torch.utils.data import DataLoader, TensorDataset

    if isinstance(data, Split):
        return data
    if isinstance(data, Dataset):
        raise ConfigError(f"got the whole dataset {data.name!r}; a split is needed. Fix: pass data.train (thresholds, "
                          "calibration) or data.test (accuracy)")
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return Split.from_tensors(*data)
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        return Split.from_tensors(*data.tensors)
    if isinstance(data, DataLoader) or (isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__")):
        pairs = list(data) if isinstance(data, DataLoader) else [data[i] for i in range(len(data))]
        if not pairs or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
            raise ConfigError(f"{type(data).__name__} must yield (inputs, labels) pairs. Fix: return (x, y) from the "
                              "dataset's __getitem__")
        stack = torch.cat if isinstance(data, DataLoader) else torch.stack
        return Split.from_tensors(stack([torch.as_tensor(p[0]) for p in pairs]),
                                  stack([torch.as_tensor(p[1]) for p in pairs]))
    raise ConfigError(f"cannot read data from a {type(data).__name__}. Fix: pass an icsnn_core.Split, an (x, y) pair "
                      "of tensors, a torch TensorDataset or a DataLoader yielding (x, y) batches")


# --- batching and augmentation -------------------------------------------------------------------

def batches(split: Split, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
            augment: bool = False, device: str | torch.device = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images in [0, 1], labels)`` on ``device``; shuffling and augmentation draw from ``generator``."""
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}. Fix: e.g. --batch-size 128")
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        x = split.images(idx, device)
        if augment:
            x = random_crop_flip(x, generator)
        yield x, split.y[idx].to(device)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator | None = None, padding: int = 4) -> torch.Tensor:
    """Random crop after zero padding plus random horizontal flip, per sample, vectorised on x's device.

    Random draws come from the CPU ``generator`` so that results do not depend on the device.
    """
    b, c, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    return padded[torch.arange(b, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


# --- loaders ---------------------------------------------------------------------------------------

def load_dataset(name: str, root: str | os.PathLike | None = None, *, download: bool = False,
                 seed: int = 0) -> Dataset:
    """Load a dataset by name; ``root`` is a folder (or, for CIFAR-10, the JPEG archive) holding it.

    ``download=True`` lets torchvision try to fetch CIFAR; without network that fails at once with a
    message saying how to supply a local copy. ``seed`` fixes the train/test split of ``digits``.
    """
    if name == "digits":
        return load_digits(seed)
    if name in ("cifar10", "cifar100"):
        return load_cifar(name, root, download=download)
    if name == "fashion-mnist":
        return load_fashion_mnist(root or FASHION_MNIST_DIR)
    if is_data_path(name):
        path = Path(name)
        if not path.exists():
            raise DataError(f"dataset {name} does not exist. Fix: check the path; a dataset of your own is an .npz "
                            "file (x_train, y_train, x_test, y_test) or a folder with train/<class>/ and test/<class>/")
        return load_npz(path) if path.is_file() else load_image_folder(path)
    raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, or give the path of an .npz "
                      "file or of an image folder with train/ and test/")


def is_data_path(name: str) -> bool:
    """Whether a dataset name is a user's file or folder rather than a built-in dataset."""
    return name not in DATASETS and (name.endswith(".npz") or os.sep in name or "/" in name or Path(name).exists())


def dataset_name(name: str) -> str:
    """The name a dataset gets in results and checkpoints: a built-in's name, a user's file's or folder's stem."""
    return Path(name.rstrip("/")).stem if is_data_path(name) else name


NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str | os.PathLike) -> Dataset:
    """A user's dataset from an ``.npz`` file with arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    Inputs are images ``[N, C, H, W]`` or ``[N, H, W]`` (one channel), or feature vectors ``[N, F]``, as ``uint8``
    (0..255, scaled by 1/255) or floats in [0, 1]; labels are integer class indices 0..K-1. Read with
    ``allow_pickle=False``: the file cannot run code."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # noqa: BLE001 - not a zip, truncated, an object array: all mean unreadable
        raise DataError(f"{path} is not a readable .npz file ({type(e).__name__}: {e}). Fix: write it with "
                        "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...) from numeric arrays") from e
    missing = [k for k in NPZ_ARRAYS if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks the arrays {', '.join(missing)} (it holds {', '.join(arrays) or 'none'}). Fix: "
                        "save x_train, y_train, x_test and y_test with numpy.savez")
    splits = []
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim == 3:
            x = x[:, None]  # [N, H, W]: one channel
        if x.ndim not in (2, 4) or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
            raise DataError(f"{path}: x_{part} is shaped {arrays[f'x_{part}'].shape} and y_{part} {y.shape}. Fix: "
                            "images [N, C, H, W] or [N, H, W] (or features [N, F]) and N integer labels, N >= 1")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise DataError(f"{path}: y_{part} must hold class indices 0..K-1 as integers, got dtype {y.dtype}"
                            f"{'' if not np.issubdtype(y.dtype, np.integer) else f' from {y.min()}'}. Fix: store "
                            "y.astype('int64')")
        if x.dtype != np.uint8:
            if not np.issubdtype(x.dtype, np.floating):
                raise DataError(f"{path}: x_{part} has dtype {x.dtype}. Fix: store images as uint8 (0..255) or as "
                                "floats in [0, 1]")
            if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
                raise DataError(f"{path}: x_{part} holds values from {x.min():.3g} to {x.max():.3g}, outside [0, 1]. "
                                "Fix: store the raw images in [0, 1] (or uint8) and normalise inside the model, e.g. "
                                "a first layer that subtracts the mean (icsnn_core.models.Normalize)")
            x = x.astype(np.float32)
        splits.append(Split.from_tensors(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))))
    if splits[0].x.shape[1:] != splits[1].x.shape[1:]:
        raise DataError(f"{path}: train inputs are shaped {tuple(splits[0].x.shape[1:])}, test inputs "
                        f"{tuple(splits[1].x.shape[1:])}. Fix: both splits must hold inputs of one shape")
    classes = int(max(splits[0].y.max(), splits[1].y.max())) + 1
    return Dataset(dataset_name(str(path)), splits[0], splits[1], classes, source=f"npz file {path.name}")


def load_image_folder(folder: str | os.PathLike) -> Dataset:
    """A user's dataset from ``folder/train/<class>/*`` and ``folder/test/<class>/*`` (.png or .jpg, one size);
    classes are the sorted folder names. Grey images give one channel, others three (RGB)."""
    folder = Path(folder)

    def fail(what: str) -> DataError:
        return DataError(f"image folder {folder}: {what}. Fix: lay it out as train/<class>/*.png and "
                         "test/<class>/*.png (the same class folders in both), every image of one size")

    if not ((folder / "train").is_dir() and (folder / "test").is_dir()):
        raise fail("no train/ and test/ folders")
    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    if not classes:
        raise fail("train/ holds no class folders")
    return _read_image_folder(folder.name, folder, classes, fail)


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 1,797 8x8 digits (ships with the package), split 80/20 per class with ``seed``."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for c in range(10):  # stratified: the same fraction of every class in the test split
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    tr = torch.cat(train_idx)[torch.randperm(sum(len(i) for i in train_idx), generator=g)]
    te = torch.sort(torch.cat(test_idx)).values
    return Dataset("digits", Split(x[tr], y[tr], 1.0), Split(x[te], y[te], 1.0), 10,
                   source=f"sklearn.datasets.load_digits (scikit-learn); stratified 80/20 split; seed {seed}")


def _missing(name: str, root: object, what: str) -> DataError:
    hint = {
        "cifar10": "pass --data-root pointing to a folder with cifar-10-batches-py/ (the python pickle batches), "
                   "to an image folder with train/<class>/*.jpg and test/<class>/*.jpg, or to the "
                   "cifar10-jpeg.tar.xz archive; or pass --download where the internet is reachable",
        "cifar100": "pass --data-root pointing to a folder with cifar-100-python/ (train, test pickles); or "
                    "pass --download where the internet is reachable",
        "fashion-mnist": "pass --data-root pointing to the folder of the IDX files "
                         "(train-images-idx3-ubyte[.gz] etc.; on Debian: apt-get install dataset-fashion-mnist)",
    }[name]
    return DataError(f"{name}: {what} (looked in {root}). Fix: {hint}")


def load_cifar(name: str, root: str | os.PathLike | None, *, download: bool = False) -> Dataset:
    if root is None and not download:
        raise _missing(name, "no --data-root given", "no local copy named")
    root_path = Path(root) if root is not None else Path("data")
    if root_path.is_file() and root_path.name.endswith((".tar.xz", ".tar.gz", ".tgz", ".tar")):
        root_path = extract_archive(root_path, cache_dir())
    pickle_dir = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    for candidate in (root_path / pickle_dir, root_path):
        if (candidate / ("test_batch" if name == "cifar10" else "test")).exists():
            return _cifar_from_pickles(name, candidate)
    for candidate in (root_path, *sorted(p for p in root_path.glob("*") if p.is_dir())):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return _cifar_from_image_folder(name, candidate)
    if download:
        return _cifar_from_torchvision(name, root_path)
    raise _missing(name, root_path, "no pickle batches and no train/ + test/ image folders found")


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR batch holds (dicts, lists, bytes, str, ints and numpy arrays) and nothing else.

    A pickle can call any importable function while it loads: a crafted ``test_batch`` in ``--data-root`` would
    run code on the user's machine. Every global a pickle names passes through ``find_class``; only numpy's
    array reconstruction and ``_codecs.encode`` (how Python 3 writes bytes in protocol 2) are admitted."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which no CIFAR batch holds (refused unread: "
                                         "a pickle can run code)")
        return super().find_class(module, name)


def _cifar_from_pickles(name: str, folder: Path) -> Dataset:
    files = ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]) if name == "cifar10" else (["train"], ["test"])
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    splits = []
    for group in files:
        xs, ys = [], []
        for f in group:
            path = folder / f
            if not path.exists():
                raise _missing(name, folder, f"file {f} is missing from the pickle folder")
            try:
                with open(path, "rb") as fh:
                    d = _CifarUnpickler(fh, encoding="bytes").load()
                xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(d[label_key], dtype=np.int64))
            except Exception as e:  # noqa: BLE001 - truncated or foreign file: any failure means unreadable
                raise _missing(name, folder, f"file {f} is unreadable ({type(e).__name__}: {e})") from e
        splits.append(Split(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)), 1 / 255))
    return Dataset(name, splits[0], splits[1], 10 if name == "cifar10" else 100, source=f"pickle batches in {folder}")


def _cifar_from_image_folder(name: str, folder: Path) -> Dataset:
    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    expected = 10 if name == "cifar10" else 100
    if len(classes) != expected:
        raise _missing(name, folder, f"train/ holds {len(classes)} class folders, expected {expected}")
    return _read_image_folder(name, folder, classes, lambda what: _missing(name, folder, what), rgb=True)


def _read_image_folder(name: str, folder: Path, classes: list[str], fail, rgb: bool = False) -> Dataset:
    """Read train/ and test/ of an image folder; ``fail(what)`` makes the error for a missing part."""
    from PIL import Image

    splits, jpeg, mode = [], False, "RGB" if rgb else None
    for part in ("train", "test"):
        xs, ys = [], []
        for label, cls in enumerate(classes):
            d = folder / part / cls
            files = sorted(d.glob("*.jpg")) + sorted(d.glob("*.png")) if d.is_dir() else []
            if not files:
                raise fail(f"{part}/{cls}/ is missing or holds no images")
            jpeg |= any(f.suffix == ".jpg" for f in files)
            for f in files:
                try:
                    with Image.open(f) as im:
                        mode = mode or ("L" if im.mode in ("1", "L", "I", "I;16") else "RGB")  # the first image decides
                        xs.append(np.asarray(im.convert(mode), dtype=np.uint8))
                except (OSError, ValueError) as e:  # truncated, corrupt or not an image at all
                    raise DataError(f"{f} is not a readable image ({type(e).__name__}: {e}). Fix: replace or "
                                    "delete it, or re-extract the original archive") from e
                if xs[-1].shape != xs[0].shape:
                    raise DataError(f"{f} is {xs[-1].shape[1]}x{xs[-1].shape[0]} pixels, the images before it "
                                    f"{xs[0].shape[1]}x{xs[0].shape[0]}. Fix: every image of a dataset must have "
                                    "one size")
            ys += [label] * len(files)
        x = torch.from_numpy(np.stack(xs))
        x = (x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)).contiguous()
        # folders hold one class after another; a fixed shuffle makes "the first n images" (threshold and
        # calibration images, a test subset) a class-balanced sample, as in the original interleaved batches
        order = torch.randperm(len(ys), generator=torch.Generator().manual_seed(0))
        splits.append(Split(x[order], torch.tensor(ys, dtype=torch.long)[order], 1 / 255))
    kind = "JPEG images (a lossy copy: accuracy runs below the original pixels')" if jpeg else "images"
    return Dataset(name, splits[0], splits[1], len(classes), source=f"image folder {folder.name}/ of {kind}")


def _cifar_from_torchvision(name: str, root: Path) -> Dataset:
    try:
        from torchvision import datasets as tvd  # optional: may fail to import on a CPU-only torch
    except Exception as e:  # noqa: BLE001 - any import failure means: not available here
        raise _missing(name, root, f"--download needs torchvision, which failed to import ({e})") from e
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)  # fail fast instead of hanging where the host is unreachable
    try:
        cls(str(root), train=True, download=True)
        cls(str(root), train=False, download=True)
    except Exception as e:  # noqa: BLE001
        raise _missing(name, root, f"download failed ({type(e).__name__}: {e})") from e
    finally:
        socket.setdefaulttimeout(old)
    return load_cifar(name, root)


def cache_dir() -> Path:
    """Where archives are extracted: ``$ICSNN_DATA_CACHE`` or ``./data`` (never next to the archive)."""
    return Path(os.environ.get("ICSNN_DATA_CACHE", "data"))


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest/<archive stem>`` once (atomically: a temp folder, then a rename)."""
    stem = archive.name.split(".tar")[0].split(".tgz")[0]
    target = dest / stem
    if target.exists():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{stem}-"))
    try:
        try:
            with tarfile.open(archive) as tar:
                for m in tar.getmembers():  # refuse members that would land outside the target folder
                    if m.name.startswith("/") or ".." in Path(m.name).parts or m.issym() or m.islnk():
                        raise DataError(f"{archive} holds an unsafe member {m.name!r}. Fix: use the original archive")
                tar.extractall(tmp)
        except DataError:
            raise
        except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as e:  # junk, truncated, corrupt
            raise DataError(f"{archive} is not a readable archive ({type(e).__name__}: {e}). Fix: copy it again, "
                            "or pass the extracted folder") from e
        inner = [p for p in tmp.iterdir()]
        try:
            os.replace(inner[0] if len(inner) == 1 and inner[0].is_dir() else tmp, target)
        except OSError:
            if not target.is_dir():  # not another process finishing the same extraction first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file. Fix: point --data-root at the original files")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    if len(data) != 4 + 4 * ndim + int(np.prod(shape)):
        raise DataError(f"{path} is truncated or padded: its header says shape {shape}. "
                        "Fix: re-copy the original IDX file")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(root: str | os.PathLike) -> Dataset:
    root = Path(root)
    arrays = {}
    for key, stem in (("xtr", "train-images-idx3-ubyte"), ("ytr", "train-labels-idx1-ubyte"),
                      ("xte", "t10k-images-idx3-ubyte"), ("yte", "t10k-labels-idx1-ubyte")):
        path = next((p for p in (root / stem, root / f"{stem}.gz") if p.exists()), None)
        if path is None:
            raise _missing("fashion-mnist", root, f"{stem}[.gz] is missing")
        arrays[key] = _read_idx(path)
    tr = Split(torch.from_numpy(arrays["xtr"].copy()).unsqueeze(1), torch.from_numpy(arrays["ytr"].astype(np.int64)), 1 / 255)
    te = Split(torch.from_numpy(arrays["xte"].copy()).unsqueeze(1), torch.from_numpy(arrays["yte"].astype(np.int64)), 1 / 255)
    return Dataset("fashion-mnist", tr, te, 10, source=f"IDX files in {root}")
