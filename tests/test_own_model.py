"""Issue 14: the library as a user meets it, with their own model and their own data.

User-defined modules are built here (an nn.Sequential LeNet, a custom module with batch norm, F.relu, a residual
add, adaptive average pooling and .view, a QCFS version); the data are scikit-learn's digits or made in the test."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import icsnn_core as ic
from icsnn_core.cli import main
from icsnn_core.convert import thresholds_from_lambda
from icsnn_core.errors import CalibrationWarning, ConfigError, ThresholdWarning
from icsnn_core.neuron import IFNeuron, ann_kind, neurons

ROOT = Path(__file__).resolve().parents[1]


def lenet(act=nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), act(), nn.AvgPool2d(2), nn.Conv2d(6, 12, 3, padding=1), act(),
                         nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12 * 2 * 2, 32), act(), nn.Linear(32, 10))


class BNResNet(nn.Module):
    """Batch norm, F.relu, a residual add, adaptive average pooling and .view."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 2 * 2, 10)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)) + h)
        h = F.adaptive_avg_pool2d(h, 2)
        return self.fc(h.view(h.size(0), -1))


@pytest.fixture(scope="module")
def digits():
    d = ic.load_dataset("digits")
    return d.train, d.test


def fit(model: nn.Module, split: ic.Split, steps: int = 150) -> nn.Module:
    """A user's own training: full-batch Adam on the digits (a few seconds)."""
    torch.manual_seed(0)
    x, y = split.images(), split.y
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained_bn(digits):
    torch.manual_seed(0)
    return fit(BNResNet(), digits[0].subset(400), 40)


def snn_of(model: nn.Module, train: ic.Split) -> nn.Module:
    snn = ic.convert(model)
    ic.balance_thresholds(snn, train, images=256)
    return snn


# --- item 1 and 11: every node classified, the rest refused naming node and fix ----------------------------------

