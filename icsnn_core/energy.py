"""What a converted SNN's accuracy costs: synaptic operations, firing rates and an arithmetic energy estimate.

An ANN does one multiply-accumulate (MAC) per synapse per image. An SNN does one accumulate (AC) per
synapse that a spike travels, per step: a spike of an IF neuron costs one AC on every outgoing synapse, i.e.
its **fan-out**, the number of output units of the next conv/linear layer(s) it connects to. The energy
estimate per image is the literature's convention (e.g. Rueckauer et al. 2017, Bu et al. 2022):

    E = MACs x E_MAC + SOPs x E_AC,   E_MAC = 4.6 pJ, E_AC = 0.9 pJ

(32-bit float multiply-add and add at 45 nm; M. Horowitz, "Computing's energy problem (and what we can do
about it)", ISSCC 2014). Both are configurable (:class:`EnergyCosts`). **It is an estimate of arithmetic
energy, not a hardware measurement**: memory traffic, membrane updates, biases and the readout's decision
are not counted, on either side.

Conventions, counted exactly from the layer shapes (never estimated from averages):

- **Fan-out** of a neuron (and of an input pixel) = number of (output unit, input unit) connections of the
  weighted layers its spike reaches through the linear operations in between (flatten, identity, residual
  adds, average pooling folded into the next layer's weights), padding and stride included: an edge pixel of
  a padded conv has fewer synapses. It is computed as ``J^T 1`` of the 0/1 connectivity: every conv/linear
  weight replaced by 1, average pooling by a sum over its window, and autograd's gradient of the sum of the
  reached layers' outputs with respect to each neuron's output (:func:`synapses`). A spike that reaches an IF
  neuron without a weighted layer (ResNet's identity shortcut) costs one AC per neuron reached; the output
  layer (the readout) counts like any other weighted layer.
- **First layer**: under direct coding it receives the analog image at every step, so its synapses cost
  MACs, not ACs: the first weighted layer's MACs (those fed by the input) x t. Under rate coding the input
  is spikes: each input spike costs an AC per synapse of its pixel (the input's fan-out), and no MAC is done.
- **COS's pre-simulation** (``rho`` steps, :meth:`IFNeuron._offset_spike_calibration`): each IF layer
  integrates its input of the first rho real steps a second time, from v(0), to decide its shift; those
  steps' spikes are never sent on. So the pre-simulation costs the synaptic input of the first rho steps
  into the pre-simulated neurons once more: the first layer's MACs x rho (direct coding) or the input's ACs
  of those steps (rate coding), plus the SOPs of every IF layer's spikes at steps 1..rho on its synapses
  into IF neurons (not into the readout, which is not pre-simulated). Counted as executed again (not
  buffered), and added to every reading t; methods are then compared at equal latency t + rho.
- **Firing rate** of a layer at t: its spikes over steps 1..t per neuron per step (pre-simulation spikes
  are not counted: they are never emitted).
- IC-SNN's and Algorithm 1's calibrations run once before deployment, not per image: not counted.
"""
from __future__ import annotations

import math
import operator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .errors import ConfigError
from .models import Normalize
from .neuron import IFNeuron, neurons, step_op_counts

E_MAC_PJ = 4.6  # Horowitz, ISSCC 2014, 45 nm, 32-bit float multiply (3.7 pJ) + add (0.9 pJ)
E_AC_PJ = 0.9  # Horowitz, ISSCC 2014, 45 nm, 32-bit float add
SOURCE = "Horowitz, \"Computing's energy problem\", ISSCC 2014 (45 nm)"
CAVEAT = "an estimate of arithmetic energy, not a hardware measurement"
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
_PASS_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)  # 0/1 connectivity: the identity, reshaped
_PASS_FUNCTIONS = {operator.add, torch.add, torch.flatten, torch.reshape, torch.cat, operator.getitem}
_PASS_METHODS = {"view", "reshape", "flatten", "contiguous", "squeeze", "unsqueeze", "size", "dim", "add"}
# shift or scale by a constant (the input normalisation once convert() has traced it): the same 0/1 connectivity
# functional average pooling, as the module that computes the same (a user's model may write either)
_POOL_FUNCTIONS = {F.avg_pool2d: nn.AvgPool2d, F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d}
_MEANS = {torch.mean, torch.sum, "mean", "sum"}
_AFFINE = {operator.sub: "sub", torch.sub: "sub", operator.truediv: "scale", torch.div: "scale",
           operator.mul: "scale", torch.mul: "scale"}


