"""Tests for icsnn_core.train: the lr schedule, exact resume, determinism, checkpoints and their errors.

Runs a quarter-width digits-cnn on scikit-learn's digits for 2-3 epochs (well under a second an epoch on CPU)."""
from __future__ import annotations

import copy
import csv
import pickle
from dataclasses import replace
from pathlib import Path

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


# --- the recipes ------------------------------------------------------------------------------------

def test_onecycle_schedule_in_closed_form():
    """2 epochs of 2 steps, warm-up over a quarter of the 4 steps: lr, then 3/4, 2/4, 1/4 of it."""
    c = TrainConfig(epochs=2, lr=0.4, schedule="onecycle", warmup=0.25)
    got = [c.lr_at(e, s, 2) for e in range(2) for s in range(2)]
    assert got == pytest.approx([0.4, 0.3, 0.2, 0.1])
    c = TrainConfig(epochs=1, lr=1.0, schedule="onecycle", warmup=0.5)  # 4 steps: rise over 2, fall over 2
    assert [c.lr_at(0, s, 4) for s in range(4)] == pytest.approx([0.5, 1.0, 2 / 3, 1 / 3])


def test_named_recipes():
    from icsnn_core.train import RECIPES, recipe

    assert RECIPES["paper"] == TrainConfig()
    fast = recipe("fast", 20, seed=3)
    assert (fast.epochs, fast.seed, fast.recipe, fast.schedule, fast.nesterov, fast.label_smoothing, fast.decay_all,
            fast.ema, fast.quant_warmup, fast.quant_warmup_mode) == (20, 3, "fast", "onecycle", True, 0.1, True, 0.0,
                                                                     0.6, "halving")
    assert RECIPES["paper"].quant_warmup == 0.0
    assert recipe("paper", 30).milestones == (7, 13, 19, 24)
    with pytest.raises(ConfigError, match="unknown recipe 'quick'; choose one of paper, fast"):
        recipe("quick")
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(schedule="cosine").validate()


def test_no_decay_on_norm_bias_and_lambda(digits):
    from icsnn_core.train import param_groups

    model = ModelSpec("digits-cnn", 0.25, True, in_channels=1, activation="qcfs").build()
    decay, no_decay = param_groups(model, 5e-4, decay_all=False)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("weight") and p.dim() > 1 for p in decay["params"])
    kinds = {names[id(p)].rsplit(".", 1)[-1] for p in no_decay["params"]}
    assert kinds == {"weight", "bias", "lam"}  # batch norm's weight, the biases, every lambda
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    (only,) = param_groups(model, 5e-4)
    assert len(only["params"]) == len(list(model.parameters())) and only["weight_decay"] == 5e-4
    decay, no_decay = param_groups(model, 5e-4, decay_lambda=False)  # the lambdas alone, every other one decayed
    assert {names[id(p)] for p in no_decay["params"]} == {n for n in names.values() if n.endswith("lam")} != set()
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    relu = ModelSpec("digits-cnn", 0.25, True, in_channels=1).build()  # no lambda: one group, as before
    (only,) = param_groups(relu, 5e-4, decay_lambda=False)
    assert len(only["params"]) == len(list(relu.parameters()))


