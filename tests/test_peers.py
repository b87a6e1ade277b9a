"""The peers on hand-made cases: COS's offset spikes, the QCFS activation and its conversion theorem, OPI."""
import math

import pytest
import torch
from torch import nn

from conftest import identity_layer_model
from icsnn_core.convert import balance_thresholds, convert, thresholds_from_lambda
from icsnn_core.data import Split
from icsnn_core.errors import ConfigError
from icsnn_core.measure import layer_outputs
from icsnn_core.methods import Method
from icsnn_core.models import build_model
from icsnn_core.neuron import LAMBDA_MIN, IFNeuron, neurons, set_mode
from icsnn_core.simulate import accuracy_curve, simulate


def cos_spikes(currents: list[float], iterations: int = 1, rho: int = 4, shift: str = "authors",
               thr: float = 1.0) -> tuple[float, float]:
    """One IF neuron fed the given current sequence with COS: return (calibrated v0, spikes in the real run)."""
    n = IFNeuron()
    n.set_threshold(thr)
    n.v0 = torch.tensor(thr / 2)  # COS starts from V_th / 2
    n.presim, n.presim_iterations, n.presim_shift = rho, iterations, shift
    set_mode(n, "snn")
    n.track = True
    n.steps = len(currents)
    n(torch.tensor(currents, dtype=torch.float64).view(-1, 1))
    calibrated = float(n.v + n.spike_count * thr - sum(currents))  # v(T) = v0' + sum z - N V_th  =>  v0'
    assert calibrated == pytest.approx(float(n.calibrated_v0))
    return calibrated, float(n.spike_count)


def test_cos_removes_one_spike_too_many():
    # mean input 0: the desired count is 0, but from v0 = 0.5 the first step fires; residual -0.5 < 0 after firing
    v0, spikes = cos_spikes([1.0, -0.5, -0.5, 0.0])
    assert v0 == -0.5 and spikes == 0


def test_cos_adds_the_missing_spike():
    # 0.5 + 1.75 = 2.25 -> desired 2 spikes; one step can fire only once, so v0 = 0.5 gives 1 and leaves v = 1.25 >= 1
    v0, spikes = cos_spikes([0.0, 0.0, 0.0, 1.75])
    assert v0 == 1.5 and spikes == 2


def test_cos_leaves_a_correct_neuron_alone():
    v0, spikes = cos_spikes([0.5, 0.5, 0.5, 0.5])
    assert v0 == 0.5 and spikes == 2


def test_cos_iterative_property():
    # 0.5 + 2.5 = 3 spikes desired: one round of calibration gives 2, a second round gives 3
    assert cos_spikes([0.0, 0.0, 0.0, 2.5], iterations=1) == (1.5, 2.0)
    assert cos_spikes([0.0, 0.0, 0.0, 2.5], iterations=2) == (2.5, 3.0)


@pytest.mark.parametrize("thr", [1.0, 2.0])
def test_cos_authors_shift_down_by_the_smallest_spiking_potential(thr):
    """Currents 2.5, -1, -1, -1 (in V_th units) from v0 = 0.5: the only spike comes at a potential of 3, the residual
    ends at -1. The authors move v0 down by max(1, 3 - 0.999) = 2.001 thresholds; the threshold reading by one."""
    currents = [c * thr for c in (2.5, -1.0, -1.0, -1.0)]
    v0, spikes = cos_spikes(currents, shift="authors", thr=thr)
    assert v0 == pytest.approx((0.5 - 2.001) * thr) and spikes == 0
    v0, spikes = cos_spikes(currents, shift="threshold", thr=thr)
    assert v0 == pytest.approx(-0.5 * thr) and spikes == 1  # 0.5 - 1 + 2.5 = 2 > 1 still fires once