@dataclass(frozen=True)
class EnergyCosts:
    """Energy per operation in picojoules (default: Horowitz, ISSCC 2014, 45 nm)."""

    e_mac_pj: float = E_MAC_PJ
    e_ac_pj: float = E_AC_PJ

    def __post_init__(self) -> None:
        for name in ("e_mac_pj", "e_ac_pj"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{name} must be a finite energy >= 0 in picojoules, got {v!r}. Fix: e.g. "
                                  f"{name}={getattr(EnergyCosts, name)} ({SOURCE})")

    def energy_uj(self, macs: float, sops: float) -> float:
        """E = MACs x E_MAC + SOPs x E_AC, in microjoules."""
        return (macs * self.e_mac_pj + sops * self.e_ac_pj) * 1e-6


# --- the ANN's MACs ------------------------------------------------------------------------------

def _layer_macs(m: nn.Module, out: torch.Tensor) -> int:
    per_image = out[0].numel()
    if isinstance(m, nn.Linear):
        return per_image * m.in_features
    return per_image * (m.in_channels // m.groups) * math.prod(m.kernel_size)


@torch.no_grad()
def ann_macs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """MACs of the ANN per image, per conv/linear layer (by module name, in call order).

    conv: output elements x in_channels/groups x kernel size; linear: in x out (padded taps included, as in
    the usual count). ``input_shape`` is one image's shape, e.g. ``(3, 32, 32)``. Measured with forward hooks
    on one image of zeros in ANN mode; the neurons' modes and states are restored afterwards.
    """
    counts: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: counts.__setitem__(name, counts.get(name, 0)
                                                                                     + _layer_macs(m, o)))
             for name, m in model.named_modules() if isinstance(m, _WEIGHTED)]
    modes = [(n, n.mode) for _, n in neurons(model)]
    try:
        for n, _ in modes:
            n.mode = "ann"
        p = next(model.parameters(), None)
        x = torch.zeros(1, *input_shape, device=p.device if p is not None else "cpu",
                        dtype=p.dtype if p is not None else torch.float32)
        model(x)
    finally:
        for h in hooks:
            h.remove()
        for n, mode in modes:
            n.mode = mode
            n.reset()
    return counts


# --- synapses: exact fan-out from the layer shapes ------------------------------------------------

@dataclass
class Synapses:
    """The connectivity of a converted model, per image (fan-outs are one sample's shape, integer-valued)."""

    layers: list[str]  # IF layers, in forward order of registration
    fanout: dict[str, torch.Tensor]  # per IF layer: synapses of each neuron (all targets)
    presim_fanout: dict[str, torch.Tensor]  # per IF layer: synapses into IF neurons (pre-simulated by COS)
    input_fanout: torch.Tensor  # synapses of each input pixel (used under rate coding)
    input_presim_fanout: torch.Tensor
    first_layers: list[str]  # the weighted layers the input reaches directly
    first_layer_macs: int  # their MACs per image (per step under direct coding)
    ann_macs: dict[str, int] = field(default_factory=dict)

    @property
    def ann_total(self) -> int:
        return sum(self.ann_macs.values())


class _Tracer(fx.Tracer):
    """Keeps IF neurons and the input normalisation as single nodes (their internals are not connectivity)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (IFNeuron, Normalize)) or super().is_leaf_module(m, qualname)


def _graph(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.GraphModule(model, _Tracer().trace(model))
    except Exception as e:  # noqa: BLE001 - fx raises many kinds of errors on untraceable code
        raise ConfigError(f"cannot trace {type(model).__name__} to count its synapses ({type(e).__name__}: {e}). "
                          "Fix: build the model from conv/linear/IF/avg-pool/flatten/add modules") from e


def _ones_layer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer with every weight 1 and no bias: output j sums the inputs connected to it."""
    if isinstance(m, nn.Linear):  # = F.linear(x, ones), without an [out, in] matrix of ones
        return x.sum(-1, keepdim=True).expand(*x.shape[:-1], m.out_features)
    if m.padding_mode != "zeros":
        raise ConfigError(f"conv layer with padding_mode={m.padding_mode!r}: its synapses are not counted here. "
                          "Fix: use zero padding (the default)")
    conv = F.conv1d if isinstance(m, nn.Conv1d) else F.conv2d
    if m.groups == 1:  # every input channel reaches every output channel: sum the channels, expand after
        y = conv(x.sum(1, keepdim=True), x.new_ones(1, 1, *m.kernel_size), None, m.stride, m.padding, m.dilation)
        return y.expand(y.shape[0], m.out_channels, *y.shape[2:])
    return conv(x, x.new_ones(m.weight.shape), None, m.stride, m.padding, m.dilation, m.groups)


