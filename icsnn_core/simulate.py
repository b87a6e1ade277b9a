"""SNN simulation with time folded into the batch; one run of horizon T gives the accuracy at every t <= T.

Paper Sec. 3.1 and eq. (7): the network integrates for T steps; the prediction at step t is the arg-max
of the output layer's accumulated potential ``sum_{s<=t} (W x(s) + b)`` (no neuron on the output layer).
Memory is bounded by ``max_fold`` (samples x steps in one forward pass) whatever T and the number of
images: images are taken ``batch_size`` at a time and T is run in windows of ``max_fold // batch_size``
steps, the membrane potential carried across windows. Results are the same for every chunking. The
default fold is device-dependent: on a CPU, convolutions over a few hundred samples at a time stay in
cache and run faster than one huge folded batch (measured in benchmarks/speed.py); a GPU wants large ones.
"""
from __future__ import annotations

import ctypes
import platform
import warnings
import weakref
from contextlib import nullcontext
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import fx, nn
from tqdm import tqdm

from .data import DataLike, Split, as_split, batches
from .errors import ConfigError, ThresholdWarning
from .neuron import IFNeuron, neurons, reset, set_mode

if TYPE_CHECKING:
    from .energy import EnergyMeter

Coding = Literal["direct", "rate"]
CODINGS = ("direct", "rate")


# glibc's mallopt parameters (malloc.h) and its initial values for both (128 KiB)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _GLIBC_THRESHOLD = -1, -3, 128 * 1024
REUSED_BLOCK_LIMIT = 2**30  # blocks up to 1 GiB are kept for reuse by reuse_freed_memory


def reuse_freed_memory(enabled: bool = True) -> bool:
    """Keep the memory of freed CPU tensors in the process for the next ones; True if applied (glibc's malloc on
    Linux), False elsewhere (nothing changed).

    PyTorch takes each CPU tensor from malloc, and glibc serves a block above its mmap threshold (which adapts, but
    never past 32 MiB) with fresh pages from the kernel and returns them when it is freed, so every page of every
    such tensor faults on first touch. A simulation with steps folded into the batch makes tensors of that size at
    every layer of every pass (ResNet20 w0.5 at T = 32 folded whole: 33 MiB per layer), and the faults slow it down
    (``benchmarks/speed.py``'s ``freed-memory`` rows time it). Raising both thresholds to 1 GiB keeps
    freed blocks for reuse: the same results (only where memory comes from changes), a resident set that stays near
    its peak. ``enabled=False`` restores glibc's initial thresholds. The ``icsnn`` command calls it on start.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    value = REUSED_BLOCK_LIMIT if enabled else _GLIBC_THRESHOLD
    return bool(mallopt(_M_MMAP_THRESHOLD, value)) and bool(mallopt(_M_TRIM_THRESHOLD, value))


def default_max_fold(device: torch.device | str) -> int:
    """Samples x steps per forward pass when none is given: 256 on a CPU, 65,536 on a GPU."""
    return 256 if torch.device(device).type == "cpu" else 65536


# curves.csv holds a row for every step t <= T of every method, and a simulation keeps each step's output:
# 100,000 steps is already about 10 MB of curves per method and far past the paper's largest T (256)
MAX_T = 100_000


def validate_T(T: object) -> int:
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T <= 0:
        raise ConfigError(f"the number of time steps T must be a positive integer, got {T!r}. Fix: e.g. T=32")
    if T > MAX_T:
        raise ConfigError(f"T = {T} is more than the {MAX_T:,} steps a run can hold (a curve row and an output per "
                          "step). Fix: e.g. T=256, the paper's largest")
    return int(T)


def validate_coding(coding: str) -> str:
    if coding not in CODINGS:
        raise ConfigError(f"unknown input coding {coding!r}; choose one of {', '.join(CODINGS)}")
    return coding


def check_input(model: nn.Module, x: torch.Tensor, coding: Coding = "direct") -> None:
    """Reject inputs the model cannot take or that would give wrong numbers silently, saying what was expected:
    NaN/inf, ``uint8`` pixels, a shape the first layer does not take, and values outside [0, 1] for rate coding."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))), None)
    if x.dim() < 2 or (isinstance(first, nn.Conv2d) and x.dim() != 4):
        raise ConfigError(f"expected images shaped [batch, channels, height, width] or feature vectors [batch, "
                          f"features], got shape {tuple(x.shape)}" + (" for a model whose first layer is a Conv2d"
                                                                       if x.dim() >= 2 else "") +
                          ". Fix: add the batch dimension, e.g. x.unsqueeze(0) for one image")
    if not x.is_floating_point():
        raise ConfigError(f"the inputs are {x.dtype}, not floats" + (" (pixels 0..255)" if x.dtype == torch.uint8 else "")
                          + ". Fix: pass x.float() / 255 for uint8 images, or a Split (Split.from_tensors scales "
                          "uint8 images by 1/255)")
    if isinstance(first, nn.Conv2d) and first.in_channels != x.shape[1]:
        raise ConfigError(f"the model's first layer takes {first.in_channels} channels, the images have {x.shape[1]}. "
                          "Fix: use the dataset the model was trained on")
    if isinstance(first, nn.Linear) and x.dim() == 2 and first.in_features != x.shape[1]:
        raise ConfigError(f"the model's first layer takes {first.in_features} features, the inputs have {x.shape[1]}. "
                          "Fix: use the dataset the model was trained on")
    if not torch.isfinite(x).all():
        raise ConfigError("the input images contain NaN or infinite values. Fix: clean or re-load the data")
    if coding == "rate" and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ConfigError(f"rate coding draws spikes with the input values as probabilities, and these run from "
                          f"{float(x.min()):.3g} to {float(x.max()):.3g}, outside [0, 1]. Fix: feed the raw images in "
                          "[0, 1] and normalise inside the model, e.g. a first layer that subtracts the mean "
                          "(icsnn_core.models.Normalize), or use coding='direct'")


