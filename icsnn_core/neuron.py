"""The one neuron: a ReLU (or QCFS) activation in ANN mode, an integrate-and-fire neuron in SNN mode.

Paper Sec. 3.1, eqs. (2)-(6): ``v_temp(t) = v(t-1) + W x(t) + b``; a spike when ``v_temp(t) > V_th``;
soft reset ``v(t) = v_temp(t) - V_th`` after a spike. A spike carries the value ``V_th`` into the next
layer (threshold balancing by output scaling), so weights are never rescaled.

Time is folded into the batch: in SNN mode the input holds ``steps`` consecutive time steps of the
same ``B`` samples stacked as ``[steps * B, ...]`` (step-major), so every conv/linear layer runs once
over all steps. The membrane potential persists across calls until :func:`reset` so a long horizon can
be simulated in windows of a few steps with the same result.
"""
from __future__ import annotations

from typing import Iterator, Literal

import torch
from torch import nn

Mode = Literal["ann", "snn", "saturated"]
MODES = ("ann", "snn", "saturated")


class IFNeuron(nn.Module):
    """ReLU in ``ann`` mode; IF neuron with soft reset in ``snn`` mode.

    ``saturated`` mode outputs ``V_th`` everywhere (every neuron fires every step): Algorithm 1's
    assumption, used to compute its weight-based initial potential.

    Buffers: ``threshold`` (V_th, a scalar) and ``v0`` (the initial membrane potential, broadcastable
    to one sample's activation: a scalar, per channel ``[C, 1, 1]`` or per neuron ``[C, H, W]``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.tensor(1.0))
        self.register_buffer("v0", torch.tensor(0.0))
        self.mode: Mode = "ann"
        self.steps = 1  # time steps folded into the batch of the next SNN call
        self.track = False  # record spike counts and first-spike times (costs time)
        self.reset()

    # --- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the membrane potential and the spike records (call before each new input batch)."""
        self.v: torch.Tensor | None = None
        self.t = 0
        self.spike_count: torch.Tensor | None = None
        self.first_spike: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"mode={self.mode}, threshold={float(self.threshold):.4g}, v0_shape={tuple(self.v0.shape)}"

    # --- forward -----------------------------------------------------------------------------
    def ann_activation(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.mode == "ann":
            return self.ann_activation(z)
        if self.mode == "saturated":
            return torch.full_like(z, float(self.threshold))
        return self._integrate_and_fire(z)

    def _integrate_and_fire(self, z: torch.Tensor) -> torch.Tensor:
        steps = self.steps
        if z.shape[0] % steps:
            raise RuntimeError(
                f"IFNeuron got a batch of {z.shape[0]} rows, not a multiple of steps={steps}: "
                "run SNN models through icsnn_core.simulate, which folds time into the batch"
            )
        z = z.reshape(steps, z.shape[0] // steps, *z.shape[1:])
        thr = self.threshold.to(z.dtype)
        if self.v is None:
            self.v = self.v0.to(z.dtype).expand(z.shape[1:]).clone()
        v = self.v
        spikes = torch.empty_like(z)
        for t in range(steps):
            v.add_(z[t])
            torch.gt(v, thr, out=spikes[t])  # eq. (6): fire when v_temp > V_th (strict)
            v.sub_(spikes[t] * thr)  # soft reset
        self.v = v
        if self.track:
            self._record(spikes)
        self.t += steps
        return (spikes * thr).reshape(-1, *z.shape[2:])

    def _record(self, spikes: torch.Tensor) -> None:
        count = spikes.sum(0)
        fired = spikes.amax(0) > 0
        first_here = spikes.argmax(0).to(spikes.dtype) + (self.t + 1)  # 1-based step of the first spike
        if self.spike_count is None:
            self.spike_count = count
            self.first_spike = torch.where(fired, first_here, torch.full_like(count, float("inf")))
        else:
            self.spike_count = self.spike_count + count
            new = fired & torch.isinf(self.first_spike)
            self.first_spike = torch.where(new, first_here, self.first_spike)


def neurons(model: nn.Module) -> Iterator[tuple[str, IFNeuron]]:
    """The IF neurons of ``model`` in forward order of registration, with their qualified names."""
    for name, module in model.named_modules():
        if isinstance(module, IFNeuron):
            yield name, module


def set_mode(model: nn.Module, mode: Mode) -> nn.Module:
    """Switch every neuron of ``model`` between ANN and SNN behaviour, and reset its state."""
    if mode not in MODES:
        raise ValueError(f"unknown neuron mode {mode!r}; choose one of {', '.join(MODES)}")
    for _, n in neurons(model):
        n.mode = mode
        n.reset()
    return model


def reset(model: nn.Module) -> None:
    """Reset the membrane potential and spike records of every neuron."""
    for _, n in neurons(model):
        n.reset()
