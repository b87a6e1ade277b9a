"""The one neuron: a ReLU or QCFS activation in ANN mode, an integrate-and-fire neuron in SNN mode.

Paper Sec. 3.1, eqs. (2)-(6): ``v_temp(t) = v(t-1) + W x(t) + b``; a spike when ``v_temp(t) > V_th``;
soft reset ``v(t) = v_temp(t) - V_th`` after a spike. A spike carries the value ``V_th`` into the next
layer (threshold balancing by output scaling), so weights are never rescaled.

Time is folded into the batch: in SNN mode the input holds ``steps`` consecutive time steps of the
same ``B`` samples stacked as ``[steps * B, ...]`` (step-major), so every conv/linear layer runs once
over all steps. The membrane potential persists across calls until :func:`reset` so a long horizon can
be simulated in windows of a few steps with the same result. Under direct coding the first neurons may instead
receive the ``B`` rows of one current, the same at every step (``input_batch``; set by the simulation).

Peers use the same neuron: the QCFS activation (Bu et al., ICLR 2022) is the ``activation="qcfs"`` ANN
mode with a trainable per-layer ``lam``; COS's offset-spike calibration (Hao et al., ICLR 2023) is the
``presim`` pre-simulation run on each input before the real steps.

Operation counting for the energy estimate (:mod:`icsnn_core.energy`) is opt-in per neuron: with
``sop_weights`` set (each neuron's number of outgoing synapses, see :func:`icsnn_core.energy.synapses`), every
call records, per step, the spikes and the synaptic operations (spikes x fan-out) summed over the batch:
a few numbers per step, so memory stays tiny. Left unset (the default) the simulation does no extra work.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Literal

import torch
from torch import nn

Mode = Literal["ann", "snn", "saturated"]
MODES = ("ann", "snn", "saturated")
ACTIVATIONS = ("relu", "qcfs")
LAMBDA_MIN = 1e-3  # QCFS's lambda is clamped here so that it can never reach zero or go negative
# QCFS's published code starts lambda at 8. Behind batch norm (unit-variance inputs) that quantises most inputs to 0,
# and on CIFAR-10 VGG16 (width 0.25, lr 0.1) lambda went negative within 100 steps and the ANN stayed at chance;
# starting at 2 (about the 98th percentile of a unit normal) it learns. Measured by benchmarks/train_probe.py
# (the book's Performance page).
DEFAULT_INIT_LAMBDA = 2.0


def floor_ste(u: torch.Tensor) -> torch.Tensor:
    """floor(u) in the forward pass, the identity's gradient in the backward pass (straight-through)."""
    return u + (torch.floor(u) - u).detach()


