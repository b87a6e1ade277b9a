import platform
import resource
import subprocess
import sys

import pytest
import torch

from conftest import identity_layer_model, if_spike_count
from icsnn_core.calibration import set_initial_potential
from icsnn_core.convert import balance_thresholds, convert
from icsnn_core.data import Split
from icsnn_core.errors import ConfigError
from icsnn_core.measure import first_spike_times, layer_outputs, rate_coded_images
from icsnn_core.models import build_model
from icsnn_core.neuron import IFNeuron, neurons, set_mode
from icsnn_core.simulate import accuracy_curve, encode, reuse_freed_memory, simulate, step_free_stem


def random_converted(arch="digits-cnn", shape=(1, 8, 8), n=64, quantile=1.0, dtype=torch.float32):
    torch.manual_seed(0)
    model = convert(build_model(arch, 10, shape[0], width=0.5)).to(dtype)
    x = torch.rand(n, *shape)
    data = Split(x, torch.randint(0, 10, (n,)), 1.0)
    balance_thresholds(model, data, quantile=quantile, images=n)
    return model, data


def test_output_accumulates_the_closed_form(dyadic_images):
    # identity layers: the output at step t is the spikes of that step times V_th; the cumulative sum at T is N(T) V_th
    model = identity_layer_model(3)
    out = simulate(model, dyadic_images, 8)
    expected = [[if_spike_count(v, 0.0, 1.0, 8) for v in img] for img in dyadic_images.view(2, 3).tolist()]
    assert out.sum(0).tolist() == expected


def test_chunked_and_unchunked_simulation_agree():
    model, data = random_converted(dtype=torch.float64)
    set_initial_potential(model, [0.1, 0.2, 0.3, 0.4])
    x = data.x[:16].double()
    whole = simulate(model, x, 37, max_fold=10 ** 6)
    windows = simulate(model, x, 37, max_fold=16 * 5)  # 5 steps per call
    steps = simulate(model, x, 37, max_fold=1)  # one step per call
    assert torch.equal(whole, windows) and torch.equal(whole, steps)
    halves = torch.cat([simulate(model, x[:7], 37, max_fold=50), simulate(model, x[7:], 37, max_fold=50)], dim=1)
    assert torch.allclose(whole, halves, atol=1e-12)


def test_fused_if_windows_give_the_same_spikes_potentials_and_outputs():
    """The compiled window (simulate(fused=True)) against the in-place loop: the same output at every step, the
    same v(T) in every layer, on a random conv net with windows of 5 and 16 steps and a v(0) per layer."""
    from icsnn_core.energy import EnergyMeter

    model, data = random_converted(n=16)
    set_initial_potential(model, [0.1, 0.2, 0.3, 0.4])
    x = data.x
    plain = simulate(model, x, 21, max_fold=16 * 5)
    v_plain = [n.v.clone() for _, n in neurons(model)]
    for fold in (16 * 5, 16 * 16):
        fused = simulate(model, x, 21, max_fold=fold, fused=True)
        assert torch.equal(plain, fused)
        assert all(torch.equal(a, n.v) for a, (_, n) in zip(v_plain, neurons(model)))
        assert not any(n.fused for _, n in neurons(model))  # the option lasts one simulation
    meter = EnergyMeter(model, (1, 8, 8))
    accuracy_curve(model, data, 9, max_fold=16 * 3, energy=meter)
    counted = meter.record.sops.copy()
    meter = EnergyMeter(model, (1, 8, 8))
    accuracy_curve(model, data, 9, max_fold=16 * 3, energy=meter, fused=True)
    assert (counted == meter.record.sops).all() and counted.sum() > 0


def test_accuracy_curve_independent_of_batching():
    model, data = random_converted()
    a = accuracy_curve(model, data, 20, batch_size=64, max_fold=10 ** 6)
    b = accuracy_curve(model, data, 20, batch_size=10, max_fold=30)
    assert a.shape == (20,) and (a == b).all()