def test_cos_authors_shift_up_by_the_largest_silent_potential():
    """Currents -1, 0, 0, 6 from v0 = 0.5: silent steps at -0.5, one spike at 5.5, residual 4.5 >= 1. The authors
    move v0 up by max(1, 1.001 - (-0.5)) = 1.501 thresholds; the threshold reading by one."""
    assert cos_spikes([-1.0, 0.0, 0.0, 6.0], shift="authors")[0] == pytest.approx(2.001)
    assert cos_spikes([-1.0, 0.0, 0.0, 6.0], shift="threshold")[0] == 1.5


def test_cos_a_neuron_that_fires_at_every_presimulation_step_moves_up_one_threshold():
    """No silent step, so no m2: the authors' code shifts such a neuron up by a 1001-threshold placeholder; here it
    moves up by one threshold, as in the threshold reading."""
    assert cos_spikes([5.0, 5.0, 5.0, 5.0], shift="authors") == cos_spikes([5.0, 5.0, 5.0, 5.0], shift="threshold")
    assert cos_spikes([5.0, 5.0, 5.0, 5.0])[0] == 1.5


def test_cos_calibrated_potentials_are_kept_for_inspection():
    torch.manual_seed(0)
    model = convert(build_model("digits-cnn", 10, 1, width=0.5))
    x = torch.rand(8, 1, 8, 8)
    balance_thresholds(model, Split(x, torch.zeros(8, dtype=torch.long), 1.0), images=8)
    Method.make("cos").apply(model, 4)
    simulate(model, x, 4)
    moved = 0
    for _, n in neurons(model):
        shift = (n.calibrated_v0 - n.threshold / 2) / n.threshold  # per input and neuron, in thresholds
        assert shift.shape[0] == 8
        assert torch.all((shift == 0) | (shift.abs() >= 1 - 1e-6))  # untouched, or moved by at least one V_th
        moved += int((shift != 0).sum())
    assert moved > 0


def test_cos_shorter_horizon_than_presimulation_is_a_prefix():
    torch.manual_seed(0)
    model = convert(build_model("digits-cnn", 10, 1, width=0.5))
    x = torch.rand(8, 1, 8, 8)
    balance_thresholds(model, Split(x, torch.zeros(8, dtype=torch.long), 1.0), images=8)
    Method.make("cos", rho=4).apply(model, 2)
    short = simulate(model, x, 2)
    long = simulate(model, x, 9, max_fold=8)  # windows of 4 steps (= rho) per call
    assert short.shape[0] == 2 and torch.allclose(short, long[:2])


def test_qcfs_activation_at_and_between_steps():
    n = IFNeuron("qcfs", levels=4, init_lambda=2.0)  # steps of lambda / L = 0.5, shifted by half a step
    z = torch.tensor([-1.0, 0.0, 0.24, 0.25, 0.5, 0.74, 0.75, 1.74, 1.75, 5.0])
    assert n(z).tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.5, 2.0, 2.0]


def test_qcfs_gradients_straight_through():
    n = IFNeuron("qcfs", levels=4, init_lambda=2.0)
    z = torch.tensor([0.3, 0.6, 5.0, -1.0], requires_grad=True)
    n(z).sum().backward()
    assert z.grad.tolist() == [1.0, 1.0, 0.0, 0.0]  # identity inside the clip, zero outside
    # d/dlambda: floor(u)/L - z/lambda inside the clip (u = z L / lambda + 1/2), 1 above it, 0 below
    expected = (math.floor(0.3 * 2 + 0.5) / 4 - 0.3 / 2) + (math.floor(0.6 * 2 + 0.5) / 4 - 0.6 / 2) + 1.0
    assert float(n.lam.grad) == pytest.approx(expected)


def test_qcfs_lambda_cannot_go_non_positive():
    n = IFNeuron("qcfs", levels=4)
    with torch.no_grad():
        n.lam.fill_(-3.0)
    out = n(torch.tensor([0.5, 2.0])).detach()
    assert torch.isfinite(out).all() and float(out.max()) == pytest.approx(LAMBDA_MIN)
    assert float(n.lam_value().detach()) == pytest.approx(LAMBDA_MIN)


