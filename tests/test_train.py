"""Tests for icsnn_core.train: the lr schedule, exact resume, determinism, checkpoints and their errors.

Runs a quarter-width digits-cnn on scikit-learn's digits for 2-3 epochs (well under a second an epoch on CPU)."""
from __future__ import annotations

import csv
import pickle

import pytest
import torch

from icsnn_core.data import load_digits
from icsnn_core.errors import CheckpointError, ConfigError
from icsnn_core.train import CHECKPOINT_FORMAT, ModelSpec, TrainConfig, load_checkpoint, load_model, train


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


@pytest.fixture(scope="module")
def spec(digits):
    return ModelSpec("digits-cnn", width=0.25, in_channels=1, mean=digits.mean, std=digits.std)


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=128, augment=False, milestones=(1, 2))
    return TrainConfig(**{**base, **kw})


def _train(spec, digits, c, path, **kw):
    return train(spec, digits, c, path, progress=False, **kw)


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _differs(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return any(not torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, spec, digits):
    """3 epochs in one call, seed 0, lr 0.1 -> 0.02 (epoch 1) -> 0.004 (epoch 2)."""
    path = tmp_path_factory.mktemp("straight") / "model.pt"
    model = _train(spec, digits, cfg(), path)
    return model, path


# --- the learning-rate schedule --------------------------------------------------------------------

def test_lr_at_paper_schedule():
    c = TrainConfig(lr=0.1, milestones=(70, 130, 190, 240), gamma=0.2)
    assert c.lr_at(0) == pytest.approx(0.1)
    assert c.lr_at(69) == pytest.approx(0.1)
    assert c.lr_at(70) == pytest.approx(0.02)
    assert c.lr_at(129) == pytest.approx(0.02)
    assert c.lr_at(130) == pytest.approx(0.1 * 0.2 ** 2)
    assert c.lr_at(239) == pytest.approx(0.1 * 0.2 ** 3)
    assert c.lr_at(240) == pytest.approx(0.1 * 0.2 ** 4)
    assert c.lr_at(299) == pytest.approx(0.1 * 0.2 ** 4)


def test_paper_defaults():
    c = TrainConfig()
    assert (c.epochs, c.lr, c.momentum, c.weight_decay, c.batch_size) == (300, 0.1, 0.9, 5e-4, 128)
    assert c.milestones == (70, 130, 190, 240) and c.gamma == pytest.approx(0.2) and c.augment


def test_scaled_to():
    s = TrainConfig().scaled_to(30)
    assert s.epochs == 30
    assert s.milestones == (7, 13, 19, 24)
    assert (s.lr, s.gamma, s.momentum, s.weight_decay) == (0.1, 0.2, 0.9, 5e-4)
    assert s.lr_at(6) == pytest.approx(0.1) and s.lr_at(7) == pytest.approx(0.02)
    assert s.lr_at(29) == pytest.approx(0.1 * 0.2 ** 4)
    assert TrainConfig().scaled_to(300).milestones == (70, 130, 190, 240)


@pytest.mark.parametrize("epochs", [0, -1, 2.5, True, "3"])
def test_invalid_epochs(epochs, spec, digits, tmp_path):
    with pytest.raises(ConfigError):
        TrainConfig(epochs=epochs).validate()
    with pytest.raises(ConfigError):
        _train(spec, digits, cfg(epochs=epochs), tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


# --- resume and determinism ------------------------------------------------------------------------

def test_resume_is_bit_identical(straight, spec, digits, tmp_path):
    model, straight_path = straight
    path = tmp_path / "resumed.pt"
    _train(spec, digits, cfg(), path, stop_after=1)
    assert load_checkpoint(path)["epoch"] == 1
    assert len(load_checkpoint(path)["history"]) == 1
    resumed = _train(spec, digits, cfg(), path)
    _assert_same_weights(model, resumed)
    a, b = load_checkpoint(straight_path), load_checkpoint(path)
    assert a["epoch"] == b["epoch"] == 3
    timeless = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731 - wall time differs
    assert timeless(a["history"]) == timeless(b["history"])  # same losses, accuracies and lrs epoch by epoch
    assert torch.equal(a["generator"], b["generator"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])


def test_resume_in_two_steps_of_one(straight, spec, digits, tmp_path):
    path = tmp_path / "steps.pt"
    for _ in range(3):
        model = _train(spec, digits, cfg(), path, stop_after=1)
    _assert_same_weights(straight[0], model)


def test_same_seed_same_weights_different_seed_different(straight, spec, digits, tmp_path):
    again = _train(spec, digits, cfg(), tmp_path / "again.pt")
    _assert_same_weights(straight[0], again)
    other = _train(spec, digits, cfg(seed=1), tmp_path / "other.pt")
    assert _differs(straight[0], other)


def test_training_changes_weights_and_returns_eval_model(straight, spec):
    model = straight[0]
    assert not model.training  # returned in eval mode
    torch.manual_seed(0)
    init = spec.build()  # the seeded initial weights train() starts from
    assert _differs(model, init)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_finished_checkpoint_is_loaded_not_retrained(straight, spec, digits):
    model, path = straight
    before = path.read_bytes()
    again = _train(spec, digits, cfg(), path)
    _assert_same_weights(model, again)
    assert path.read_bytes() == before


# --- checkpoints and their log ---------------------------------------------------------------------

def test_checkpoint_contents_and_weights_only(straight, spec, monkeypatch):
    model, path = straight
    # the file holds only what weights_only unpickling accepts
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT
    # and load_checkpoint asks for weights_only=True
    calls = []
    real_load = torch.load

    def spy(*a, **k):
        calls.append(k.get("weights_only"))
        return real_load(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    ckpt = load_checkpoint(path)
    assert calls == [True]
    assert ckpt["epoch"] == 3 and ckpt["dataset"] == "digits"
    assert ckpt["spec"]["arch"] == "digits-cnn" and ckpt["spec"]["width"] == 0.25
    assert tuple(ckpt["spec"]["mean"]) == spec.mean
    assert ckpt["train"]["epochs"] == 3 and tuple(ckpt["train"]["milestones"]) == (1, 2)
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt["model"][k], v), k


def test_load_model_round_trip(straight, spec, digits):
    model, path = straight
    loaded, ckpt = load_model(path, expect=spec)
    _assert_same_weights(model, loaded)
    loaded.eval()
    x = digits.test.images(slice(0, 64))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # expect compares architecture, not the normalisation constants
    load_model(path, expect=ModelSpec("digits-cnn", width=0.25, in_channels=1))


def test_csv_log_follows_schedule(straight):
    _, path = straight
    log = path.parent / f"{path.name}.log.csv"
    assert log.exists()
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    c = cfg()
    assert [float(r["lr"]) for r in rows] == pytest.approx([c.lr_at(e) for e in range(3)])
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.1, 0.02, 0.004])
    assert {"loss", "train_accuracy"} <= set(rows[0])
    for r in rows:
        assert float(r["loss"]) > 0 and 0 <= float(r["train_accuracy"]) <= 100