def test_lambda_lr_scales_the_lambdas_step_alone(digits, tmp_path):
    """``lambda_lr`` puts the lambdas in a group of their own whose learning rate is the schedule's times it: at
    1e-12 they end where they started (2, the fixed start; their weight decay is scaled too), at 1 they move."""
    from icsnn_core.neuron import neurons
    from icsnn_core.train import param_groups

    spec = ModelSpec("digits-cnn", 0.25, True, in_channels=1, mean=digits.mean, std=digits.std, activation="qcfs",
                     init_lambda=2.0)
    model = spec.build()
    names = {id(p): n for n, p in model.named_parameters()}
    *rest, own = param_groups(model, 5e-4, lambda_lr=0.1)
    assert own["lr_scale"] == 0.1 and own["weight_decay"] == 5e-4 and all("lr_scale" not in g for g in rest)
    assert {names[id(p)] for p in own["params"]} == {n for n in names.values() if n.endswith("lam")}
    assert param_groups(model, 5e-4, decay_lambda=False, lambda_lr=0.1)[-1]["weight_decay"] == 0.0
    lams = {}
    for lr in (1e-12, 1.0):
        trained = _train(spec, digits, cfg(epochs=1, lambda_quantile=None, lambda_lr=lr), tmp_path / f"{lr}.pt")
        lams[lr] = [n.lam.item() for _, n in neurons(trained)]
    assert lams[1e-12] == pytest.approx([2.0] * len(lams[1e-12]), abs=1e-6)
    assert max(abs(v - 2.0) for v in lams[1.0]) > 1e-3
    with pytest.raises(ConfigError, match="lambda_lr must be positive"):
        TrainConfig(lambda_lr=0).validate()


def _qcfs_inputs(model, x):
    from icsnn_core.neuron import neurons

    seen, hooks = [], [n.register_forward_pre_hook(lambda m, i: seen.append(i[0].detach()))
                       for _, n in neurons(model)]
    out = model(x)
    for h in hooks:
        h.remove()
    return seen, out


def test_lambdas_start_at_the_quantile_of_their_inputs(digits):
    """After init_lambdas, each lambda is the 0.99 quantile of the positive values its layer receives, the layers
    before it already set; batch norm's running statistics are untouched."""
    from icsnn_core.neuron import neurons
    from icsnn_core.train import init_lambdas

    torch.manual_seed(0)
    model = ModelSpec("digits-cnn", 1.0, True, in_channels=1, mean=digits.mean, std=digits.std,
                      activation="qcfs").build().train()
    before = {k: v.clone() for k, v in model.named_buffers()}
    x = digits.train.images(slice(0, 64))
    values = init_lambdas(model, x, 0.99)
    for k, v in model.named_buffers():
        assert torch.equal(v, before[k]), k
    lams = [float(n.lam.detach()) for _, n in neurons(model)]
    inputs, _ = _qcfs_inputs(model, x)
    expected = [float(torch.quantile(z[z > 0], 0.99)) for z in inputs]
    assert lams == pytest.approx(expected, rel=1e-5) and values == pytest.approx(expected, rel=1e-5)


def test_fixed_lambda_starts_dead_and_the_data_start_does_not(digits):
    """The ci network (digits-cnn, no batch norm) with every lambda at 2 quantises its last layer's inputs to 0 at
    initialisation: its output is the same for every image, so the loss sits at ln(10) until
    rounding noise breaks the symmetry (the machine-dependent failure to learn). Started from the data, it is
    not."""
    from icsnn_core.train import init_lambdas

    x = digits.train.images(slice(0, 64))
    for start in ("fixed", "data"):
        torch.manual_seed(0)
        model = ModelSpec("digits-cnn", in_channels=1, mean=digits.mean, std=digits.std, activation="qcfs",
                          init_lambda=2.0).build().train()
        if start == "data":
            init_lambdas(model, x, 0.99)
        inputs, out = _qcfs_inputs(model, x)
        spread = float(out.detach().std(0).max())
        if start == "fixed":
            assert spread == 0.0 and float(inputs[-1].max()) < 2.0 / 8  # below lambda / 2L: floor gives 0
        else:
            assert spread > 1e-3


def test_ema_is_the_result_and_resumes_exactly(spec, digits, tmp_path):
    """With an EMA the returned and reloaded weights are the average, not the last step's; an interrupted run
    resumes it bit-identically."""
    c = cfg(ema=0.9, schedule="onecycle", warmup=0.2, nesterov=True, label_smoothing=0.1, decay_all=False)
    straight = _train(spec, digits, c, tmp_path / "a.pt")
    _train(spec, digits, c, tmp_path / "b.pt", stop_after=1)
    resumed = _train(spec, digits, c, tmp_path / "b.pt")
    _assert_same_weights(straight, resumed)
    ckpt = load_checkpoint(tmp_path / "a.pt")
    last = spec.build()
    last.load_state_dict(ckpt["model"])
    assert _differs(straight, last)
    _assert_same_weights(straight, load_model(tmp_path / "a.pt")[0])


