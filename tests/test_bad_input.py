"""Bad input as a user would give it: each case ends in exit code 2 and one message naming the problem and the
fix, no Python traceback, and no file that existed before is changed."""
from __future__ import annotations

import hashlib
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from icsnn_core.cli import main
from icsnn_core.data import CIFAR10_CLASSES
from icsnn_core.train import ModelSpec, TrainConfig, train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small digits-cnn trained for one epoch: the good checkpoint the broken ones are made from."""
    from icsnn_core.data import load_digits

    data = load_digits(seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "good.pt"
    spec = ModelSpec("digits-cnn", 0.25, in_channels=1, mean=data.mean, std=data.std)
    train(spec, data, TrainConfig(epochs=1, batch_size=256, augment=False, milestones=()), path, progress=False)
    return path


def _broken(checkpoint: Path, tmp: Path, how: str) -> Path:
    ckpt = torch.load(checkpoint, weights_only=True)
    if how == "nan":
        next(v for v in ckpt["model"].values() if v.is_floating_point()).fill_(math.nan)
    elif how == "no-spec":
        del ckpt["spec"]
    elif how == "wrong-width":
        ckpt["spec"]["width"] = 0.5  # the stored weights are a quarter-width network's
    path = tmp / f"{how}.pt"
    torch.save(ckpt, path)
    return path


def _image_folder(root: Path, corrupt: bool, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        for cls in CIFAR10_CLASSES:
            (root / part / cls).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / part / cls / "0.png")
    if corrupt:
        (root / "test" / "cat" / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return root


def _cifar_checkpoint(tmp: Path) -> Path:
    """A ResNet20 trained for one epoch on 32x32 made-up CIFAR-10 images (it ends in adaptive pooling, so it would
    take images of any size)."""
    from icsnn_core.data import load_dataset

    data = load_dataset("cifar10", _image_folder(tmp / "imgs32", corrupt=False))
    path = tmp / "cifar.pt"
    spec = ModelSpec("resnet20", 0.0625, mean=data.mean, std=data.std)
    train(spec, data, TrainConfig(epochs=1, batch_size=16, augment=False, milestones=()), path, progress=False)
    return path


def _case(name: str, tmp: Path, checkpoint: Path) -> tuple[list[str], str]:
    """The command line of a bad-input case and a phrase its message must hold."""
    out = ["--out", str(tmp / "out"), "--quiet"]
    evaluate = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", "digits", *out]
    train_ = ["train", "--dataset", "digits", "--arch", "digits-cnn", "--checkpoint", str(tmp / "new.pt"), "--quiet"]
    cases = {
        "T too large": ([*evaluate, "--T", "1000000000"], "more than the 100,000 steps"),
        "T zero": ([*evaluate, "--T", "0"], "positive integer"),
        "quantile above 1": ([*evaluate, "--quantile", "1.5"], "(0, 1]"),
        "unknown method": ([*evaluate, "--methods", "x-snn"], "unknown method 'x-snn'"),
        "qcfs on a ReLU ANN": ([*evaluate, "--methods", "qcfs"], "QCFS-trained ANN"),
        "wrong dataset": ([*evaluate[:4], "fashion-mnist", *out], "--dataset digits"),
        "calibration images zero": ([*evaluate, "--calib-images", "0"], "calib_images must be a positive"),
        "COS rho zero": ([*evaluate, "--methods", "cos", "--rho", "0"], "rho must be a positive"),
        "n-test zero": ([*evaluate, "--n-test", "0"], "at least one sample"),
        "checkpoint missing": (["evaluate", "--checkpoint", str(tmp / "none.pt"), *out], "does not exist"),
        "checkpoint not a checkpoint": (["evaluate", "--checkpoint", str(tmp / "junk.pt"), *out], "cannot read"),
        "checkpoint with NaN weights": (["evaluate", "--checkpoint", str(_broken(checkpoint, tmp, "nan")), *out],
                                        "NaN or infinite weights"),
        "checkpoint without spec": (["evaluate", "--checkpoint", str(_broken(checkpoint, tmp, "no-spec")), *out],
                                    "lacks spec"),
        "checkpoint spec and weights disagree": (
            ["evaluate", "--checkpoint", str(_broken(checkpoint, tmp, "wrong-width")), *out], "do not fit the model"),
        "width zero": ([*train_, "--width", "0"], "width must be > 0"),
        "epochs zero": ([*train_, "--epochs", "0"], "epochs must be a positive integer"),
        "lambda quantile above 1": ([*train_, "--activation", "qcfs", "--lambda-quantile", "2"], "lambda_quantile"),
        "checkpoint of another recipe": (["train", "--dataset", "digits", "--arch", "digits-cnn", "--width", "0.25",
                                          "--epochs", "2", "--checkpoint", str(checkpoint), "--quiet"],
                                         "trained with another model or recipe"),
        "cuda without a GPU": ([*train_, "--device", "cuda"], "no CUDA GPU") if not torch.cuda.is_available()
        else ([*train_, "--device", "tpu"], "unknown device"),
        "unknown device": ([*train_, "--device", "tpu"], "unknown device"),
        "cifar without data": (["train", "--dataset", "cifar10", "--arch", "vgg16", "--checkpoint",
                                str(tmp / "c.pt"), "--quiet"], "no local copy named"),
        "cifar folder missing": (["train", "--dataset", "cifar10", "--data-root", str(tmp / "nowhere"), "--arch",
                                  "vgg16", "--checkpoint", str(tmp / "c.pt"), "--quiet"], "no pickle batches"),
        "corrupt image in a folder": (["train", "--dataset", "cifar10", "--data-root",
                                       str(_image_folder(tmp / "imgs", corrupt=True)), "--arch", "vgg16",
                                       "--checkpoint", str(tmp / "c.pt"), "--quiet"], "is not a readable image"),
        "junk archive": (["train", "--dataset", "cifar10", "--data-root", str(tmp / "junk.tar.xz"), "--arch", "vgg16",
                          "--checkpoint", str(tmp / "c.pt"), "--quiet"], "is not a readable archive"),
        "fashion-mnist missing": (["train", "--dataset", "fashion-mnist", "--data-root", str(tmp / "nowhere"),
                                   "--checkpoint", str(tmp / "f.pt"), "--quiet"], "is missing"),
        "profile without data": (["reproduce", "--profile", "cpu", *out], "no local copy named"),
        "profile with no matching model": (["reproduce", "--profile", "ci", "--arch", "vgg16", *out],
                                           "matches --arch ['vgg16']"),
        "out is a file": ([*evaluate[:-3], "--out", str(tmp / "a-file"), "--quiet"], "is a file, not a folder"),
        "results with foreign columns": ([*evaluate[:-3], "--out", str(tmp / "theirs"), "--quiet"],
                                         "columns icsnn does not write"),
        "results not UTF-8": ([*evaluate[:-3], "--out", str(tmp / "latin1"), "--quiet"], "is not UTF-8 text"),
        "images of another size": (["evaluate", "--checkpoint", str(_cifar_checkpoint(tmp)), "--dataset", "cifar10",
                                    "--data-root", str(_image_folder(tmp / "imgs16", corrupt=False, size=16)), *out],
                                   "are 3x16x16 (channels x height x width) but"),
    }
    return cases[name]


CASES = ["T too large", "T zero", "quantile above 1", "unknown method", "qcfs on a ReLU ANN", "wrong dataset",
         "calibration images zero", "COS rho zero", "n-test zero", "checkpoint missing", "checkpoint not a checkpoint",
         "checkpoint with NaN weights", "checkpoint without spec", "checkpoint spec and weights disagree",
         "width zero", "epochs zero", "lambda quantile above 1", "checkpoint of another recipe", "cuda without a GPU",
         "unknown device", "cifar without data", "cifar folder missing", "corrupt image in a folder", "junk archive",
         "fashion-mnist missing", "profile without data", "profile with no matching model", "out is a file",
         "results with foreign columns", "results not UTF-8", "images of another size"]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_gets_one_clear_error_and_changes_nothing(name, checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ICSNN_DATA_CACHE", str(tmp_path / "cache"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "junk.tar.xz").write_bytes(b"not an archive at all")
    (tmp_path / "a-file").write_text("a user's file\n")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "results.csv").write_text("profile,variant,T,accuracy,notes\nci,snn,1,50,mine\n")
    (tmp_path / "latin1").mkdir()
    (tmp_path / "latin1" / "results.csv").write_bytes("profile,variant\ncafé,snn\n".encode("latin-1"))
    args, phrase = _case(name, tmp_path, checkpoint)
    before, good = _snapshot(tmp_path), checkpoint.read_bytes()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert phrase in err, err
    assert err.startswith("icsnn: error: ") and "Traceback" not in err and "Fix" in err, err
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing that existed was changed
    assert checkpoint.read_bytes() == good


def test_an_out_folder_that_cannot_be_written_is_refused_before_any_work(checkpoint, tmp_path, capsys):
    """--out on a read-only file system (root writes through file modes, so a mode alone proves nothing as root)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a read-only file system here: {mounted.stderr.decode().strip()}")
    else:
        ro.chmod(0o555)
    try:
        args = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", "digits", "--out", str(ro / "out"), "--quiet"]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"--out {ro / 'out'} is not a writable folder (Read-only file system" in err or "Permission" in err, err
        assert "Fix: pass a folder you can write to" in err and "Traceback" not in err
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=True)
    assert not (ro / "out").exists()


