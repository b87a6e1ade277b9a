"""Energy counting in closed form: hand-made networks whose spike trains and synapses are known exactly."""
import math

import pytest
import torch
from torch import nn

from conftest import if_spike_count
from icsnn_core.data import Split, load_dataset
from icsnn_core.energy import EnergyCosts, EnergyMeter, ann_macs, synapses
from icsnn_core.errors import ConfigError
from icsnn_core.models import VGG16_CFG, build_model
from icsnn_core.neuron import IFNeuron, neurons
from icsnn_core.results import ENERGY_COLUMNS, ENERGY_LAYER_COLUMNS, read_rows
from icsnn_core.simulate import accuracy_curve

# conv 3x3, stride 2, padding 1 on a 4x4 map: input row r lies in the windows of rows {0} {0,1} {1} {1} of the 2x2
# output (edges have fewer synapses), so a pooled position (r, c) reaches ROWS[r] * ROWS[c] outputs per channel
ROWS = (1, 2, 1, 1)
CLASSES = 3


def two_layer(b2: float, w1: float = 1.0, thr2: float = 1.0) -> nn.Sequential:
    """8x8 image -> 1x1 conv (weight w1: the IF1 currents are the pixels) -> IF1 -> avg-pool 2 -> conv 3x3 stride 2
    padding 1 to 2 channels (weights 0, bias b2: IF2's current is b2 whatever IF1 does) -> IF2 -> linear readout."""
    conv1, conv2, readout = nn.Conv2d(1, 1, 1, bias=False), nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.Linear(8, CLASSES)
    with torch.no_grad():
        conv1.weight.fill_(w1)
        conv2.weight.zero_()
        conv2.bias.fill_(b2)
        readout.weight.fill_(0.1)
    n1, n2 = IFNeuron(), IFNeuron()
    n2.threshold.fill_(thr2)
    return nn.Sequential(conv1, n1, nn.AvgPool2d(2), conv2, n2, nn.Flatten(), readout).eval()