def test_a_checkpoint_from_before_the_recipe_fields_resumes_as_the_paper_recipe(spec, digits, tmp_path):
    """Checkpoints written before the recipe fields existed trained with the paper's recipe and QCFS's lambda at
    its fixed start: they resume under exactly that, and a QCFS one is refused under the data start."""
    from dataclasses import replace

    from icsnn_core.train import _LEGACY_TRAIN

    s = replace(spec, activation="qcfs")
    old = cfg(lambda_quantile=None)
    path = tmp_path / "old.pt"
    _train(s, digits, old, path, stop_after=1)
    ckpt = torch.load(path, weights_only=True)
    for field in _LEGACY_TRAIN:
        del ckpt["train"][field]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="lambda_quantile: None vs 0.99"):
        _train(s, digits, cfg(), path)
    _train(s, digits, old, path)
    assert load_checkpoint(path)["epoch"] == 3


def test_ci_profile_qcfs_ann_learns_and_same_seed_gives_the_same_weights(ci_run, tmp_path):
    """The ci profile's QCFS ANN reaches at least 95% (it stayed at chance on some machines when its lambdas
    started at 2), and training it again from the same seed in this process gives identical weights."""
    from dataclasses import replace

    from icsnn_core.data import load_dataset
    from icsnn_core.pipeline import checkpoint_path
    from icsnn_core.profiles import get_profile
    from icsnn_core.results import read_rows

    rows = [r for r in read_rows(ci_run / "results.csv") if r["ann"] == "qcfs"]
    assert rows and min(float(r["ann_accuracy"]) for r in rows) >= 95.0
    profile = get_profile("ci")
    data = load_dataset("digits", seed=profile.seed)
    choice = next(m for m in profile.models if m.activation == "qcfs")
    s = ModelSpec(choice.arch, choice.width, choice.bn, data.num_classes, data.in_channels, data.mean, data.std,
                  choice.activation, choice.levels)
    c = replace(profile.train, seed=profile.seed)
    again = train(s, data, c, tmp_path / "again.pt", progress=False)
    _assert_same_weights(load_model(checkpoint_path(ci_run, data.name, s, c))[0], again)


def test_a_lambda_pushed_below_its_bound_is_put_back_and_still_learns():
    """Below LAMBDA_MIN the activation's clamp passes no gradient to lambda (a dead layer for good); after the
    projection lambda sits on the bound, where the gradient flows again."""
    from icsnn_core.neuron import LAMBDA_MIN, IFNeuron
    from icsnn_core.train import project_lambdas

    model = torch.nn.Sequential(IFNeuron("qcfs", levels=4))
    lam = model[0].lam
    with torch.no_grad():
        lam.fill_(-1.13)
    model(torch.tensor([0.5])).sum().backward()
    assert lam.grad is not None and float(lam.grad) == 0.0  # stuck: no step can bring it back
    project_lambdas([lam])
    assert float(lam.detach()) == pytest.approx(LAMBDA_MIN)
    lam.grad = None
    model(torch.tensor([0.5])).sum().backward()  # on the bound: floor(0.5 * 4 / 1e-3 + 0.5) clips to 1, out = lam
    assert float(lam.grad) == pytest.approx(1.0)