def _adaptive_area(size_in: int, size_out: int) -> torch.Tensor:
    """Window length of each output of an adaptive pooling (PyTorch's start/end rule)."""
    i = torch.arange(size_out)
    return ((i + 1) * size_in + size_out - 1) // size_out - (i * size_in) // size_out


def _sum_pool(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Average pooling as a sum over its window: the 1/k is folded into the next layer's weights."""
    if isinstance(m, nn.AvgPool2d):
        return F.avg_pool2d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, divisor_override=1)
    size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
    size = tuple(s if s is not None else x.shape[-2 + k] for k, s in enumerate(size))
    area = _adaptive_area(x.shape[-2], size[0])[:, None] * _adaptive_area(x.shape[-1], size[1])[None, :]
    return F.adaptive_avg_pool2d(x, size) * area.to(x)


def _reached(start: fx.Node, mods: dict[str, nn.Module]) -> set[fx.Node]:
    """The weighted layers, IF neurons and output that ``start``'s value reaches through linear operations."""
    seen, todo, found = set(), list(start.users), set()
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "output" or (node.op == "call_module" and isinstance(mods[node.target], (IFNeuron, *_WEIGHTED))):
            found.add(node)
        else:
            todo += list(node.users)
    return found


def _affine(node: fx.Node, kind: str, args: tuple) -> torch.Tensor:
    """``a - b``, ``a * c``, ``a / c`` on tracked values: a difference connects like a sum; a constant scale or shift
    keeps each unit's connections (a weight that is not 0 or 1 is still one synapse)."""
    a, b = args[0], args[1]
    ta, tb = (isinstance(v, torch.Tensor) and v.requires_grad for v in (a, b))
    if ta and tb:
        if kind == "scale":
            raise _unsupported(node, "a product of two spike-carrying values")
        return a + b
    x, other = (a, b) if ta else (b, a)
    if kind == "scale" and not ta:
        raise _unsupported(node, "a division by a spike-carrying value")
    shape = torch.broadcast_shapes(x.shape, other.shape if isinstance(other, torch.Tensor) else ())
    return x.expand(shape)


def _unsupported(node: fx.Node, what: str) -> ConfigError:
    return ConfigError(f"{what} at {node.name!r} lies between IF neurons and the next weighted layer, and its "
                       "synapses cannot be counted. Fix: build the model from conv/linear/IF/avg-pool/flatten/add")