def check_thresholds(model: nn.Module) -> None:
    """Warn when some neuron's threshold was never set: V_th = 1 from the constructor is almost never right."""
    unset = [name for name, n in neurons(model) if not n.threshold_set]
    if unset:
        warnings.warn("simulating neurons whose thresholds were never set (V_th is still the constructor's 1.0). Fix: "
                      "icsnn_core.balance_thresholds(snn, train_data) on a ReLU ANN, "
                      "icsnn_core.convert.thresholds_from_lambda(snn) on a QCFS ANN, or IFNeuron.set_threshold(v) "
                      "by hand", ThresholdWarning, stacklevel=4)  # past simulate and its no_grad wrapper


def check_split(split: Split) -> None:
    """Refuse an empty split: its accuracy would be 0/0."""
    if len(split) == 0:
        raise ConfigError("the split to evaluate holds no images, so it has no accuracy. Fix: pass a non-empty "
                          "split (n_test >= 1)")


def check_labels(y: torch.Tensor, classes: int) -> None:
    """Refuse labels the model's outputs cannot name (every such image would silently count as wrong)."""
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ConfigError(f"labels run from {int(y.min())} to {int(y.max())} but the model has {classes} outputs. "
                          "Fix: use the dataset the model was trained on, with labels 0..classes-1")


def encode(x: torch.Tensor, steps: int, coding: Coding, generator: torch.Generator | None = None) -> torch.Tensor:
    """The input of ``steps`` time steps, step-major ``[steps * B, C, H, W]``.

    ``direct``: the analog image at every step. ``rate``: Bernoulli spikes with the pixel intensity in [0, 1]
    as the probability of firing (paper Sec. 3.4, Fig. 3; :func:`check_input` refuses values outside [0, 1]);
    random draws come from the CPU ``generator``.
    """
    rep = x.unsqueeze(0).expand(steps, *x.shape)
    if coding == "rate":
        u = torch.rand(rep.shape, generator=generator).to(x.device)
        rep = (u < rep.clamp(0, 1)).to(x.dtype)
    return rep.reshape(steps * x.shape[0], *x.shape[1:])


