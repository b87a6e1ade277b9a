"""Measurements behind the paper's figures.

- :func:`first_spike_times` (Fig. 6): mean step of each layer's first spike.
- :func:`layer_outputs` (Fig. 7): a layer's decoded SNN output (spike rate x V_th) beside the ANN activation.
- :func:`rate_coded_images` (Fig. 3): an image as the mean of its Bernoulli spike train over T steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .data import Split, batches
from .neuron import neurons, recording, reset, set_mode
from .simulate import Coding, encode, simulate, validate_T


@dataclass(frozen=True)
class FirstSpike:
    layer: int  # 1-based index among the IF layers
    name: str
    mean_first_spike: float  # mean 1-based step of the first spike over neurons that fired (nan if none did)
    silent_fraction: float  # neurons that never fired within T


@torch.no_grad()
def first_spike_times(model: nn.Module, split: Split, T: int, *, batch_size: int = 256, max_fold: int | None = None,
                      coding: Coding = "direct", device: str | torch.device = "cpu", seed: int = 0) -> list[FirstSpike]:
    """Per IF layer: the mean first-spike step (over neurons x images that fired) and the silent fraction."""
    T = validate_T(T)
    named = list(neurons(model))
    total = torch.zeros(len(named), dtype=torch.float64)
    fired = torch.zeros(len(named), dtype=torch.float64)
    count = torch.zeros(len(named), dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    model.eval().to(device)
    with recording(model, (n for _, n in named)):
        for x, _ in batches(split, batch_size, device=device):
            reset(model)
            simulate(model, x, T, coding=coding, max_fold=max_fold, generator=g)
            for k, (_, n) in enumerate(named):
                fs = n.first_spike
                ok = torch.isfinite(fs)
                total[k] += float(fs[ok].double().sum())
                fired[k] += float(ok.sum())
                count[k] += fs.numel()
    return [FirstSpike(k + 1, name, float(total[k] / fired[k]) if fired[k] else float("nan"),
                       float(1 - fired[k] / count[k])) for k, (name, _) in enumerate(named)]


@torch.no_grad()
def layer_outputs(model: nn.Module, x: torch.Tensor, T: int, layers: Sequence[int], *, coding: Coding = "direct",
                  max_fold: int | None = None, seed: int = 0) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """For each 1-based IF layer index: (ANN activation, SNN decoded output = count / T x V_th) on images ``x``.

    The SNN starts from the neurons' current v(0), so set a method first (``Method.apply``).
    """
    T = validate_T(T)
    named = [n for _, n in neurons(model)]
    for k in layers:
        if not 1 <= k <= len(named):
            raise ValueError(f"layer {k} does not exist: the model has IF layers 1..{len(named)}")
    ann: dict[int, torch.Tensor] = {}
    hooks = [named[k - 1].register_forward_hook(lambda m, i, o, k=k: ann.__setitem__(k, o.detach().clone()))
             for k in layers]
    set_mode(model, "ann")
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    with recording(model, (named[k - 1] for k in layers)):
        reset(model)
        simulate(model, x, T, coding=coding, max_fold=max_fold, generator=torch.Generator().manual_seed(seed))
        snn = {k: named[k - 1].spike_count / T * named[k - 1].threshold for k in layers}
    return {k: (ann[k], snn[k]) for k in layers}


def rate_coded_images(x: torch.Tensor, Ts: Sequence[int], seed: int = 0) -> list[torch.Tensor]:
    """Each image in [0, 1] reconstructed from T Bernoulli spikes per pixel (the mean spike), for each T."""
    g = torch.Generator().manual_seed(seed)
    return [encode(x.cpu(), validate_T(T), "rate", g).reshape(T, *x.shape).mean(0) for T in Ts]