def if_window(z: torch.Tensor, v: torch.Tensor, thr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The IF update of eq. (6) over one window of steps (``z``: ``[steps, B, ...]``) as one pure function, for
    ``torch.compile`` to fuse into one kernel: the 0/1 spikes ``[steps, B, ...]`` and v after the window. The
    same arithmetic in the same order as the in-place loop of :meth:`IFNeuron.forward`, so the same spikes."""
    outs = []
    for t in range(z.shape[0]):
        v = v + z[t]
        s = (v > thr).to(z.dtype)
        v = v - s * thr
        outs.append(s)
    return torch.stack(outs), v


_compiled_if_window = None


def fused_if_window(z: torch.Tensor, v: torch.Tensor, thr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`if_window` compiled (once per process, with dynamic shapes: a recompile per window length and rank)."""
    global _compiled_if_window
    if _compiled_if_window is None:
        _compiled_if_window = torch.compile(if_window, dynamic=True)
    return _compiled_if_window(z, v, thr)


def step_op_counts(fired: torch.Tensor, weights: torch.Tensor, steps: int) -> torch.Tensor:
    """``[steps, 3]`` float64: per step, the 0/1 ``fired`` (``[steps * B, ...]`` or ``[steps, B, ...]``) summed over
    the batch, times ``weights`` (``[units, 3]``: ones, fan-outs, pre-simulated fan-outs).

    The batch is summed first, by a batched product with ones (one pass over the spikes; on the CPU about 0.13 of
    an IF update's time against 0.18 for ``sum(1)`` and 0.3 for a three-column product of every spike; integer
    counts up to B, exact in float32 and TF32), then one small float64 product (exact up to 2**53)."""
    spikes = fired.reshape(steps, -1, weights.shape[0])
    ones = torch.ones(steps, 1, spikes.shape[1], dtype=spikes.dtype, device=spikes.device)
    counts = torch.bmm(ones, spikes).squeeze(1)
    return counts.to(torch.float64) @ weights.to(torch.float64)


class IFNeuron(nn.Module):
    """ReLU in ``ann`` mode; IF neuron with soft reset in ``snn`` mode.

    ``saturated`` mode outputs ``V_th`` everywhere (every neuron fires every step): Algorithm 1's
    assumption, used to compute its weight-based initial potential.

    A drop-in for ``nn.ReLU`` in one's own model: ``IFNeuron()`` is a ReLU, ``IFNeuron(activation="qcfs")`` a QCFS
    activation to train with. Buffers: ``threshold`` (V_th, a scalar) and ``v0`` (the initial membrane potential, broadcastable
    to one sample's activation: a scalar, per channel ``[C, 1, 1]`` or per neuron ``[C, H, W]``).
    With ``activation="qcfs"`` the ANN activation is ``lam * clip(floor(z L / lam + 1/2) / L, 0, 1)``
    with a trainable ``lam`` and ``L = levels``.
    """

    def __init__(self, activation: str = "relu", levels: int = 4, init_lambda: float = DEFAULT_INIT_LAMBDA) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if activation == "qcfs" and (not isinstance(levels, int) or levels < 1):
            raise ValueError(f"QCFS needs a positive integer number of levels L, got {levels!r}")
        self.activation, self.levels = activation, levels
        if activation == "qcfs":
            self.lam = nn.Parameter(torch.tensor(float(init_lambda)))
        self.register_buffer("threshold", torch.tensor(1.0))
        self.register_buffer("v0", torch.tensor(0.0))
        # whether V_th was ever set (balanced, taken from lambda, or by set_threshold): simulate warns otherwise.
        # A flag, not a comparison with 1.0: 1.0 can be a balanced threshold.
        self.threshold_set = False
        self.mode: Mode = "ann"
        self.steps = 1  # time steps folded into the batch of the next SNN call
        # set by simulate under direct coding: the image batch's size B. A neuron handed B rows rather than
        # steps x B takes them as the same input current at every step (the layers before it ran once)
        self.input_batch: int | None = None
        self.track = False  # record spike counts and first-spike times (costs time)
        self.presim = 0  # COS: pre-simulation steps run on each input before the real steps
        self.presim_iterations = 1
        self.presim_shift = "authors"  # COS: how far a neuron's v0 moves (see _offset_spike_calibration)
        # energy counting (set by icsnn_core.energy.EnergyMeter.recording): [neurons of one sample, 3] columns
        # 1 (spike count), fan-out, fan-out into pre-simulated neurons; None (the default): count nothing
        self.sop_weights: torch.Tensor | None = None
        self.reset()

    @torch.no_grad()
    def set_threshold(self, value: float | torch.Tensor) -> None:
        """Set ``V_th`` (a positive scalar) by hand; :func:`icsnn_core.balance_thresholds` sets it from data."""
        value = float(value)
        if not value > 0:
            raise ValueError(f"a threshold must be positive, got {value}")
        self.threshold.fill_(value)
        self.threshold_set = True

    # --- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the membrane potential and the spike records (call before each new input batch)."""
        self.v: torch.Tensor | None = None
        self.t = 0
        self.spike_count: torch.Tensor | None = None
        self.first_spike: torch.Tensor | None = None
        self.fused = False  # set by simulate(fused=True): the window's IF update through fused_if_window
        self.quantised = True  # False only while training with TrainConfig.quant_warmup: QCFS's clip without its floor
        self.calibrated_v0: torch.Tensor | None = None  # COS: this batch's v0 after the offset-spike shifts
        self.step_ops: list[torch.Tensor] = []  # energy counting: per call, [steps, 3] sums over the batch

    def extra_repr(self) -> str:
        act = f"qcfs(L={self.levels})" if self.activation == "qcfs" else "relu"
        return f"{act}, mode={self.mode}, threshold={float(self.threshold):.4g}, v0_shape={tuple(self.v0.shape)}"

    # --- forward -----------------------------------------------------------------------------
    def lam_value(self) -> torch.Tensor:
        """QCFS's lambda as used (clamped to stay positive)."""
        return self.lam.clamp_min(LAMBDA_MIN)

    def ann_activation(self, z: torch.Tensor) -> torch.Tensor:
        if self.activation == "relu":
            return torch.relu(z)
        lam, L = self.lam_value(), self.levels  # QCFS, Bu et al. 2022, eq. (13)
        if not self.quantised:
            return lam * torch.clamp(z / lam, 0.0, 1.0)
        return lam * torch.clamp(floor_ste(z * L / lam + 0.5) / L, 0.0, 1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.mode == "ann":
            return self.ann_activation(z)
        if self.mode == "saturated":
            return torch.full_like(z, float(self.threshold))
        return self._integrate_and_fire(z)

    def _integrate_and_fire(self, z: torch.Tensor) -> torch.Tensor:
        steps = self.steps
        if steps > 1 and z.shape[0] == self.input_batch:
            z = z.unsqueeze(0).expand(steps, *z.shape)  # one current for every step: a view, nothing copied
        elif z.shape[0] % steps:
            raise RuntimeError(
                f"IFNeuron got a batch of {z.shape[0]} rows, not a multiple of steps={steps}: "
                "run SNN models through icsnn_core.simulate, which folds time into the batch"
            )
        else:
            z = z.reshape(steps, z.shape[0] // steps, *z.shape[1:])
        thr = self.threshold.to(z.dtype)
        if self.v is None:
            self.v = self.v0.to(z.dtype).expand(z.shape[1:]).clone()
            if self.presim:
                self.v = self._offset_spike_calibration(z, self.v, thr)
        v, thr_f = self.v, float(thr)  # one host read per call, none per step
        if self.fused:
            out, v = fused_if_window(z, v, thr)
        else:
            out = torch.empty_like(z)  # the output spikes: 0/1 in the loop, each carrying V_th after it
            for t in range(steps):
                v.add_(z[t])
                spike = out[t]
                torch.gt(v, thr_f, out=spike)  # eq. (6): fire when v_temp > V_th (strict)
                v.sub_(spike, alpha=thr_f)  # soft reset by V_th (1 x V_th is exact: the same as subtracting V_th)
        self.v = v
        if self.track:
            self._record(out > 0)
        if self.sop_weights is not None:
            self._count_ops(out)
        out.mul_(thr_f)  # once per call, not once per step
        self.t += steps
        return out.reshape(-1, *z.shape[2:])

    def _offset_spike_calibration(self, z: torch.Tensor, v0: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
        """COS (Hao et al. 2023): pre-simulate ``presim`` steps of this input from v0, then shift each neuron's v0.

        A residual below 0 in a neuron that fired means a spike too many: v0 moves down. A residual at or
        above V_th means a spike too few: v0 moves up. ``presim_shift="threshold"`` moves it by one V_th.
        ``"authors"`` (the default) moves it as the authors' code does (``MPLayer`` in hzc1208/ANN2SNN_COS),
        in threshold units: down by ``max(1, m - 0.999)``, with m the smallest potential before the reset at a
        step that spiked, and up by ``max(1, 1.001 - m2)``, with m2 the largest potential at a step that did
        not. A neuron that spiked at every step has no m2: the authors' code then shifts it up by 1001
        thresholds (a placeholder); here it moves up by one. The calibrated v0 of the last input batch stays in
        ``calibrated_v0`` until :meth:`reset`. Each further iteration repeats the round from the shifted v0
        (the authors' code runs one round).
        """
        rho = self.presim
        if z.shape[0] < rho:
            raise RuntimeError(f"COS needs the first {rho} steps in one call, got {z.shape[0]}: use icsnn_core.simulate")
        for _ in range(self.presim_iterations):
            v, fired = v0.clone(), torch.zeros_like(v0, dtype=torch.bool)
            m = torch.full_like(v0, float("inf"))  # smallest pre-reset potential at a spiking step, in V_th units
            m2 = torch.full_like(v0, float("-inf"))  # largest potential at a silent step, in V_th units
            for t in range(rho):
                v.add_(z[t])
                s = v > thr
                m = torch.where(s, torch.minimum(m, v / thr), m)
                v.sub_(s.to(v.dtype) * thr)
                m2 = torch.where(s, m2, torch.maximum(m2, v / thr))
                fired |= s
            if self.presim_shift == "authors":
                down, up = (m - 0.999).clamp_min(1.0), (1.001 - m2).clamp_min(1.0)  # m2 = -inf: no silent step
                up = torch.where(torch.isinf(m2), torch.ones_like(up), up)
            else:
                down = up = torch.ones_like(v0)
            v0 = torch.where((v < 0) & fired, v0 - down * thr, torch.where(v >= thr, v0 + up * thr, v0))
        self.calibrated_v0 = v0.clone()
        return v0

    def _count_ops(self, fired: torch.Tensor) -> None:
        """Per step of this call, summed over the batch: spikes, synaptic operations (the sum of the spiking
        neurons' fan-outs) and those into pre-simulated neurons (:func:`step_op_counts` with ``sop_weights``)."""
        self.step_ops.append(step_op_counts(fired, self.sop_weights, fired.shape[0]))

    def _record(self, fired_at: torch.Tensor) -> None:
        spikes = fired_at.to(self.v.dtype)
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


def ann_kind(model: nn.Module) -> str:
    """``"relu"`` or ``"qcfs"``: the activation the ANN was trained with (all its neurons must agree)."""
    kinds = {n.activation for _, n in neurons(model)}
    if len(kinds) != 1:
        raise ValueError(f"the model mixes activations {sorted(kinds)} or has no IF neurons")
    return kinds.pop()


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


@contextmanager
def recording(model: nn.Module, which: Iterable[IFNeuron], on: bool = True) -> Iterator[None]:
    """Record spike counts and first-spike times of ``which`` neurons inside the block; afterwards stop
    recording and reset the whole model, whatever happened."""
    which = list(which)
    for n in which:
        n.track = on
    try:
        yield
    finally:
        for n in which:
            n.track = False
        reset(model)