_STEP_FREE_STEM: "weakref.WeakKeyDictionary[nn.Module, bool]" = weakref.WeakKeyDictionary()


def step_free_stem(model: nn.Module) -> bool:
    """Whether the layers between the input and the first IF neurons may run once per window, not once per step.

    Under direct coding every step sees the same image, so whatever the input reaches before any IF neuron (the
    normalisation, the first convolution, its folded batch norm) computes the same current at every step: running it on
    the ``B`` images and handing each first neuron that one current for all steps is exact, and saves the first
    layer's T-fold work (``benchmarks/speed.py``'s ``stem-once`` rows: up to 1.13x at T = 32 on a CPU). It holds when the
    model (traced by ``torch.fx``) never mixes a tensor computed before every neuron with one computed after one (an
    ``x + spikes`` skip, or a ``view(x.size(0), ...)``) and its output comes after a neuron; a model that cannot be
    traced runs every step in full, as before. Decided once per model object."""
    if model not in _STEP_FREE_STEM:
        from .convert import _trace  # the tracer that keeps each IFNeuron one node

        try:
            gm = _trace(model)
        except ConfigError:
            _STEP_FREE_STEM[model] = False
            return False
        mods = dict(gm.named_modules())
        side: dict[fx.Node, str] = {}  # "before" every neuron, "after" one, or "const" (parameters, literals)
        ok = True
        for node in gm.graph.nodes:
            inputs = {side[a] for a in node.all_input_nodes} - {"const"}
            if node.op == "placeholder":
                side[node] = "before"
            elif node.op == "call_module" and isinstance(mods[node.target], IFNeuron):
                side[node] = "after"
            elif inputs == {"before", "after"}:
                ok = False  # B rows would meet steps x B rows
                break
            else:
                side[node] = inputs.pop() if inputs else "const"
            if node.op == "output":
                ok = side[node] == "after"
        _STEP_FREE_STEM[model] = ok
    return _STEP_FREE_STEM[model]