def synapses(model: nn.Module, input_shape: Sequence[int]) -> Synapses:
    """Exact fan-out of every IF neuron and input pixel of a converted ``model`` (see the module docstring).

    One pass over the fx graph with float64 values of batch 1: each neuron's output and the input are leaves,
    each weighted layer reached adds the sum of its all-ones outputs to a total (the readout to a second total
    too), a weighted layer's output carries nothing on; the gradients of the totals are the fan-outs.
    """
    gm = _graph(model)
    mods = dict(gm.named_modules())
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ConfigError(f"the model takes {len(placeholders)} inputs; counting synapses needs one (the images)")
    readout = {n for n in gm.graph.nodes if n.op == "call_module" and isinstance(mods[n.target], _WEIGHTED)
               and any(r.op == "output" for r in _reached(n, mods))}
    first = [n.target for n in _reached(placeholders[0], mods)
             if n.op == "call_module" and isinstance(mods[n.target], _WEIGHTED)]
    env: dict[fx.Node, object] = {}
    total = torch.zeros((), dtype=torch.float64)
    to_neurons = torch.zeros((), dtype=torch.float64)
    leaves: dict[str, torch.Tensor] = {}
    with torch.enable_grad():
        for node in gm.graph.nodes:
            args = fx.node.map_arg(node.args, lambda a: env[a])
            kwargs = fx.node.map_arg(node.kwargs, lambda a: env[a])
            tracked = any(isinstance(a, torch.Tensor) and a.requires_grad for a in (*args, *kwargs.values()))
            if node.op == "placeholder":
                env[node] = leaves["input"] = torch.zeros(1, *input_shape, dtype=torch.float64, requires_grad=True)
            elif node.op == "get_attr":
                value = gm
                for part in node.target.split("."):
                    value = getattr(value, part)
                env[node] = value.detach().double() if isinstance(value, torch.Tensor) else value
            elif node.op == "output":
                out = args[0]
                if isinstance(out, torch.Tensor) and out.requires_grad:  # a spike straight to the output: one synapse
                    total = total + out.sum()
            elif node.op == "call_module":
                m, x = mods[node.target], args[0]
                if isinstance(m, IFNeuron):
                    if tracked:  # reached without a weighted layer (identity shortcut): one synapse per neuron
                        total, to_neurons = total + x.sum(), to_neurons + x.sum()
                    if node.target in leaves:
                        raise ConfigError(f"IF neuron {node.target!r} is called twice; each call site needs its own "
                                          "neuron (its membrane potential is per call). Fix: icsnn_core.convert")
                    env[node] = leaves[node.target] = torch.zeros_like(x.detach()).requires_grad_()
                elif isinstance(m, _WEIGHTED):
                    y = _ones_layer(m, x)
                    if tracked:
                        s = y.sum()
                        total = total + s
                        if node not in readout:
                            to_neurons = to_neurons + s
                    env[node] = torch.zeros_like(y.detach())  # its output is a new current, not a spike
                elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                    env[node] = _sum_pool(m, x)
                elif isinstance(m, Normalize):
                    env[node] = x  # per-channel scale and shift: folded into the first layer's weights and bias
                elif isinstance(m, _PASS_MODULES):
                    env[node] = m(x) if not isinstance(m, nn.Dropout) else x
                else:
                    raise _unsupported(node, f"{type(m).__name__} module")
            elif node.op == "call_function" and tracked and node.target in _POOL_FUNCTIONS:
                env[node] = _sum_pool(_POOL_FUNCTIONS[node.target](*args[1:], **kwargs), args[0])
            elif tracked and node.target in _MEANS:  # a mean over some dims: a sum pooling over them
                dims = args[1] if len(args) > 1 else kwargs.get("dim")
                env[node] = args[0].sum(dim=dims, keepdim=kwargs.get("keepdim", False)) if dims is not None \
                    else args[0].sum()
            elif node.op == "call_function" and tracked and node.target in _AFFINE:
                env[node] = _affine(node, _AFFINE[node.target], args)
            elif node.op == "call_function":
                if tracked and node.target not in _PASS_FUNCTIONS:
                    raise _unsupported(node, f"function {getattr(node.target, '__name__', node.target)}")
                env[node] = node.target(*args, **kwargs)
            else:  # call_method
                if tracked and node.target not in _PASS_METHODS:
                    raise _unsupported(node, f"method .{node.target}()")
                env[node] = getattr(args[0], node.target)(*args[1:], **kwargs)
    names = list(leaves)

    def grads(of: torch.Tensor) -> dict[str, torch.Tensor]:
        if not of.requires_grad:
            return {k: torch.zeros_like(v[0], dtype=torch.int32) for k, v in leaves.items()}
        g = torch.autograd.grad(of, [leaves[k] for k in names], allow_unused=True, retain_graph=True)
        return {k: (torch.zeros_like(leaves[k][0]) if gk is None else gk[0]).round().to(torch.int32)
                for k, gk in zip(names, g)}

    fan, pre = grads(total), grads(to_neurons)
    layers = [name for name, _ in neurons(model)]
    missing = [name for name in layers if name not in fan]
    if missing:  # a neuron the forward never calls has no spikes and so no operations
        raise ConfigError(f"IF neurons {missing} are not called by the model's forward, so their synapses are unknown. "
                          "Fix: remove unused neurons")
    macs = ann_macs(model, input_shape)
    return Synapses(layers, {k: fan[k] for k in layers}, {k: pre[k] for k in layers}, fan["input"], pre["input"],
                    first, sum(macs.get(k, 0) for k in first), macs)