def test_cli_trains_with_a_named_recipe_and_overrides(tmp_path):
    from icsnn_core.cli import main

    path = tmp_path / "q.pt"
    assert main(["train", "--dataset", "digits", "--arch", "digits-cnn", "--width", "0.25", "--activation", "qcfs",
                 "--recipe", "fast", "--epochs", "2", "--lambda-quantile", "0", "--batch-size", "256",
                 "--quant-warmup", "0.5", "--quant-warmup-mode", "clip", "--cold", "--checkpoint", str(path),
                 "--quiet"]) == 0
    t = load_checkpoint(path)["train"]
    assert (t["recipe"], t["schedule"], t["epochs"], t["batch_size"], t["lambda_quantile"], t["ema"],
            t["quant_warmup"], t["quant_warmup_mode"], t["warm_start"]) == ("fast", "onecycle", 2, 256, None, 0.0,
                                                                            0.5, "clip", False)
    assert path.with_name("q.pt.log.csv").read_text().count("\n") == 3  # header and two epochs
    # evaluated, its rows say which recipe trained it (and are not confused with a paper-recipe twin's)
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(path), "--dataset", "digits", "--methods", "qcfs", "--T", "2",
                 "--out", str(out), "--quiet"]) == 0
    from icsnn_core.results import read_rows
    assert [(r["epochs"], r["recipe"]) for r in read_rows(out / "results.csv")] == [("2", "fast")]


def test_cli_starts_a_fast_qcfs_ann_from_its_relu_twin(tmp_path, capsys):
    from icsnn_core.cli import main
    from icsnn_core.train import weights_digest

    common = ["train", "--dataset", "digits", "--arch", "digits-cnn", "--width", "0.25", "--recipe", "fast",
              "--epochs", "1", "--quiet"]
    relu, qcfs = tmp_path / "relu.pt", tmp_path / "qcfs.pt"
    assert main(common + ["--checkpoint", str(relu)]) == 0
    assert main(common + ["--activation", "qcfs", "--checkpoint", str(qcfs)]) == 2  # no twin given: told how
    err = capsys.readouterr().err
    assert "--warm-from" in err and "--cold" in err and "Traceback" not in err and not qcfs.exists()
    assert main(common + ["--checkpoint", str(tmp_path / "r2.pt"), "--warm-from", str(relu)]) == 2  # a ReLU run
    assert "--warm-from starts a QCFS ANN" in capsys.readouterr().err
    assert main(common + ["--activation", "qcfs", "--width", "0.5", "--checkpoint", str(qcfs),
                          "--warm-from", str(relu)]) == 2  # another network
    assert "width" in capsys.readouterr().err and not qcfs.exists()
    assert main(common + ["--activation", "qcfs", "--checkpoint", str(qcfs), "--warm-from", str(relu)]) == 0
    twin, _ = load_model(relu)
    assert load_checkpoint(qcfs)["init"] == weights_digest(twin)


# --- QCFS's floor switched on after a warm-up (TrainConfig.quant_warmup) ----------------------------

def test_unquantised_qcfs_is_the_clip_and_quantised_the_published_activation():
    from icsnn_core.neuron import IFNeuron

    n = IFNeuron(activation="qcfs", levels=4, init_lambda=2.0)
    z = torch.tensor([-1.0, 0.2, 0.3, 0.9, 1.3, 2.5])
    # lam * clip(floor(z L / lam + 1/2) / L, 0, 1) with lam = 2, L = 4: steps of 0.5 rounded to the nearest
    assert torch.equal(n.ann_activation(z), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.5, 2.0]))
    n.quantised = False
    assert torch.equal(n.ann_activation(z), torch.tensor([0.0, 0.2, 0.3, 0.9, 1.3, 2.0]))


def test_quant_warmup_trains_the_first_epochs_unquantised_resumes_exactly_and_returns_qcfs(spec, digits, tmp_path,
                                                                                            monkeypatch):
    from dataclasses import replace

    from icsnn_core.neuron import IFNeuron

    s = replace(spec, activation="qcfs")
    seen: list[bool] = []  # per training forward through a QCFS neuron: was the floor on?
    activation = IFNeuron.ann_activation

    def record(self, z):
        if self.training and torch.is_grad_enabled():  # a training step, not init_lambdas' look at the data
            seen.append(self.quantised)
        return activation(self, z)

    c = cfg(quant_warmup=0.5)  # 3 epochs: int(1.5) = 1 epoch without the floor, then 2 with it
    monkeypatch.setattr(IFNeuron, "ann_activation", record)
    straight = _train(s, digits, c, tmp_path / "a.pt")
    monkeypatch.undo()
    third = len(seen) // 3
    assert len(seen) == 3 * third and seen == [False] * third + [True] * (2 * third)
    assert all(m.quantised for m in straight.modules() if isinstance(m, IFNeuron))
    assert _differs(straight, _train(s, digits, cfg(), tmp_path / "plain.pt"))  # the warm-up changes training
    stopped = _train(s, digits, c, tmp_path / "b.pt", stop_after=1)  # stopped inside the warm-up: QCFS all the same
    assert all(m.quantised for m in stopped.modules() if isinstance(m, IFNeuron))
    _assert_same_weights(straight, _train(s, digits, c, tmp_path / "b.pt"))