def test_library_calls_refuse_silent_wrong_numbers():
    """What the CLI cannot reach: convert(None), an empty split, labels the model cannot name, NaN activations."""
    from icsnn_core.convert import balance_thresholds, convert
    from icsnn_core.data import Split
    from icsnn_core.errors import ConfigError
    from icsnn_core.models import build_model
    from icsnn_core.simulate import accuracy_curve, ann_accuracy

    with pytest.raises(ConfigError, match="convert needs a torch.nn.Module.*got NoneType"):
        convert(None)
    relu_ann = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.ReLU(), torch.nn.Linear(10, 10))
    with pytest.raises(ConfigError, match="no IF neurons.*icsnn_core.convert"):
        accuracy_curve(relu_ann, Split(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]), 1.0), 4)
    torch.manual_seed(0)
    model = convert(build_model("digits-cnn", 10, 1, width=0.25))
    empty = Split(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), 1.0)
    for f in (lambda: ann_accuracy(model, empty), lambda: accuracy_curve(model, empty, 4)):
        with pytest.raises(ConfigError, match="holds no images"):
            f()
    bad_labels = Split(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 10]), 1.0)
    for f in (lambda: ann_accuracy(model, bad_labels), lambda: accuracy_curve(model, bad_labels, 2)):
        with pytest.raises(ConfigError, match="labels run from 0 to 10 but the model has 10 outputs"):
            f()
    with torch.no_grad():
        next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).weight.fill_(math.nan)
    with pytest.raises(ConfigError, match=r"NaN or infinite values at net\.2"):  # the built-in keeps its module names
        balance_thresholds(model, Split(torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), 1.0), images=4)


def test_a_finished_checkpoint_is_not_reused_on_images_of_another_size(tmp_path):
    """reproduce reuses a finished checkpoint through train(): images of another size are refused there too."""
    from icsnn_core.data import load_dataset
    from icsnn_core.errors import ConfigError

    path = _cifar_checkpoint(tmp_path)
    assert torch.load(path, weights_only=True)["image_shape"] == [3, 32, 32]
    small = load_dataset("cifar10", _image_folder(tmp_path / "imgs16", corrupt=False, size=16))
    spec = ModelSpec("resnet20", 0.0625, mean=small.mean, std=small.std)
    with pytest.raises(ConfigError, match="are 3x16x16 .* but .*cifar.pt was trained on 3x32x32"):
        train(spec, small, TrainConfig(epochs=1, batch_size=16, augment=False, milestones=()), path, progress=False)