def test_load_model_wrong_architecture(straight):
    _, path = straight
    with pytest.raises(CheckpointError) as e:
        load_model(path, expect=ModelSpec("vgg16"))
    msg = str(e.value)
    assert "digits-cnn" in msg and "vgg16" in msg and "Fix:" in msg


def test_other_recipe_refused_and_file_untouched(straight, spec, digits, tmp_path):
    _, src = straight
    path = tmp_path / "model.pt"
    path.write_bytes(src.read_bytes())
    before = path.read_bytes()
    with pytest.raises(CheckpointError) as e:
        _train(spec, digits, cfg(lr=0.05), path)
    assert "lr" in str(e.value) and "Fix:" in str(e.value)
    assert path.read_bytes() == before
    other_spec = ModelSpec("digits-cnn", width=0.5, in_channels=1, mean=spec.mean, std=spec.std)
    with pytest.raises(CheckpointError, match="width"):
        _train(other_spec, digits, cfg(), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temp files, no log written


def test_foreign_torch_file_refused(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert "Fix:" in str(e.value)
    with pytest.raises(CheckpointError, match="Fix:"):
        load_model(path)


def test_garbage_file_refused(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint\x00\xff" * 10)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert "Fix:" in str(e.value)


class _Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_unsafe_pickle_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": CHECKPOINT_FORMAT, "x": _Evil()}, f, protocol=2)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)  # refused by the weights_only unpickler, before the format check
    assert "cannot read checkpoint" in str(e.value) and "Fix:" in str(e.value)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="Fix:"):
        load_checkpoint(tmp_path / "nope.pt")


def test_a_checkpoint_from_before_init_lambda_resumes_as_lambda_8(spec, digits, tmp_path):
    """Checkpoints written before ModelSpec.init_lambda existed trained QCFS from lambda = 8: resuming one under
    today's default (2) would mix two recipes, so it is refused; for ReLU the field means nothing and it resumes."""
    from dataclasses import replace

    for activation, resumes in (("relu", True), ("qcfs", False)):
        s = replace(spec, activation=activation)
        path = tmp_path / f"{activation}.pt"
        _train(s, digits, cfg(), path, stop_after=1)
        ckpt = torch.load(path, weights_only=True)
        del ckpt["spec"]["init_lambda"]
        torch.save(ckpt, path)
        if resumes:
            _train(s, digits, cfg(), path)
            assert load_checkpoint(path)["epoch"] == 3
        else:
            with pytest.raises(CheckpointError, match="init_lambda: 8.0 vs 2.0"):
                _train(s, digits, cfg(), path)
            _train(replace(s, init_lambda=8.0), digits, cfg(), path)  # the recipe it was trained with resumes
            assert load_checkpoint(path)["epoch"] == 3