def test_halving_warmup_trains_with_levels_halved_each_epoch_down_to_l(spec, digits, tmp_path, monkeypatch):
    from dataclasses import replace

    from icsnn_core.neuron import IFNeuron

    s = replace(spec, activation="qcfs", levels=4)
    seen: list[tuple[bool, int]] = []
    activation = IFNeuron.ann_activation

    def record(self, z):
        if self.training and torch.is_grad_enabled():
            seen.append((self.quantised, self.levels))
        return activation(self, z)

    monkeypatch.setattr(IFNeuron, "ann_activation", record)
    model = _train(s, digits, cfg(epochs=4, quant_warmup=0.5, quant_warmup_mode="halving"), tmp_path / "h.pt")
    monkeypatch.undo()
    quarter = len(seen) // 4  # int(0.5 * 4) = 2 warm-up epochs: 4 * 2^2 = 16 levels, then 8, then the published 4
    assert seen == [(True, 16)] * quarter + [(True, 8)] * quarter + [(True, 4)] * (2 * quarter)
    assert all(m.levels == 4 and m.quantised for m in model.modules() if isinstance(m, IFNeuron))


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_quant_warmup_outside_0_1_is_refused(value):
    with pytest.raises(ConfigError, match="quant_warmup"):
        TrainConfig(quant_warmup=value).validate()
    with pytest.raises(ConfigError, match="quant_warmup_mode"):
        TrainConfig(quant_warmup=0.5, quant_warmup_mode="linear").validate()


def test_a_relu_checkpoint_is_reused_under_another_qcfs_only_option_and_a_qcfs_one_is_not(spec, digits, tmp_path):
    from dataclasses import replace

    _train(spec, digits, cfg(), tmp_path / "relu.pt")
    _train(spec, digits, cfg(quant_warmup=0.5, lambda_quantile=0.9), tmp_path / "relu.pt")  # loaded, not refused
    s = replace(spec, activation="qcfs")
    _train(s, digits, cfg(), tmp_path / "qcfs.pt")
    with pytest.raises(CheckpointError, match="quant_warmup"):
        _train(s, digits, cfg(quant_warmup=0.5), tmp_path / "qcfs.pt")


def _benchmark(name: str):
    """A script of benchmarks/ imported as a module (they are run by hand, not installed)."""
    import importlib.util

    found = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(found)
    found.loader.exec_module(mod)
    return mod


def test_every_recipe_study_variant_is_a_valid_recipe_and_names_trained_relu_twins():
    """Each variant's recipe validates; a variant that starts warm or distills names the ReLU variant whose ANN it
    starts from or learns from; the fast recipe's variants are cold unless they say warm."""
    study = _benchmark("recipe_study")
    for variant in study.VARIANTS:
        activation, cfg = study.config(variant, 10, 0)
        assert cfg.epochs == 10 and cfg.recipe == f"study-{variant}"
        assert (variant in study.INITS) == cfg.warm_start, variant
        assert (variant in study.TEACHERS) == (cfg.distill > 0), variant
    for variant, twin in {**study.INITS, **study.TEACHERS}.items():
        assert study.VARIANTS[variant][0] == "qcfs" and study.VARIANTS[twin][0] == "relu"
    assert study.config("qcfs-fast-warm-lr0.02", 10, 0)[1].lr == 0.02
    assert study.config("qcfs-fast-warm-kd0.9", 10, 0)[1].distill == 0.9
    assert study.config("qcfs-fast-warm-halving0.3", 10, 0)[1].quant_warmup == 0.3
    assert study.config("qcfs-fast-warm-four", 10, 0)[1].quant_warmup == 0.0