def hand_fanout() -> torch.Tensor:
    """IF1's fan-out: 2 output channels x the windows of its pooled position."""
    return torch.tensor([[2 * ROWS[r // 2] * ROWS[c // 2] for c in range(8)] for r in range(8)])


def run(model: nn.Module, x: torch.Tensor, T: int, coding: str = "direct"):
    meter = EnergyMeter(model, x.shape[1:], coding)
    split = Split(x, torch.zeros(len(x), dtype=torch.long), 1.0)
    accuracy_curve(model, split, T, coding=coding, batch_size=len(x), energy=meter)
    return meter.record


def test_fanout_with_padding_stride_and_pooling_is_the_hand_count():
    s = synapses(two_layer(0.0), (1, 8, 8))
    assert hand_fanout()[0].tolist() == [2, 2, 4, 4, 2, 2, 2, 2]
    assert torch.equal(s.fanout["1"][0], hand_fanout().int())
    assert torch.equal(s.fanout["4"], torch.full((2, 2, 2), CLASSES, dtype=torch.int32))  # the readout counts too
    assert torch.equal(s.presim_fanout["1"], s.fanout["1"]) and int(s.presim_fanout["4"].sum()) == 0  # readout
    assert torch.equal(s.input_fanout, torch.ones(1, 8, 8, dtype=torch.int32))  # the 1x1 conv
    assert s.first_layers == ["0"] and s.first_layer_macs == 64


# exact in binary floating point, so the closed form has no ties to round
PIXELS = (0.0, 0.125, 0.375, 0.5, 0.625, 0.875, 1.25, -0.5)


def images(n: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.tensor(PIXELS)[torch.randint(len(PIXELS), (n, 1, 8, 8), generator=g)]


def test_step_op_counts_are_exact_past_float32s_integers():
    """Sums of spikes x fan-outs far beyond 2**24 per step (VGG16's first layers at full width, large batches)
    equal the integer count."""
    from icsnn_core.neuron import step_op_counts

    g = torch.Generator().manual_seed(0)
    steps, batch, units = 3, 300, 1000
    fired = (torch.rand(steps, batch, units, generator=g) < 0.7).float()
    fanout = torch.randint(50_000, 70_000, (units,), generator=g)
    w = torch.stack([torch.ones(units), fanout.double(), 2 * fanout.double()], 1)
    exact = torch.einsum("sbu,uk->sk", fired.long(), torch.stack([torch.ones(units).long(), fanout, 2 * fanout], 1))
    got = step_op_counts(fired, w, steps)
    assert got.dtype == torch.float64 and float(got[:, 1].min()) > 2 ** 33
    assert torch.equal(got, exact.double())
    assert torch.equal(step_op_counts(fired.reshape(steps * batch, units), w, steps), got)  # time folded into batch


@pytest.mark.parametrize("b2", [0.375, -1.0])  # IF2 fires 3 times in 8, or never
def test_sops_and_macs_equal_the_hand_count_at_every_step(b2):
    x, T = images(), 8
    record = run(two_layer(b2), x, T)
    fan = hand_fanout().double()
    for t in range(1, T + 1):
        n1 = torch.tensor([[if_spike_count(float(v), 0.0, 1.0, t) for v in img.flatten()] for img in x]).double()
        n2 = if_spike_count(b2, 0.0, 1.0, t) if b2 > 0 else 0
        layer1, layer2 = float((n1 * fan.flatten()).sum()) / len(x), 8 * n2 * CLASSES
        rows = record.layers_at(t)
        assert rows[1]["sops_per_image"] == layer1 and rows[1]["spikes_per_image"] == float(n1.sum()) / len(x)
        assert rows[2]["sops_per_image"] == layer2 and rows[2]["spikes_per_image"] == 8 * n2
        assert rows[2]["firing_rate"] == n2 / t
        total = record.totals(t)
        assert total["sops_per_image"] == layer1 + layer2
        assert total["macs_per_image"] == 64 * t  # direct coding: the first layer's MACs at every step
        assert total["energy_per_image_uj"] == pytest.approx((64 * t * 4.6 + (layer1 + layer2) * 0.9) * 1e-6)
    if b2 < 0:
        assert all(r["sops_per_image"] == 0 for r in record.layers_at(T)[2:])  # a silent layer costs nothing


def test_cos_pays_for_its_pre_simulation():
    # pixels 1.5 fire at every step (before and after COS's shift), pixels -1 never; IF2 is driven by its bias 1.5
    x = torch.where(images() > 0.5, 1.5, -1.0)
    model, rho = two_layer(1.5), 3
    for _, n in neurons(model):
        n.presim, n.v0 = rho, n.threshold / 2  # COS: v(0) = V_th / 2 and rho pre-simulation steps
    fired = (x > 0).double()
    per_step = float((fired[:, 0] * hand_fanout()).sum()) / len(x) + 8 * CLASSES
    for T in (2, 5):  # shorter than rho (the network runs rho steps) and longer
        record = run(model, x, T)
        presim_sops = rho * float((fired[:, 0] * hand_fanout()).sum()) / len(x)  # IF2 feeds the readout only
        for t in range(1, T + 1):
            total = record.totals(t)
            assert total["presim_sops_per_image"] == presim_sops and total["presim_macs_per_image"] == 64 * rho
            assert total["sops_per_image"] == t * per_step + presim_sops
            assert total["macs_per_image"] == 64 * (t + rho)
            assert total["spikes_per_image"] == t * (float(fired.sum()) / len(x) + 8)


def test_rate_coded_input_spikes_cost_accumulates_not_macs():
    x = (images() > 0.5).float()  # 0/1 pixels: Bernoulli spikes with probability 0 or 1, known exactly
    record = run(two_layer(-1.0, w1=1.5), x, 4, coding="rate")
    ones = float(x.sum()) / len(x)
    for t in (1, 4):
        rows = record.layers_at(t)
        assert rows[0]["macs_per_image"] == 0 and rows[0]["sops_per_image"] == t * ones  # 1x1 conv: one synapse
        assert rows[0]["spikes_per_image"] == t * ones
        assert rows[1]["sops_per_image"] == t * float((x[:, 0] * hand_fanout()).sum()) / len(x)  # 1.5 > V_th


def test_a_residual_identity_shortcut_is_one_synapse():
    s = synapses(build_model("resnet20", 10, 3), (3, 32, 32))
    first = s.fanout[s.layers[0]]  # into block 1's conv1 (16 x 3x3) and, through the shortcut, its neuron2
    assert int(first.max()) == 16 * 9 + 1 and int(first[0, 0, 0]) == 16 * 4 + 1
    assert int(s.fanout[s.layers[-1]].max()) == 10


def _conv_macs(h: int, c_in: int, c_out: int, k: int = 3) -> int:
    return h * h * c_out * c_in * k * k


def test_ann_macs_of_vgg16_and_resnet20_are_the_counts_from_their_layer_shapes():
    # VGG16 (this project's: 13 convs, average pooling, classifier 512-4096-4096-10) at 32x32
    expected, c, h = 0, 3, 32
    for v in VGG16_CFG:
        if v == "A":
            h //= 2
        else:
            expected, c = expected + _conv_macs(h, c, v), v
    convs = expected
    expected += 512 * 4096 + 4096 * 4096 + 4096 * 10
    macs = ann_macs(build_model("vgg16", 10, 3), (3, 32, 32))
    assert sum(macs.values()) == expected == 332_111_872
    assert convs == 313_196_544  # the "313M" usually quoted for CIFAR VGG16 counts the convolutions
    # ResNet-20: a 3x3 stem, 3 stages of 3 basic blocks (16, 32, 64 channels), 1x1 shortcuts where the shape changes
    expected, c, h = _conv_macs(32, 3, 16), 16, 32
    for stage, width in enumerate((16, 32, 64)):
        for block in range(3):
            stride = 2 if stage > 0 and block == 0 else 1
            h //= stride
            expected += _conv_macs(h, c, width) + _conv_macs(h, width, width)
            if stride != 1 or c != width:
                expected += _conv_macs(h, c, width, k=1)
            c = width
    expected += 64 * 10
    assert sum(ann_macs(build_model("resnet20", 10, 3), (3, 32, 32)).values()) == expected == 40_813_184


def test_bad_energy_costs_are_refused():
    with pytest.raises(ConfigError, match="e_ac_pj.*Fix"):
        EnergyCosts(e_ac_pj=-1.0)
    with pytest.raises(ConfigError, match="coding"):
        EnergyMeter(two_layer(0.0), (1, 8, 8), "burst")


def _evaluate(out, energy: bool = True):
    from icsnn_core.methods import Method
    from icsnn_core.pipeline import Conversion, evaluate_methods

    torch.manual_seed(0)
    data = load_dataset("digits")
    model = build_model("digits-cnn", 10, 1, mean=data.mean, std=data.std)
    base = {"profile": "test", "dataset": "digits", "data_source": "sklearn", "arch": "digits-cnn", "width": 1,
            "bn": False, "epochs": 0}
    evaluate_methods(model, data, [Method.make("snn"), Method.make("cos", rho=2)], [1, 3], out_dir=out, base=base,
                     conversion=Conversion(threshold_images=64), n_test=16, progress=False, log=lambda m: None,
                     energy=energy)


def test_evaluate_writes_energy_files_with_a_row_per_t_and_no_energy_writes_none(tmp_path):
    _evaluate(tmp_path / "on")
    rows = read_rows(tmp_path / "on" / "energy.csv")
    assert tuple(rows[0]) == ENERGY_COLUMNS
    got = sorted((r["variant"].split("[")[0], int(r["T"]), int(r["t"])) for r in rows)
    assert got == sorted((m, T, t) for m in ("snn", "cos") for T in (1, 3) for t in range(1, T + 1))
    layers = read_rows(tmp_path / "on" / "energy_layers.csv")
    assert tuple(layers[0]) == ENERGY_LAYER_COLUMNS
    assert {(int(r["T"]), int(r["t"])) for r in layers} == {(1, 1), (3, 3)}
    assert sorted({int(r["layer"]) for r in layers}) == [0, 1, 2, 3, 4]  # the input and the 4 IF layers
    for r in rows:
        if r["t"] == r["T"]:  # the per-layer breakdown adds up to the network's count
            same = [x for x in layers if x["variant"] == r["variant"] and x["T"] == r["T"]]
            assert math.isclose(sum(float(x["sops_per_image"]) for x in same), float(r["sops_per_image"]), rel_tol=1e-6)
        cos = r["variant"].startswith("cos")
        assert int(r["latency"]) == int(r["t"]) + (2 if cos else 0)
        assert (float(r["presim_macs_per_image"]) > 0) == cos and r["git_commit"] and r["device"]
        assert float(r["ann_macs_per_image"]) == 460_416 and float(r["e_mac_pj"]) == 4.6
    _evaluate(tmp_path / "off", energy=False)
    assert (tmp_path / "off" / "results.csv").exists()
    assert not (tmp_path / "off" / "energy.csv").exists() and not (tmp_path / "off" / "energy_layers.csv").exists()


def test_cli_no_energy_flag(tmp_path):
    from icsnn_core.cli import main

    ckpt = tmp_path / "digits.pt"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--checkpoint", str(ckpt), "--quiet"]) == 0
    args = ["evaluate", "--checkpoint", str(ckpt), "--methods", "snn", "--T", "2", "--n-test", "8", "--quiet",
            "--threshold-images", "32"]
    assert main([*args, "--out", str(tmp_path / "off"), "--no-energy"]) == 0
    assert not (tmp_path / "off" / "energy.csv").exists()
    assert main([*args, "--out", str(tmp_path / "on"), "--e-ac-pj", "0.5"]) == 0
    assert {r["e_ac_pj"] for r in read_rows(tmp_path / "on" / "energy.csv")} == {"0.5"}
    assert main([*args, "--out", str(tmp_path / "bad"), "--e-mac-pj", "-1"]) == 2


class _Functional(nn.Module):
    """The same network as a module-built one, pooled with torch.nn.functional and a mean (as users write it)."""

    def __init__(self, module_built: bool) -> None:
        super().__init__()
        self.module_built = module_built
        self.conv, self.if1, self.fc = nn.Conv2d(1, 2, 3, padding=1), IFNeuron(), nn.Linear(2, CLASSES)
        self.pool = nn.AdaptiveAvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.if1(self.conv(x))
        if self.module_built:
            return self.fc(self.pool(x).flatten(1).view(-1, 2, 4).sum(2))
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1).view(-1, 2, 4).mean(2))


def test_functional_pooling_and_means_count_as_their_modules_do():
    s, f = synapses(_Functional(True), (1, 6, 6)), synapses(_Functional(False), (1, 6, 6))
    assert torch.equal(s.fanout["if1"], f.fanout["if1"])
    assert torch.equal(f.fanout["if1"], torch.full((2, 6, 6), CLASSES, dtype=torch.int32))  # each pixel reaches 10 outputs


def test_a_model_whose_synapses_cannot_be_counted_is_still_measured(tmp_path):
    """Energy is secondary: an operation the counting does not know costs the energy files, not the accuracy."""
    from icsnn_core.methods import Method
    from icsnn_core.pipeline import Conversion, evaluate_methods

    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.act(self.fc1(x)).permute(0, 1))  # linear, but unknown to the counting

    x, y = torch.rand(64, 4), torch.randint(0, 3, (64,))
    from icsnn_core.data import Dataset
    small = Dataset("made-up", Split(x, y, 1.0), Split(x[:16], y[:16], 1.0), 3, "made in the test")
    logs: list[str] = []
    rows = evaluate_methods(Odd(), small, [Method("snn")], [2], conversion=Conversion(threshold_images=64),
                            out_dir=tmp_path, base={"arch": "odd"}, progress=False, log=logs.append)
    assert len(rows) == 1 and (tmp_path / "results.csv").exists() and not (tmp_path / "energy.csv").exists()
    assert any("energy not counted" in m and "permute" in m for m in logs), logs


def test_cost_to_reach_finds_the_first_T_within_each_margin_and_the_table_puts_them_side_by_side():
    import pandas as pd

    from icsnn_core.report import cost_table, cost_to_reach

    trade = pd.DataFrame({"arch": "a", "ann": "relu", "method": ["m"] * 3 + ["n"] * 3, "variant": ["m"] * 3 + ["n"] * 3,
                          "T": [2, 4, 8] * 2, "latency": [6, 8, 12, 2, 4, 8], "ann_accuracy": 90.0,
                          "accuracy": [88.0, 89.5, 89.95, 50.0, 60.0, 70.0],
                          "energy_per_image_uj": [1.0, 2.0, 4.0, 1.0, 2.0, 4.0],
                          "energy_ratio": [0.1, 0.2, 0.4, 0.1, 0.2, 0.4]})
    cost = cost_to_reach(trade)
    m = cost[cost["method"] == "m"].set_index("within (points)")
    assert m.loc[1.0, "T"] == 4 and m.loc[1.0, "latency"] == 8 and m.loc[1.0, "energy / ANN's"] == 0.2
    assert m.loc[0.1, "T"] == 8 and m.loc[0.1, "latency"] == 12  # 89.95 >= 90 - 0.1
    assert cost[cost["method"] == "n"]["T"].isna().all()  # never within: empty, not dropped
    wide = cost_table(cost)
    assert list(wide.index) == [("a", "relu", "m"), ("a", "relu", "n")]
    assert list(wide.columns) == [("±1", "latency"), ("±1", "E/ANN"), ("±0.1", "latency"), ("±0.1", "E/ANN")]
    assert wide.loc[("a", "relu", "m"), ("±0.1", "E/ANN")] == 0.4