# --- recording during the simulation ---------------------------------------------------------------

def _weights(fanout: torch.Tensor, presim_fanout: torch.Tensor, device: torch.device) -> torch.Tensor:
    """[units, 3] float64: ones, fan-out and pre-simulated fan-out (:func:`step_op_counts` reads them)."""
    w = torch.stack([torch.ones_like(fanout.flatten()), fanout.flatten(), presim_fanout.flatten()], 1)
    return w.to(device, torch.float64)


@dataclass
class EnergyRecord:
    """Operation counts of one simulation over ``n_images`` images, per source and real step (image sums)."""

    layers: list[str]
    neurons: np.ndarray  # [L] neurons per image of each IF layer
    synapses: np.ndarray  # [L] sum of the fan-outs of each layer per image
    input_units: int
    input_synapses: int
    spikes: np.ndarray  # [L, S] spikes per step, summed over images
    sops: np.ndarray  # [L, S]
    presim_sops: np.ndarray  # [L] SOPs of the pre-simulation (steps 1..rho into IF neurons), summed over images
    input_spikes: np.ndarray  # [S] rate coding: input spikes per step (zeros under direct coding)
    input_acs: np.ndarray  # [S] rate coding: their ACs
    presim_input_acs: float  # rate coding: the input's ACs of the pre-simulation
    first_layer_macs: int  # per image per step: the MACs of the layers fed by the analog input (direct coding)
    presim: int  # rho (0 without a pre-simulation)
    coding: str
    n_images: int = 0

    def _check(self, t: int) -> None:
        if not 1 <= t <= self.spikes.shape[1]:
            raise ConfigError(f"step t={t} was not simulated: this record holds steps 1..{self.spikes.shape[1]}")

    def totals(self, t: int, costs: EnergyCosts = EnergyCosts()) -> dict[str, float]:
        """Per image, the whole network over steps 1..t (plus the pre-simulation)."""
        layers = self.layers_at(t, costs)
        spikes = sum(r["spikes_per_image"] for r in layers[1:])
        n = max(1, int(self.neurons.sum()))
        sops = sum(r["sops_per_image"] for r in layers)
        macs = sum(r["macs_per_image"] for r in layers)
        return {"spikes_per_image": spikes, "firing_rate": spikes / (n * t), "sops_per_image": sops,
                "macs_per_image": macs, "presim_sops_per_image": sum(r["presim_sops_per_image"] for r in layers),
                "presim_macs_per_image": sum(r["presim_macs_per_image"] for r in layers),
                "energy_per_image_uj": costs.energy_uj(macs, sops)}

    def layers_at(self, t: int, costs: EnergyCosts = EnergyCosts()) -> list[dict[str, object]]:
        """Per image and per source over steps 1..t: the input (layer 0), then each IF layer (1-based)."""
        self._check(t)
        k = max(1, self.n_images)
        direct = self.coding == "direct"
        macs = float(self.first_layer_macs * t) if direct else 0.0
        pmacs = float(self.first_layer_macs * self.presim) if direct else 0.0
        in_spikes = float(self.input_spikes[:t].sum()) / k
        in_sops = float(self.input_acs[:t].sum()) / k + self.presim_input_acs / k
        rows = [{"layer": 0, "layer_name": "input", "neurons": self.input_units, "synapses": self.input_synapses,
                 "spikes_per_image": in_spikes if not direct else None,
                 "firing_rate": in_spikes / (self.input_units * t) if not direct else None,
                 "sops_per_image": in_sops, "macs_per_image": macs + pmacs,
                 "presim_sops_per_image": self.presim_input_acs / k, "presim_macs_per_image": pmacs}]
        for i, name in enumerate(self.layers):
            spikes = float(self.spikes[i, :t].sum()) / k
            sops = float(self.sops[i, :t].sum() + self.presim_sops[i]) / k
            rows.append({"layer": i + 1, "layer_name": name, "neurons": int(self.neurons[i]),
                         "synapses": int(self.synapses[i]), "spikes_per_image": spikes,
                         "firing_rate": spikes / (max(1, int(self.neurons[i])) * t), "sops_per_image": sops,
                         "macs_per_image": 0.0, "presim_sops_per_image": float(self.presim_sops[i]) / k,
                         "presim_macs_per_image": 0.0})
        for r in rows:
            r["energy_per_image_uj"] = costs.energy_uj(r["macs_per_image"], r["sops_per_image"])
        return rows