def test_the_qcfs_levels_diagnosis_scores_the_profiles_ann_and_its_twin(ci_run):
    """benchmarks/qcfs_levels.py reads a QCFS ANN as the profile measured it (its published row is the run's ANN
    accuracy to the digit), and its ReLU twin as the run measured that."""
    from icsnn_core.data import load_dataset

    mod = _benchmark("qcfs_levels")
    ckpt = next((ci_run / "checkpoints").glob("*qcfs4*.pt"))
    with pytest.raises(ConfigError, match="does not name a QCFS checkpoint"):
        mod.relu_twin(mod.relu_twin(ckpt))
    rows = list(csv.DictReader((ci_run / "results.csv").open()))
    ann = {r["ann"]: float(r["ann_accuracy"]) for r in rows}
    test = load_dataset("digits").test.subset(int(rows[0]["n_test"]))
    got = {(r["reading"], r["levels"]): r["accuracy"] for r in mod.readings(ckpt, test, 256)}
    assert set(got) == {("relu twin", ""), ("published", 4), ("more levels", 8), ("more levels", 16),
                        ("more levels", 64), ("floor off", "")}
    assert round(got[("published", 4)], 4) == ann["qcfs"] and round(got[("relu twin", "")], 4) == ann["relu"]
    gaps = {(r["reading"], r["levels"]): (r["gap_to_relu"], r["gap_se"]) for r in mod.readings(ckpt, test, 256)}
    assert gaps[("relu twin", "")] == ("", "")
    gap, se = gaps[("published", 4)]
    assert gap == pytest.approx(ann["relu"] - ann["qcfs"], abs=1e-4) and se >= 0
    # a twin named explicitly (--twins): here the QCFS ANN itself, so its published reading is 0 +- 0 below it
    itself = {(r["reading"], r["levels"]): r for r in mod.readings(ckpt, test, 256, twin_path=ckpt)}
    assert itself[("relu twin", "")]["accuracy"] == pytest.approx(ann["qcfs"], abs=1e-4)
    assert (itself[("published", 4)]["gap_to_relu"], itself[("published", 4)]["gap_se"]) == (0.0, 0.0)
    with pytest.raises(SystemExit, match="1 --twins for 2 --checkpoints"):
        mod.main(["--checkpoints", str(ckpt), str(ckpt), "--twins", str(ckpt), "--data-root", "unused"])


def test_the_qcfs_levels_diagnosis_replaces_its_own_rows_and_keeps_the_others(ci_run, tmp_path):
    """A rerun of benchmarks/qcfs_levels.py replaces the rows of the checkpoint it reads and keeps another
    checkpoint's (whose file may not be here to read again)."""
    from icsnn_core.results import read_rows, write_rows

    mod = _benchmark("qcfs_levels")
    ckpt = next((ci_run / "checkpoints").glob("*qcfs4*.pt"))
    out = tmp_path / "levels.csv"
    other = {c: "" for c in mod.COLUMNS} | {"checkpoint": "elsewhere-qcfs4.pt", "reading": "published",
                                              "levels": "4", "accuracy": "50.0", "n_test": "100"}
    write_rows(out, [other], mod.COLUMNS)
    argv = ["--checkpoints", str(ckpt), "--dataset", "digits", "--data-root", "unused", "--n-test", "100",
            "--out", str(out)]
    mod.main(argv)
    first = read_rows(out)
    mod.main(argv)
    again = read_rows(out)
    assert [r for r in again if r["checkpoint"] == "elsewhere-qcfs4.pt"] == [other]
    ours = [(r["reading"], r["levels"], r["accuracy"]) for r in again if r["checkpoint"] == ckpt.name]
    assert len(ours) == 6 == len(set(ours))  # twin, L = 4, three more levels, no floor: once each
    assert ours == [(r["reading"], r["levels"], r["accuracy"]) for r in first if r["checkpoint"] == ckpt.name]


