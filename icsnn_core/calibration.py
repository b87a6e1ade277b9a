"""The paper's three algorithms for the initial membrane potential v(0) (Sec. 3.3 and 3.4).

- Algorithm 1 (:func:`weight_based_init`): the remainder ``(T W + b) mod V_th`` when every input fires.
- Algorithm 2 (:func:`data_based_init`, I-SNN): the mean residual potential v(T) on training images.
- Algorithm 3 (:func:`coding_compensation`, C-SNN / IC-SNN): start from a compensation, measure the
  residual, and add the compensation to it.

Where the paper is ambiguous the choice is a named option (``../shared/paper/NOTES.md``):
``compensation`` ("printed": V_th / 2T as printed; "potential": V_th / 2, half a spike in membrane-potential
units), ``residual`` ("raw" mean of v(T); "clip": v(T) clipped to [0, V_th]; "fired": over neurons that
fired at least once), ``granularity`` (one value per "layer" as in the pseudocode, per "channel", per
"neuron") and the number of calibration images.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .data import DataLike, as_split, batches
from .errors import ConfigError
from .neuron import IFNeuron, neurons, recording, reset, set_mode
from .simulate import Coding, simulate, validate_T

Granularity = Literal["layer", "channel", "neuron"]
Residual = Literal["raw", "clip", "fired"]
Compensation = Literal["printed", "potential"]
GRANULARITIES = ("layer", "channel", "neuron")
RESIDUALS = ("raw", "clip", "fired")
COMPENSATIONS = ("printed", "potential")


def _check(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
    return value


def reduce_to(per_neuron: torch.Tensor, granularity: Granularity) -> torch.Tensor:
    """Average a per-neuron map ``[C, (H, W)]`` to one value per layer (0-d), channel (``[C, 1, 1]``) or neuron."""
    _check(granularity, GRANULARITIES, "granularity")
    if granularity == "layer":
        return per_neuron.mean()
    if granularity == "channel" and per_neuron.dim() > 1:
        return per_neuron.mean(dim=tuple(range(1, per_neuron.dim())), keepdim=True)
    return per_neuron.clone()


def set_initial_potential(model: nn.Module, v0s: list[torch.Tensor | float]) -> None:
    """Give each neuron (in :func:`neurons` order) its initial membrane potential."""
    named = [n for _, n in neurons(model)]
    if len(v0s) != len(named):
        raise ConfigError(f"{len(v0s)} initial potentials for {len(named)} neurons")
    for n, v0 in zip(named, v0s):
        n.v0 = torch.as_tensor(v0, dtype=torch.float32, device=n.threshold.device).detach().clone()


def compensation_value(threshold: torch.Tensor | float, T: int, compensation: Compensation) -> torch.Tensor:
    """The coding compensation of one layer: ``V_th / 2T`` ("printed") or ``V_th / 2`` ("potential")."""
    _check(compensation, COMPENSATIONS, "compensation")
    thr = torch.as_tensor(threshold, dtype=torch.float32)
    return thr / (2 * validate_T(T)) if compensation == "printed" else thr / 2


@torch.no_grad()
def weight_based_init(model: nn.Module, T: int, image_shape: tuple[int, ...],
                      granularity: Granularity = "layer") -> list[torch.Tensor]:
    """Algorithm 1: ``init_mem[l] = mean((T W + b) mod V_th)`` when every input neuron fires every step.

    Reading used (the pseudocode's ``weight * T + bias`` has no shape that type-checks): each neuron's
    input current when every neuron of the previous layer spikes every step (a spike carries that layer's
    V_th; the image is all ones) is ``z = W s + b``; over T steps it sums to ``T z`` (bias every step, eq. 7);
    the remainder modulo V_th is averaged per ``granularity``. Found by one forward pass in "saturated" mode,
    so it works for any graph (pooling, residual adds).
    """
    T = validate_T(T)
    named = [n for _, n in neurons(model)]
    currents: dict[int, torch.Tensor] = {}
    hooks = [n.register_forward_hook(lambda m, i, o, k=k: currents.__setitem__(k, i[0][0]))
             for k, n in enumerate(named)]
    set_mode(model, "saturated")
    try:
        device = named[0].threshold.device
        model(torch.ones((1, *image_shape), device=device))
    except RuntimeError as e:  # a shape the model's layers do not take
        raise ConfigError(f"image_shape {tuple(image_shape)} does not fit the model ({str(e).splitlines()[0]}). Fix: "
                          "pass the shape of one input without the batch dimension, e.g. (3, 32, 32), or leave it "
                          "out and pass calibration data to read it from") from e
    finally:
        for h in hooks:
            h.remove()
        set_mode(model, "ann")
    return [reduce_to(torch.remainder(T * currents[k], n.threshold), granularity) for k, n in enumerate(named)]


@torch.no_grad()
def residual_potentials(model: nn.Module, data: DataLike, T: int, *, residual: Residual = "raw",
                        granularity: Granularity = "layer", batch_size: int = 256, max_fold: int | None = None,
                        coding: Coding = "direct", device: str | torch.device = "cpu", seed: int = 0) -> list[torch.Tensor]:
    """Algorithm 2's measurement: each layer's mean residual potential v(T) after T steps from the current v(0).

    The mean is over all images of ``data`` (the pseudocode averages per-batch means; equal batches give
    the same number) and is reduced to ``granularity``.
    """
    T = validate_T(T)
    _check(residual, RESIDUALS, "residual")
    data = as_split(data)
    named = [n for _, n in neurons(model)]
    sums: list[torch.Tensor | None] = [None] * len(named)
    counts: list[torch.Tensor | None] = [None] * len(named)
    g = torch.Generator().manual_seed(seed)
    model.eval().to(device)
    with recording(model, named, on=residual == "fired"):
        for x, _ in batches(data, batch_size, device=device):
            reset(model)
            simulate(model, x, T, coding=coding, max_fold=max_fold, generator=g)
            for k, n in enumerate(named):
                v, weight = _residual(n, residual)
                s, c = (v * weight).sum(0), weight.sum(0)
                sums[k] = s if sums[k] is None else sums[k] + s
                counts[k] = c if counts[k] is None else counts[k] + c
    out = []
    for s, c in zip(sums, counts):
        if granularity == "layer":
            out.append(s.sum() / c.sum().clamp_min(1))
        elif granularity == "channel" and s.dim() > 1:
            dims = tuple(range(1, s.dim()))
            out.append(s.sum(dims, keepdim=True) / c.sum(dims, keepdim=True).clamp_min(1))
        else:
            out.append(s / c.clamp_min(1))
    return out


def _residual(n: IFNeuron, residual: Residual) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual v(T) of one neuron layer under the chosen reading, and the weight of each entry."""
    v = n.v
    if residual == "clip":
        return v.clamp(0, float(n.threshold)), torch.ones_like(v)
    if residual == "fired":
        return v, (n.spike_count > 0).to(v.dtype)
    return v, torch.ones_like(v)


def data_based_init(model: nn.Module, data: DataLike, T: int, **kwargs) -> list[torch.Tensor]:
    """Algorithm 2 (I-SNN): run the converted SNN from v(0) = 0 and return each layer's mean v(T)."""
    set_initial_potential(model, [0.0] * len(list(neurons(model))))
    return residual_potentials(model, data, T, **kwargs)


def coding_compensation(model: nn.Module, data: DataLike | None, T: int, *, compensation: Compensation = "printed",
                        init: Literal["data", "weight", "none"] = "data", image_shape: tuple[int, ...] | None = None,
                        **kwargs) -> list[torch.Tensor]:
    """Algorithm 3: v(0) = comp in every layer, then ``final = init_mem(SNN) + comp``.

    ``init="data"`` measures the residual with Algorithm 2 on the compensated SNN (IC-SNN), ``"weight"``
    uses Algorithm 1, ``"none"`` returns the compensation alone (C-SNN).
    """
    comps = [compensation_value(n.threshold, T, compensation) for _, n in neurons(model)]
    if init == "none":
        return comps
    if init == "weight":
        if image_shape is None:
            raise ConfigError("Algorithm 1 needs the image shape")
        base = weight_based_init(model, T, image_shape, kwargs.get("granularity", "layer"))
    elif init == "data":
        if data is None:
            raise ConfigError("Algorithm 3 with data-based initialisation needs calibration images")
        set_initial_potential(model, comps)
        base = residual_potentials(model, data, T, **kwargs)
    else:
        raise ConfigError(f"unknown init {init!r}; choose one of data, weight, none")
    return [b + c.to(b.device) for b, c in zip(base, comps)]