class Wrap(nn.Module):
    """conv -> op -> linear: one operation under test between two linear layers."""

    def __init__(self, op):
        super().__init__()
        self.conv, self.op, self.fc = nn.Conv2d(1, 2, 3, padding=1), op, nn.Linear(2 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(self.op(self.conv(x)).flatten(1))


class Square(nn.Module):
    def forward(self, x):
        return x * x


class Abs(nn.Module):
    def forward(self, x):
        return torch.relu(x).abs()


class Clip(nn.Module):
    def forward(self, x):
        return x.clamp(0, 1)


class SoftmaxOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return F.softmax(self.fc(F.relu(x.flatten(1))), dim=1)


REFUSED = {  # model, a phrase of the message
    "abs": (Wrap(Abs()), r"node 'abs.*Tensor\.abs"),
    "hardtanh": (Wrap(nn.Hardtanh()), r"Hardtanh module"),
    "x*x": (Wrap(Square()), r"multiplies or divides two tensors"),
    "softmax": (SoftmaxOut(), r"softmax.*return the logits"),
    "sigmoid": (Wrap(nn.Sigmoid()), r"Sigmoid module"),
    "max-pool": (Wrap(nn.MaxPool2d(1)), r"instead of max pooling"),
    "F.max_pool2d": (Wrap(lambda h: F.max_pool2d(h, 1)), r"max_pool2d"),
    "leaky": (Wrap(nn.LeakyReLU()), r"LeakyReLU module.*replace it with nn.ReLU.*IFNeuron\(activation='qcfs'\)"),
    "gelu": (Wrap(nn.GELU()), r"GELU module.*replace it with nn.ReLU"),
    "clamp with max": (Wrap(Clip()), r"clamps with a maximum"),
    "layer norm": (Wrap(nn.LayerNorm([2, 8, 8])), r"LayerNorm module.*BatchNorm"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_operations_without_a_spiking_equivalent_are_refused(name):
    model, phrase = REFUSED[name]
    with pytest.raises(ConfigError, match="Fix:") as e:
        ic.convert(model)
    assert re.search(phrase, str(e.value)), str(e.value)
    if name in ("leaky", "gelu", "abs", "sigmoid"):
        assert "max pool" not in str(e.value)


class Spellings(nn.Module):
    """Every spelling of ReLU, and the linear operations a user writes: a constant scale, a division by a number,
    a normalisation by buffers, cat, mean, slicing, dropout."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.full((1, 1, 1, 1), 0.5))
        self.c1, self.c2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)
        self.drop, self.fc = nn.Dropout(0.5), nn.Linear(4 * 4 * 4 + 4, 10)

    def forward(self, x):
        x = (x - self.mean) / 0.25
        a = self.c1(x).clamp(min=0)
        b = torch.clamp_min(-self.c1(x), 0)
        h = torch.cat([a, b], 1)
        h = self.c2(2.0 * h).relu()
        g = torch.relu(h).mean((2, 3))
        h = F.avg_pool2d(F.relu(h[:, :, :, :]), 2) / 2
        return self.fc(self.drop(torch.cat([h.flatten(1), g], 1)))


def test_every_relu_spelling_becomes_a_neuron_and_linear_ops_pass():
    torch.manual_seed(0)
    model = Spellings().eval()
    x = torch.rand(3, 1, 8, 8)
    snn = ic.convert(model)
    assert len(list(neurons(snn))) == 5  # clamp(min=0), clamp_min(0), .relu(), torch.relu, F.relu
    assert torch.allclose(snn(x), model(x), atol=1e-6)


def test_a_model_whose_only_relu_is_clamp_converts():
    class ClampNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(self.a(x).clamp(min=0))

    assert len(list(neurons(ic.convert(ClampNet())))) == 1


# --- item 2: the user's model untouched; reconversion idempotent ------------------------------------------------

def test_the_users_model_is_untouched(trained_bn):
    before = {k: v.clone() for k, v in trained_bn.state_dict().items()}
    x = torch.rand(4, 1, 8, 8)
    out = trained_bn(x)
    snn = ic.convert(trained_bn)
    after = trained_bn.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    BNResNet().load_state_dict(after)  # still loads into its class
    assert isinstance(trained_bn.bn1, nn.BatchNorm2d) and torch.equal(trained_bn(x), out)
    assert torch.allclose(snn(x), out, atol=1e-5)


def test_converting_twice_keeps_thresholds_and_v0(trained_bn, digits):
    train, test = digits
    snn = snn_of(trained_bn, train)
    ic.Method.make("opi").apply(snn, 8)
    again = ic.convert(snn)
    assert [float(n.threshold) for _, n in neurons(again)] == [float(n.threshold) for _, n in neurons(snn)]
    assert all(torch.equal(a.v0, b.v0) for (_, a), (_, b) in zip(neurons(again), neurons(snn)))
    x = test.images(slice(0, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThresholdWarning)  # the thresholds count as set in the copy too
        assert torch.equal(ic.simulate(again, x, 8), ic.simulate(snn, x, 8))


# --- item 3: ANN mode after simulate ------------------------------------------------------------------------------

def test_the_model_is_an_ann_again_after_simulate(trained_bn, digits):
    train, test = digits
    snn = snn_of(trained_bn, train)
    x = test.images(slice(0, 16))
    ann = snn(x)
    ic.simulate(snn, x, 8)
    assert all(n.v is not None for _, n in neurons(snn))  # v(T) stays readable
    assert torch.equal(snn(x), ann)
    ic.accuracy_curve(snn, test.subset(16), 4)
    assert torch.equal(snn(x[:5]), ann[:5])


# --- item 4: any data form, the same numbers ----------------------------------------------------------------------

def test_tensor_dataset_loader_and_pair_give_the_split_numbers(trained_bn, digits):
    train, test = digits
    train, test = train.subset(200), test.subset(64)
    xs, ys = train.images(), train.y
    forms = [train, (xs, ys), TensorDataset(xs, ys), DataLoader(TensorDataset(xs, ys), batch_size=33)]
    results = []
    for data in forms:
        snn = ic.convert(trained_bn)
        thr = ic.balance_thresholds(snn, data)
        ic.Method.make("ic-snn", residual="clip", calib_images=64).apply(snn, 4, data)
        v0 = [n.v0.clone() for _, n in neurons(snn)]
        results.append((thr, v0, ic.ann_accuracy(snn, data), ic.accuracy_curve(snn, (test.images(), test.y), 4)))
    for thr, v0, acc, curve in results[1:]:
        assert thr == results[0][0] and acc == results[0][2]
        assert all(torch.equal(a, b) for a, b in zip(v0, results[0][1]))
        assert np.array_equal(curve, results[0][3])


def test_split_from_tensors_reads_uint8_as_pixels():
    x = torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8)
    split = ic.Split.from_tensors(x, torch.arange(5))
    assert torch.allclose(split.images(), x.float() / 255)
    assert ic.as_split(split) is split
    with pytest.raises(ConfigError, match="integer class indices"):
        ic.Split.from_tensors(x.float(), torch.rand(5))
    with pytest.raises(ConfigError, match="do not pair up"):
        ic.Split.from_tensors(x.float(), torch.arange(4))
    with pytest.raises(ConfigError, match="data.train"):
        ic.as_split(ic.load_dataset("digits"))


# --- item 5: value range ------------------------------------------------------------------------------------------

def test_rate_coding_refuses_values_outside_0_1_and_uint8_is_refused(trained_bn, digits):
    train, test = digits
    snn = snn_of(trained_bn, train)
    x = test.images(slice(0, 8))
    with pytest.raises(ConfigError, match="normalise inside the model"):
        ic.simulate(snn, (x - 0.5) / 0.25, 4, coding="rate")
    ic.simulate(snn, (x - 0.5) / 0.25, 4)  # direct coding takes any real values
    with pytest.raises(ConfigError, match="uint8"):
        ic.simulate(snn, (x * 255).to(torch.uint8), 4)


# --- item 6: Algorithm 1's image shape ----------------------------------------------------------------------------

def test_algorithm_1_reads_the_image_shape_from_the_data(trained_bn, digits):
    train, _ = digits
    inferred, explicit = snn_of(trained_bn, train), snn_of(trained_bn, train)
    method = ic.Method.make("ic-snn", init="weight")
    method.apply(inferred, 8, train)
    method.apply(explicit, 8, image_shape=(1, 8, 8))
    assert all(torch.equal(a.v0, b.v0) for (_, a), (_, b) in zip(neurons(inferred), neurons(explicit)))
    with pytest.raises(ConfigError, match=r"image_shape \(3, 8, 8\) does not fit the model.*Fix"):
        method.apply(explicit, 8, image_shape=(3, 8, 8))
    with pytest.raises(ConfigError, match="needs the shape of one input"):
        method.apply(explicit, 8)


# --- item 7: method constructors ---------------------------------------------------------------------------------

def test_the_plain_constructor_is_make():
    assert ic.Method("ic-snn") == ic.Method.make("ic-snn")
    assert ic.Method("ic-snn").label == "ic-snn[init=data,compensation=printed,residual=raw,granularity=layer,calib_images=128]"
    assert ic.Method("cos") == ic.Method.make("cos", rho=4, iterations=1, shift="authors")
    with pytest.raises(ConfigError, match=r"'snn' does not read option compensation='potential' \(it reads no options"):
        ic.Method.make("snn", compensation="potential")
    with pytest.raises(ConfigError, match="does not read option residual.*init='weight'"):
        ic.Method("i-snn", init="weight", residual="clip")
    with pytest.raises(ConfigError, match="unknown residual"):
        ic.Method("ic-snn", residual="median")
    assert ic.Method("i-snn").with_options(init="weight") == ic.Method("i-snn", init="weight")


# --- items 8 and 9: warnings ---------------------------------------------------------------------------------------

def silent_layer_model() -> nn.Sequential:
    """Most hidden neurons receive a negative current: the raw mean residual, and the printed v(0), is below 0."""
    first, last = nn.Linear(4, 4), nn.Linear(4, 2)
    with torch.no_grad():
        first.weight.copy_(torch.eye(4))
        first.bias.copy_(torch.tensor([0.2, -0.5, -0.5, -0.5]))
    return nn.Sequential(nn.Flatten(), first, nn.ReLU(), last)


def test_a_negative_calibrated_v0_warns_and_names_the_readings_that_work():
    x = torch.rand(64, 4) * 0.3
    data = (x, torch.zeros(64, dtype=torch.long))
    snn = ic.convert(silent_layer_model())
    ic.balance_thresholds(snn, data)
    for name in ("i-snn", "ic-snn"):
        with pytest.warns(CalibrationWarning, match=r"residual='clip'.*init='weight'.*Ambiguities"):
            ic.Method.make(name).apply(snn, 8, data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        ic.Method.make("ic-snn", residual="clip").apply(snn, 8, data)


def test_a_calibration_that_scores_below_plain_conversion_warns():
    """Two IF neurons fed 0.6 and 0.4 (class 0 has the larger): with v(0) = 0, by T = 2 neuron 0 fired once and
    neuron 1 never, so class 0 wins; a v(0) of 1.5 on neuron 1 makes it fire twice and class 1 win."""
    from icsnn_core.calibration import set_initial_potential

    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        for lin in (model[0], model[2]):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    snn = ic.convert(model)
    for _, n in ic.neurons(snn):
        n.set_threshold(1.0)
    data = ic.Split.from_tensors(torch.tensor([[0.6, 0.4]] * 4), torch.zeros(4, dtype=torch.long))
    method = ic.Method("ic-snn")
    hurting = [torch.tensor([0.0, 1.5])]
    set_initial_potential(snn, hurting)
    with pytest.warns(CalibrationWarning, match=r"T = 2 .* below plain conversion .*\(0.0% against 100.0%\).*residual='clip'"):
        method._warn_if_worse_than_plain(snn, data, 2, hurting, {})
    assert torch.equal(next(n for _, n in ic.neurons(snn)).v0, hurting[0])  # the calibrated v(0) is kept
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        helping = [torch.tensor([0.5, 0.0])]
        set_initial_potential(snn, helping)
        method._warn_if_worse_than_plain(snn, data, 2, helping, {})


def test_the_check_against_plain_conversion_runs_unless_apply_is_told_not_to(monkeypatch):
    """``apply(check=False)`` (as reproduce calls it: it measures plain conversion itself) skips the check's two
    simulations; by default a non-negative data-based v(0) is checked."""
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    snn = ic.convert(model)
    for _, n in ic.neurons(snn):
        n.set_threshold(1.0)
    data = ic.Split.from_tensors(torch.rand(8, 2), torch.zeros(8, dtype=torch.long))
    checked = []
    monkeypatch.setattr(ic.Method, "_warn_if_worse_than_plain", lambda self, *a: checked.append(a[2]))
    method = ic.Method("ic-snn", residual="clip")
    method.apply(snn, 4, data, check=False)
    assert checked == []
    method.apply(snn, 4, data)
    assert checked == [4]


def test_simulating_unset_thresholds_warns():
    snn = ic.convert(silent_layer_model())
    x = torch.rand(4, 4)
    with pytest.warns(ThresholdWarning, match="balance_thresholds"):
        ic.simulate(snn, x, 4)
    ic.balance_thresholds(snn, (x, torch.zeros(4, dtype=torch.long)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThresholdWarning)
        ic.simulate(snn, x, 4)


# --- item 10: feature vectors ------------------------------------------------------------------------------------

def test_an_mlp_on_feature_vectors_approaches_the_ann(digits):
    train, test = digits
    flat = lambda s: (s.images().flatten(1), s.y)  # noqa: E731 - [N, 64] feature vectors
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    snn = ic.convert(mlp)
    ic.balance_thresholds(snn, flat(train), quantile=1.0)
    x = flat(test)[0][:64]
    ann = snn(x)
    out = ic.simulate(snn, x, 512).mean(0)  # the output averaged over T steps
    assert (out - ann).abs().max() < 0.05 * ann.abs().max()
    assert ic.accuracy_curve(snn, flat(test), 4).shape == (4,)


# --- QCFS in one's own model ---------------------------------------------------------------------------------------

def test_a_qcfs_user_model_converts_with_its_lambdas():
    model = lenet(lambda: IFNeuron(activation="qcfs"))
    snn = ic.convert(model)
    assert ann_kind(snn) == "qcfs" and len(list(neurons(snn))) == 3
    assert thresholds_from_lambda(snn) == [pytest.approx(2.0)] * 3
    ic.Method.make("qcfs").apply(snn, 4)
    with pytest.raises(ConfigError, match=r"IFNeuron\(activation='qcfs'\) is a drop-in for nn.ReLU"):
        ic.Method.make("qcfs").apply(ic.convert(lenet()), 4)


# --- item 12: the command line on a user's file.py:Class and .npz -----------------------------------------------

USER_FILE = '''
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width * 4, 10)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.conv2(h) + h)
        return self.fc(F.adaptive_avg_pool2d(h, 2).view(x.shape[0], -1))


class NeedsArgs(nn.Module):
    def __init__(self, width):
        super().__init__()
'''


@pytest.fixture(scope="module")
def user_files(tmp_path_factory, digits):
    root = tmp_path_factory.mktemp("user")
    (root / "mynet.py").write_text(USER_FILE)
    train, test = digits
    to_uint8 = lambda s: (s.images()[:, 0] * 255).round().to(torch.uint8).numpy()  # noqa: E731 - [N, 8, 8]
    np.savez(root / "mydigits.npz", x_train=to_uint8(train), y_train=train.y.numpy(), x_test=to_uint8(test),
             y_test=test.y.numpy())
    torch.manual_seed(0)
    torch.save(_import_user_file(root).Net().state_dict(), root / "state.pt")  # saved as a user saves weights
    return root


def _import_user_file(root: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("mynet", root / "mynet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


@pytest.mark.filterwarnings("ignore::icsnn_core.errors.CalibrationWarning")  # the printed reading, on batch norm
def test_cli_trains_and_evaluates_a_users_class_on_an_npz(user_files, tmp_path):
    model, data = f"{user_files / 'mynet.py'}:Net", str(user_files / "mydigits.npz")
    ckpt, out = tmp_path / "net.pt", tmp_path / "out"
    assert main(["train", "--model", model, "--dataset", data, "--epochs", "2", "--batch-size", "64",
                 "--checkpoint", str(ckpt), "--quiet"]) == 0
    assert main(["evaluate", "--model", model, "--checkpoint", str(ckpt), "--dataset", data, "--methods", "snn",
                 "ic-snn", "--T", "4", "8", "--n-test", "100", "--out", str(out), "--quiet"]) == 0
    rows = _rows(out / "results.csv")
    assert len(rows) == 4 and all("mynet.py:Net" in r and "mydigits" in r for r in rows)


def test_cli_evaluates_a_state_dict_saved_by_the_user(user_files, tmp_path):
    out = tmp_path / "out"
    assert main(["evaluate", "--model", f"{user_files / 'mynet.py'}:Net", "--checkpoint", str(user_files / "state.pt"),
                 "--dataset", str(user_files / "mydigits.npz"), "--methods", "opi", "--T", "4", "--n-test", "50",
                 "--out", str(out), "--quiet"]) == 0
    assert len(_rows(out / "results.csv")) == 1


def _bad_case(name: str, root: Path, tmp: Path) -> tuple[list[str], str]:
    model, data = f"{root / 'mynet.py'}:Net", str(root / "mydigits.npz")
    torch.save(nn.Linear(2, 2), tmp / "whole.pt")
    torch.save(nn.Linear(2, 2).state_dict(), tmp / "other.pt")
    np.savez(tmp / "partial.npz", x_train=np.zeros((2, 8, 8), np.uint8), y_train=np.zeros(2, np.int64))
    np.savez(tmp / "normalised.npz", x_train=np.full((2, 8, 8), -1.0), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((2, 8, 8)), y_test=np.zeros(2, np.int64))
    evaluate = ["evaluate", "--checkpoint", str(tmp / "whole.pt"), "--out", str(tmp / "out"), "--quiet"]
    good = ["evaluate", "--checkpoint", str(root / "state.pt"), "--out", str(tmp / "out"), "--quiet", "--model", model]
    cases = {
        "missing array": ([*good, "--dataset", str(tmp / "partial.npz")], "lacks the arrays x_test"),
        "values outside [0, 1]": ([*good, "--dataset", str(tmp / "normalised.npz")], "normalise inside the model"),
        "no such dataset file": ([*good, "--dataset", str(tmp / "none.npz")], "does not exist"),
        "wrong class name": ([*evaluate, "--model", f"{root / 'mynet.py'}:Nett", "--dataset", data],
                             "no torch.nn.Module class 'Nett' (it defines NeedsArgs, Net)"),
        "model file not found": ([*evaluate, "--model", f"{tmp / 'nowhere.py'}:Net", "--dataset", data],
                                 "does not exist"),
        "class needs arguments": ([*evaluate, "--model", f"{root / 'mynet.py'}:NeedsArgs", "--dataset", data],
                                  "cannot be built without arguments"),
        "no module": ([*evaluate, "--model", "no_such_package.mod:Net", "--dataset", data], "importing no_such_package"),
        "whole pickled module": ([*evaluate, "--model", model, "--dataset", data], "torch.save(model.state_dict(), path)"),
        "whole module without --model": ([*evaluate, "--dataset", data], "--model file.py:ClassName"),
        "weights of another class": ([*evaluate[:1], "--checkpoint", str(tmp / "other.pt"), *evaluate[3:], "--model",
                                      model, "--dataset", data], "do not fit Net"),
    }
    return cases[name]


@pytest.mark.parametrize("name", ["missing array", "values outside [0, 1]", "no such dataset file", "wrong class name",
                                  "model file not found", "class needs arguments", "no module", "whole pickled module",
                                  "whole module without --model", "weights of another class"])
def test_cli_refuses_a_users_bad_model_or_data_clearly(name, user_files, tmp_path, capsys):
    args, phrase = _bad_case(name, user_files, tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert phrase in err and err.startswith("icsnn: error: ") and "Fix" in err and "Traceback" not in err, err


def test_an_image_folder_of_ones_own_classes_loads(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        for cls in ("cat", "dog", "owl"):
            (tmp_path / part / cls).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(tmp_path / part / cls / f"{i}.png")
    data = ic.load_dataset(str(tmp_path))
    assert data.num_classes == 3 and tuple(data.train.x.shape) == (6, 1, 6, 6) and len(data.test) == 6


# --- item 4 and 13: the README's own-model example runs as printed ------------------------------------------------

def test_the_readme_own_model_example_runs():
    text = (ROOT / "README.md").read_text()
    section = text.split("### Your own model and data", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "Split.from_tensors" in code and "ic.convert(model)" in code
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    assert namespace["curve"][-1] > 80  # an SNN at T = 8 on the digits