def test_the_paired_gap_and_its_standard_error_in_closed_form():
    """Four images: the twin gets 1, 2, 3 right, the other 3, 4: differences 1, 1, 0, -1, mean 1/4, variance
    11/16, standard error sqrt(11/16 / 4) = sqrt(11) / 8, in points x 100."""
    import math

    mod = _benchmark("qcfs_levels")
    twin, other = torch.tensor([1, 1, 1, 0], dtype=torch.bool), torch.tensor([0, 0, 1, 1], dtype=torch.bool)
    gap, se = mod.paired_gap(twin, other)
    assert gap == pytest.approx(25.0) and se == pytest.approx(100 * math.sqrt(11) / 8)
    assert mod.paired_gap(twin, twin) == (0.0, 0.0)


def test_distillation_loss_in_closed_form():
    """Uniform student logits against a teacher at softmax (1/4, 3/4): KL = 1/4 ln(1/2) + 3/4 ln(3/2) at tau 1;
    at tau 2 the teacher's softmax is (1/(1+sqrt 3), sqrt 3/(1+sqrt 3)) and the term is scaled by tau^2 = 4."""
    from math import log, sqrt

    from icsnn_core.train import distillation_loss
    out, y = torch.zeros(1, 2), torch.tensor([1])
    teacher = torch.tensor([[0.0, log(3.0)]])
    ce = log(2.0)
    kl1 = 0.25 * log(0.5) + 0.75 * log(1.5)
    assert distillation_loss(out, y, None, TrainConfig()).item() == pytest.approx(ce)
    assert distillation_loss(out, y, teacher, TrainConfig(distill=1.0, distill_temperature=1.0)).item() == pytest.approx(kl1)
    assert distillation_loss(out, y, teacher, TrainConfig(distill=0.5, distill_temperature=1.0)).item() == \
        pytest.approx(0.5 * ce + 0.5 * kl1)
    p = 1 / (1 + sqrt(3.0))
    kl2 = p * log(2 * p) + (1 - p) * log(2 * (1 - p))
    assert distillation_loss(out, y, teacher, TrainConfig(distill=1.0, distill_temperature=2.0)).item() == \
        pytest.approx(4 * kl2)
    assert distillation_loss(teacher, y, teacher, TrainConfig(distill=1.0)).item() == pytest.approx(0.0, abs=1e-7)


def test_distilling_needs_a_teacher_leaves_it_unchanged_and_changes_the_student(straight, spec, digits, tmp_path):
    teacher, _ = straight
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    with pytest.raises(ConfigError, match="no teacher"):
        _train(spec, digits, cfg(distill=0.9), tmp_path / "none.pt")
    assert not (tmp_path / "none.pt").exists()
    qspec = ModelSpec("digits-cnn", width=0.25, in_channels=1, mean=digits.mean, std=digits.std, activation="qcfs")
    plain = _train(qspec, digits, cfg(), tmp_path / "plain.pt")
    taught = _train(qspec, digits, cfg(distill=0.9), tmp_path / "taught.pt", teacher=teacher)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training
    assert _differs(plain, taught)
    _train(qspec, digits, cfg(distill=0.9), tmp_path / "again.pt", teacher=teacher, stop_after=1)
    _assert_same_weights(taught, _train(qspec, digits, cfg(distill=0.9), tmp_path / "again.pt", teacher=teacher))


@pytest.mark.parametrize("distill, tau", [(-0.1, 4.0), (1.5, 4.0), (0.5, 0.0)])
def test_distill_outside_its_range_is_refused(distill, tau):
    with pytest.raises(ConfigError, match="distill"):
        TrainConfig(distill=distill, distill_temperature=tau).validate()


