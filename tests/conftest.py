"""Shared hand-made models: layers whose weights are set by hand so that answers are known in closed form."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from icsnn_core.neuron import IFNeuron


def if_spike_count(x: float, v0: float, thr: float, T: int) -> int:
    """Closed form of the IF neuron with soft reset and strict threshold for a constant input x >= 0:
    N(T) = min(T, max(0, ceil((v0 + T x) / thr) - 1))."""
    return min(T, max(0, math.ceil((v0 + T * x) / thr) - 1))


def identity_layer_model(n: int, thr: float = 1.0) -> nn.Sequential:
    """Flatten -> Linear(I) -> IF -> Linear(I): the IF neurons receive the image's values as constant currents."""
    first, last = nn.Linear(n, n), nn.Linear(n, n)
    with torch.no_grad():
        for lin in (first, last):
            lin.weight.copy_(torch.eye(n))
            lin.bias.zero_()
    neuron = IFNeuron()
    neuron.set_threshold(thr)
    return nn.Sequential(nn.Flatten(), first, neuron, last)


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory):
    """One real `icsnn reproduce --profile ci` run, shared by the tests that read what it writes."""
    from icsnn_core.cli import main

    out = tmp_path_factory.mktemp("ci")
    assert main(["reproduce", "--profile", "ci", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture
def dyadic_images() -> torch.Tensor:
    """Two 'images' of three pixels with values exact in binary floating point (no rounding at ties)."""
    return torch.tensor([[0.375, 0.625, -0.25], [0.875, 0.0, 0.5]]).view(2, 1, 1, 3)