def test_decoded_output_approaches_ann_layer_by_layer():
    # thresholds at the max activation (no clipping): the rate x V_th error shrinks like 1/T in every layer
    model, data = random_converted(quantile=1.0)
    set_initial_potential(model, [n.threshold / 2 for _, n in neurons(model)])
    x = data.x[:32]
    errors = {}
    for T in (16, 256, 2048):
        outs = layer_outputs(model, x, T, [1, 2, 3, 4])
        errors[T] = [float((snn - ann).abs().mean() / ann.abs().max()) for ann, snn in outs.values()]
    for k in range(4):
        assert errors[2048][k] < errors[256][k] < errors[16][k]
        assert errors[2048][k] < 0.01


def test_first_spike_times_by_hand():
    # x = 0.375, V_th = 1: first spike at t = 3 from v(0) = 0, t = 2 from v(0) = 0.5; x = 0 never fires
    model = identity_layer_model(3)
    data = Split(torch.tensor([[0.375, 0.375, 0.0]]).view(1, 1, 1, 3), torch.zeros(1, dtype=torch.long), 1.0)
    set_initial_potential(model, [torch.tensor([0.0, 0.5, 0.0])])
    [fs] = first_spike_times(model, data, 8)
    assert fs.mean_first_spike == pytest.approx(2.5) and fs.silent_fraction == pytest.approx(1 / 3)


def test_rate_coding_is_bernoulli_with_pixel_probability():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 1, 4)
    spikes = encode(x, 4000, "rate", torch.Generator().manual_seed(0))
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(spikes.mean(0), x[0], atol=0.03)
    assert torch.equal(encode(x, 3, "direct"), x.expand(3, 1, 1, 4))
    [img32, img1024] = rate_coded_images(x, [32, 1024])
    assert img32.shape == x.shape and (img32 * 32).round().equal(img32 * 32)  # multiples of 1/T
    assert (img1024 - x).abs().max() < (img32 - x).abs().max() + 0.05


@pytest.mark.parametrize("T", [0, -3, 2.5, True, "8"])
def test_bad_T_is_refused(T):
    model = identity_layer_model(3)
    with pytest.raises(ConfigError, match="positive integer"):
        simulate(model, torch.zeros(1, 1, 1, 3), T)


def test_bad_input_is_refused():
    model, data = random_converted()
    with pytest.raises(ConfigError, match="NaN"):
        simulate(model, torch.full((2, 1, 8, 8), float("nan")), 4)
    with pytest.raises(ConfigError, match="channels"):
        simulate(model, torch.zeros(2, 3, 8, 8), 4)
    with pytest.raises(ConfigError, match="batch, channels"):
        simulate(model, torch.zeros(8, 8), 4)
    with pytest.raises(ConfigError, match="coding"):
        simulate(model, torch.zeros(2, 1, 8, 8), 4, coding="temporal")


# --- the layers before the first neurons run once per window under direct coding ---------------------

class _Skip(torch.nn.Module):
    """The input added to the spikes: B rows would meet steps x B rows."""

    def __init__(self):
        super().__init__()
        self.fc, self.neuron, self.head = torch.nn.Linear(4, 4), IFNeuron(), torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.head(x + self.neuron(self.fc(x)))


class _SizeOfInput(torch.nn.Module):
    """The input's batch size reshapes a tensor computed after a neuron."""

    def __init__(self):
        super().__init__()
        self.fc, self.neuron, self.head = torch.nn.Linear(4, 6), IFNeuron(), torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.head(self.neuron(self.fc(x)).view(x.size(0), 2, 3)).sum(1)