def test_warm_start_copies_every_weight_but_the_lambdas_and_refuses_another_network(straight, spec, digits):
    from icsnn_core.neuron import neurons
    from icsnn_core.train import warm_start
    relu, _ = straight
    qspec = replace(spec, activation="qcfs")
    model = qspec.build()
    lams = {name: float(n.lam.detach()) for name, n in neurons(model)}
    warm_start(model, relu)
    theirs = relu.state_dict()
    for k, v in model.state_dict().items():
        if k.endswith(".lam"):
            continue
        assert torch.equal(v, theirs[k]), k
    assert {name: float(n.lam.detach()) for name, n in neurons(model)} == lams  # untouched: set from the data later
    with pytest.raises(ConfigError, match="another network"):
        warm_start(replace(qspec, width=0.5).build(), relu)


def test_a_warm_run_starts_from_its_init_leaves_it_unchanged_and_resumes_exactly(straight, spec, digits, tmp_path):
    relu, _ = straight
    before = {k: v.clone() for k, v in relu.state_dict().items()}
    qspec = replace(spec, activation="qcfs")
    with pytest.raises(ConfigError, match="no model to start from"):
        _train(qspec, digits, cfg(warm_start=True), tmp_path / "none.pt")
    assert not (tmp_path / "none.pt").exists()
    # at a vanishing learning rate one epoch leaves the weights where the warm start put them
    still = _train(qspec, digits, cfg(warm_start=True, epochs=1, lr=1e-12), tmp_path / "still.pt", init=relu)
    cold = _train(qspec, digits, cfg(epochs=1, lr=1e-12), tmp_path / "cold.pt")
    for name, p in still.named_parameters():
        if not name.endswith(".lam"):
            assert torch.allclose(p, before[name], atol=1e-9), name
    assert any(not torch.allclose(p, before[name], atol=1e-3) for name, p in cold.named_parameters()
               if not name.endswith(".lam"))
    assert all(torch.equal(before[k], v) for k, v in relu.state_dict().items())
    warm = _train(qspec, digits, cfg(warm_start=True), tmp_path / "warm.pt", init=relu)
    _train(qspec, digits, cfg(warm_start=True), tmp_path / "again.pt", init=relu, stop_after=1)
    _assert_same_weights(warm, _train(qspec, digits, cfg(warm_start=True), tmp_path / "again.pt", init=relu))


def test_the_fast_recipe_starts_qcfs_warm_and_a_relu_ann_ignores_it(straight, spec, digits, tmp_path):
    from icsnn_core.train import RECIPES, weights_digest
    assert RECIPES["fast"].warm_start and not RECIPES["paper"].warm_start
    relu, path = straight
    # a ReLU ANN needs no init: the same weights as cold, and its finished checkpoint loads under either
    _assert_same_weights(relu, _train(spec, digits, cfg(warm_start=True), tmp_path / "relu.pt"))
    _assert_same_weights(relu, _train(spec, digits, cfg(warm_start=True), path))
    assert "init" not in load_checkpoint(tmp_path / "relu.pt")
    qspec = replace(spec, activation="qcfs")
    _train(qspec, digits, cfg(warm_start=True, epochs=2), tmp_path / "warm.pt", init=relu, stop_after=1)
    assert load_checkpoint(tmp_path / "warm.pt")["init"] == weights_digest(relu)


def test_weights_digest_tells_every_weight_apart(straight):
    from icsnn_core.train import weights_digest
    relu, _ = straight
    other = copy.deepcopy(relu)
    assert weights_digest(other) == weights_digest(relu)
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-7  # one float's last bits
    assert weights_digest(other) != weights_digest(relu)


def test_a_warm_checkpoint_is_refused_with_another_init_and_left_as_it_was(straight, spec, digits, tmp_path):
    relu, _ = straight
    qspec = replace(spec, activation="qcfs")
    path = tmp_path / "warm.pt"
    _train(qspec, digits, cfg(warm_start=True), path, init=relu, stop_after=1)
    before = path.read_bytes()
    other = _train(spec, digits, cfg(seed=1), tmp_path / "other-relu.pt")  # another ReLU twin: another seed
    with pytest.raises(CheckpointError, match="started from another model"):
        _train(qspec, digits, cfg(warm_start=True), path, init=other)
    assert path.read_bytes() == before