class EnergyMeter:
    """Counts a converted model's operations during :func:`icsnn_core.simulate.accuracy_curve`.

    Build it once per model (the fan-outs depend on the layer shapes only, not on thresholds or v(0)); pass it
    as ``accuracy_curve(..., energy=meter)``; read ``meter.record`` (an :class:`EnergyRecord`) afterwards.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int], coding: str = "direct") -> None:
        from .simulate import validate_coding

        self.coding = validate_coding(coding)
        self.input_shape = tuple(input_shape)
        self.syn = synapses(model, input_shape)
        self.record: EnergyRecord | None = None
        self._input: list[torch.Tensor] = []
        self._batch: dict[str, list[torch.Tensor]] = {}

    @property
    def ann_macs(self) -> int:
        return self.syn.ann_total

    @contextmanager
    def recording(self, model: nn.Module) -> Iterator[None]:
        """Count inside the block (a fresh :attr:`record`); afterwards the neurons count nothing again."""
        named = [n for _, n in neurons(model)]
        if [name for name, _ in neurons(model)] != self.syn.layers:
            raise ConfigError("this EnergyMeter was built for another model. Fix: EnergyMeter(model, input_shape)")
        device = next((b.device for b in model.buffers()), torch.device("cpu"))
        s = self.syn
        for (name, n) in zip(s.layers, named):
            n.sop_weights = _weights(s.fanout[name], s.presim_fanout[name], device)
        self.record = EnergyRecord(
            s.layers, np.array([s.fanout[k].numel() for k in s.layers], dtype=np.int64),
            np.array([int(s.fanout[k].sum()) for k in s.layers], dtype=np.int64), s.input_fanout.numel(),
            int(s.input_fanout.sum()), np.zeros((len(s.layers), 0)), np.zeros((len(s.layers), 0)),
            np.zeros(len(s.layers)), np.zeros(0), np.zeros(0), 0.0,
            s.first_layer_macs if self.coding == "direct" else 0, max(n.presim for n in named), self.coding)
        hook = None
        if self.coding == "rate":
            w_in = _weights(s.input_fanout, s.input_presim_fanout, device)

            def count_input(module: nn.Module, args: tuple) -> None:
                x = args[0]  # 0/1 input spikes, [steps * B, ...]
                self._input.append(step_op_counts(x.float(), w_in, named[0].steps))

            hook = model.register_forward_pre_hook(count_input)
        try:
            yield
        finally:
            if hook is not None:
                hook.remove()
            for n in named:
                n.sop_weights, n.step_ops = None, []
            self._input = []

    def collect(self, model: nn.Module, n_images: int) -> None:
        """Add the counts of the simulation just run on ``n_images`` images (call before the next reset)."""
        r = self.record
        if r is None:
            raise RuntimeError("EnergyMeter.collect outside EnergyMeter.recording")
        named = [n for _, n in neurons(model)]
        ops = np.stack([torch.cat(n.step_ops).cpu().numpy() for n in named])  # [L, steps, 3]
        rho = r.presim  # the pre-simulation integrates the synaptic input of real steps 1..rho once more
        inp = torch.cat(self._input).cpu().numpy() if self._input else np.zeros((ops.shape[1], 3))
        if r.spikes.shape[1] == 0:  # the first batch fixes the number of steps
            r.spikes, r.sops = np.zeros(ops.shape[:2]), np.zeros(ops.shape[:2])
            r.input_spikes, r.input_acs = np.zeros(ops.shape[1]), np.zeros(ops.shape[1])
        r.spikes += ops[:, :, 0]
        r.sops += ops[:, :, 1]
        r.presim_sops += ops[:, :rho, 2].sum(1)
        r.input_spikes += inp[:, 0]
        r.input_acs += inp[:, 1]
        r.presim_input_acs += float(inp[:rho, 2].sum())
        r.n_images += n_images
        self._input = []
        for n in named:
            n.step_ops = []