@torch.no_grad()
def simulate(model: nn.Module, x: torch.Tensor, T: int, *, coding: Coding = "direct", max_fold: int | None = None,
             generator: torch.Generator | None = None, fused: bool = False, stem_once: bool = True) -> torch.Tensor:
    """Run the SNN on one batch for ``T`` steps from the neurons' ``v0``; return each step's output ``[T, B, K]``.

    ``x`` is a batch of images ``[B, C, H, W]`` or of feature vectors ``[B, F]``. The prediction at step t is the
    arg-max of the output summed over steps 1..t (``out.cumsum(0).argmax(-1)``; paper eq. 7). Afterwards the
    model is back in ANN mode (``model(x)`` is the ANN again) and the neurons keep their final state (``v`` =
    v(T), spike records) for inspection until the next run. Neurons with a pre-simulation (COS's rho) see at
    least rho input steps in their first call; when rho > T the network runs rho steps and the first T outputs
    are returned (later steps cannot change them). Warns (:class:`ThresholdWarning`) when thresholds were never set.
    ``fused`` runs each window's IF update as one ``torch.compile``'d kernel (:func:`icsnn_core.neuron.if_window`:
    the same spikes; it pays for windows of several steps, after a compile of seconds per window length).
    Under direct coding the layers before the first neurons run once per window on the ``B`` images, not on
    every step's copy of them (:func:`step_free_stem`: exact, the same current at every step); ``stem_once=False``
    runs them at every step, as before (to compare).
    """
    T = validate_T(T)
    validate_coding(coding)
    check_input(model, x, coding)
    named = [n for _, n in neurons(model)]
    if not named:
        raise ConfigError("the model has no IF neurons, so simulating it would only repeat the ANN. Fix: "
                          "snn = icsnn_core.convert(ann), then balance_thresholds(snn, ...), then simulate(snn, ...)")
    check_thresholds(model)
    set_mode(model, "snn")
    presim = max((n.presim for n in named), default=0)
    total = max(T, presim)
    b = x.shape[0]
    max_fold = max_fold or default_max_fold(x.device)
    window = max(1, presim, min(total, max_fold // max(1, b)))
    once = stem_once and coding == "direct" and step_free_stem(model)  # the layers before the first neurons: once per window
    outs = []
    try:
        for t0 in range(0, total, window):
            steps = min(window, total - t0)
            for n in named:
                n.steps, n.fused, n.input_batch = steps, fused, b if once else None
            out = model(x if once else encode(x, steps, coding, generator))
            outs.append(out.reshape(steps, b, *out.shape[1:]))
    finally:
        for n in named:  # ANN mode again, without reset: v(T) and the spike records stay readable
            n.mode, n.fused, n.input_batch = "ann", False, None
    return torch.cat(outs)[:T]


def ann_correct(model: nn.Module, split: DataLike, *, batch_size: int = 256,
                device: str | torch.device = "cpu") -> torch.Tensor:
    """Whether the model in ANN mode gets each sample of ``split`` right (a bool per sample, on the CPU)."""
    split = as_split(split)
    check_split(split)
    set_mode(model, "ann")
    model.eval().to(device)
    right = []
    with torch.no_grad():
        for x, y in batches(split, batch_size, device=device):
            check_input(model, x)
            out = model(x)
            check_labels(y, out.shape[-1])
            right.append((out.argmax(1) == y).cpu())
    return torch.cat(right)


def ann_accuracy(model: nn.Module, split: DataLike, *, batch_size: int = 256,
                 device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy (%) of the model in ANN mode on ``split`` (anything :func:`icsnn_core.data.as_split` takes)."""
    right = ann_correct(model, split, batch_size=batch_size, device=device)
    return 100.0 * int(right.sum()) / len(right)


def accuracy_curve(model: nn.Module, split: DataLike, T: int, *, coding: Coding = "direct", batch_size: int = 256,
                   max_fold: int | None = None, device: str | torch.device = "cpu", seed: int = 0, progress: bool = False,
                   energy: "EnergyMeter | None" = None, fused: bool = False) -> np.ndarray:
    """Accuracy (%) at every t = 1..T from one simulation of horizon T over ``split`` (anything
    :func:`icsnn_core.data.as_split` takes).

    The prediction at step t is the arg-max of the output layer's output summed over steps 1..t. The neurons'
    v(0) is whatever the last :meth:`icsnn_core.Method.apply` set: a T-dependent method (I-SNN, C-SNN, IC-SNN)
    is calibrated for one T, so entry t of this curve is the method calibrated for T, read at t.

    With ``energy`` (an :class:`icsnn_core.energy.EnergyMeter` built for this model) the same simulation also
    counts spikes and synaptic operations at every step; they are in ``energy.record`` afterwards. ``fused``: as
    in :func:`simulate`.
    """
    T = validate_T(T)
    split = as_split(split)
    check_split(split)
    model.eval().to(device)
    g = torch.Generator().manual_seed(seed)
    correct = torch.zeros(T, dtype=torch.long)
    if energy is not None and energy.coding != coding:
        raise ConfigError(f"the EnergyMeter counts {energy.coding} coding but the simulation uses {coding}. Fix: "
                          f"EnergyMeter(model, input_shape, coding={coding!r})")
    with energy.recording(model) if energy is not None else nullcontext():
        for x, y in tqdm(batches(split, batch_size, device=device), total=-(-len(split) // batch_size),
                         desc=f"simulate T={T}", disable=not progress, leave=False):
            reset(model)
            out = simulate(model, x, T, coding=coding, max_fold=max_fold, generator=g, fused=fused)
            check_labels(y, out.shape[-1])
            pred = out.cumsum(0).argmax(-1)  # [T, B]
            correct += (pred == y.unsqueeze(0)).sum(1).cpu()
            if energy is not None:
                energy.collect(model, len(y))
    reset(model)
    return correct.numpy() * 100.0 / len(split)