class _Untraceable(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.neuron = torch.nn.Linear(4, 4), IFNeuron()

    def forward(self, x):
        return self.neuron(self.fc(x)) if float(x.sum()) > -1e9 else x  # data-dependent: fx cannot trace it


def _full(model, x, T, **kw):
    """The simulation with the stem run at every step, as before."""
    return simulate(model, x, T, stem_once=False, **kw)


@pytest.mark.parametrize("arch, shape", [("digits-cnn", (1, 8, 8)), ("vgg16", (3, 32, 32)), ("resnet20", (3, 32, 32))])
def test_the_stem_runs_once_per_window_with_the_same_outputs(arch, shape):
    model, data = random_converted(arch, shape, n=16)
    set_initial_potential(model, [0.3] * len(list(neurons(model))))
    assert step_free_stem(model)
    calls = []
    first = next(m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    handle = first.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    try:
        out = simulate(model, data.x, 12, max_fold=16 * 4)  # three windows of 4 steps
    finally:
        handle.remove()
    assert calls == [16, 16, 16]  # the images once per window, not 4 x 16 rows
    assert torch.equal(out, _full(model, data.x, 12, max_fold=16 * 4))


def test_the_stem_once_is_exact_by_hand():
    # identity layers: whatever runs once, the spikes are those of a constant current, N(T) by hand
    model = identity_layer_model(3)
    assert step_free_stem(model)
    x = torch.tensor([[0.25, 0.5, 0.875]])
    assert simulate(model, x, 8).sum(0).tolist() == [[if_spike_count(v, 0.0, 1.0, 8) for v in x[0].tolist()]]


def test_cos_presimulation_and_spike_records_are_unchanged_by_the_stem_once():
    model, data = random_converted(n=16)
    for _, n in neurons(model):
        n.presim, n.track = 3, True
    once = simulate(model, data.x, 5, max_fold=16)
    records = [(n.spike_count.clone(), n.first_spike.clone(), n.calibrated_v0.clone()) for _, n in neurons(model)]
    for _, n in neurons(model):
        n.reset()
    assert torch.equal(once, _full(model, data.x, 5, max_fold=16))
    for (count, first, v0), (_, n) in zip(records, neurons(model)):
        assert torch.equal(count, n.spike_count) and torch.equal(first, n.first_spike) and torch.equal(v0, n.calibrated_v0)


@pytest.mark.parametrize("cls", [_Skip, _SizeOfInput, _Untraceable])
def test_a_model_that_mixes_the_input_with_spikes_runs_every_step_in_full(cls):
    torch.manual_seed(0)
    model = cls().eval()
    model.neuron.set_threshold(0.5)
    assert not step_free_stem(model)
    x = torch.rand(5, 4)
    out = simulate(model, x, 6)
    set_mode(model, "snn")  # by hand: every step's input folded into one batch, as the IF neuron takes it
    model.neuron.steps = 6
    by_hand = model(encode(x, 6, "direct")).reshape(6, 5, -1)
    set_mode(model, "ann")
    assert torch.equal(out, by_hand)


def test_rate_coding_still_draws_every_step():
    model, data = random_converted(n=8)
    assert step_free_stem(model)
    a = simulate(model, data.x, 6, coding="rate", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, _full(model, data.x, 6, coding="rate", generator=torch.Generator().manual_seed(1)))


FAULTS_CHILD = """
import resource, sys, torch
from icsnn_core.simulate import reuse_freed_memory
applied = reuse_freed_memory(sys.argv[1] == "on") if sys.argv[1] != "default" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.empty(16 * 2**20).fill_(1.0)  # 64 MiB, every page touched, then freed
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_memory_is_reused_instead_of_faulting_in_fresh_pages():
    # 64 MiB is 16,384 pages of 4 KiB: glibc maps fresh pages for each of the 20 tensors (a fault per page) unless
    # reuse_freed_memory keeps the freed block; then only the first two allocations fault
    pages = 16 * 2**20 * 4 // resource.getpagesize()

    def faults(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", FAULTS_CHILD, mode], capture_output=True, text=True, check=True)
        applied, count = out.stdout.split()
        return applied, int(count)

    applied, count = faults("on")
    assert applied == "True"
    assert count < 3 * pages
    assert faults("default")[1] > 15 * pages
    assert faults("off")[1] > 15 * pages  # enabled=False puts glibc's behaviour for large blocks back