def qcfs_identity_model(lam: float, levels: int, n: int) -> nn.Sequential:
    model = identity_layer_model(n)
    model[2] = IFNeuron("qcfs", levels=levels, init_lambda=lam)
    return model


@pytest.mark.parametrize("levels", [2, 4, 8])
def test_qcfs_snn_with_T_equal_L_reproduces_the_ann(levels):
    # Bu et al. 2022, Theorem 2: with v(0) = V_th / 2 and V_th = lambda, T = L steps of a constant input give
    # exactly the QCFS activation (away from the rounding ties)
    lam = 1.5
    z = torch.linspace(-0.5, 2.0, 97)
    z = z[((z * levels / lam + 0.5) - (z * levels / lam + 0.5).round()).abs() > 1e-3]
    model = qcfs_identity_model(lam, levels, len(z))
    thresholds_from_lambda(model)
    Method.make("qcfs").apply(model, levels)
    [(ann, snn)] = layer_outputs(model, z.view(1, 1, 1, -1), levels, [1]).values()
    assert torch.allclose(snn, ann, atol=1e-6)


def test_opi_equals_the_potential_unit_compensation():
    torch.manual_seed(0)
    model = convert(build_model("digits-cnn", 10, 1, width=0.5))
    data = Split(torch.rand(40, 1, 8, 8), torch.randint(0, 10, (40,)), 1.0)
    balance_thresholds(model, data, images=40)
    Method.make("opi").apply(model, 8)
    v_opi = [n.v0.clone() for _, n in neurons(model)]
    curve_opi = accuracy_curve(model, data, 8)
    Method.make("c-snn", compensation="potential").apply(model, 8)
    assert all(torch.equal(a, n.v0) for a, (_, n) in zip(v_opi, neurons(model)))
    assert (accuracy_curve(model, data, 8) == curve_opi).all()


def test_methods_refuse_the_wrong_kind_of_ann():
    relu = convert(build_model("digits-cnn", 10, 1, width=0.25))
    qcfs = convert(build_model("digits-cnn", 10, 1, width=0.25, activation="qcfs"))
    with pytest.raises(ConfigError, match="QCFS-trained ANN.*Fix: train the ANN with the QCFS activation"):
        Method.make("qcfs").apply(relu, 4)
    with pytest.raises(ConfigError, match="RELU-trained ANN.*Fix: use method 'qcfs'"):
        Method.make("opi").apply(qcfs, 4)
    with pytest.raises(ConfigError, match="QCFS activation"):
        thresholds_from_lambda(relu)
    Method.make("cos").apply(relu, 4)  # COS and the paper's methods run on either
    Method.make("cos").apply(qcfs, 4)


def test_cos_latency_and_options():
    cos = Method.make("cos", rho=3, iterations=2)
    assert cos.latency(8) == 11 and cos.label == "cos[rho=3,iterations=2,shift=authors]"
    assert Method.make("cos", shift="threshold").label == "cos[rho=4,iterations=1,shift=threshold]"
    with pytest.raises(ConfigError, match="unknown shift 'half'; choose one of authors, threshold"):
        Method.make("cos", shift="half")
    assert Method.make("opi").latency(8) == 8 and Method.make("ic-snn").rho is None
    with pytest.raises(ConfigError, match="rho"):
        Method.make("cos", rho=0)


def test_pages_show_the_authors_cos_only_where_it_covers_every_network():
    import pandas as pd

    from icsnn_core.report import cos_name, cos_variant

    authors, threshold = Method.make("cos").label, Method.make("cos", shift="threshold").label
    rows = pd.DataFrame({"method": ["cos"] * 3, "arch": ["vgg16", "resnet20", "resnet20"], "ann": ["relu"] * 3,
                         "variant": [threshold, threshold, authors]})
    assert cos_variant(rows) == threshold and cos_name(threshold) == "COS (one-threshold shift)"
    rows.loc[len(rows)] = ["cos", "vgg16", "relu", authors]
    assert cos_variant(rows) == authors and cos_name(authors) == "COS"
