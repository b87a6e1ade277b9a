"""From a trained ANN to an SNN ready to run: batch-norm folding, ReLU -> IF neuron, threshold balancing.

Paper Sec. 2.3 / 4.1.1: only threshold balancing is used; each layer's threshold ``V_th`` is a
p-quantile (Rueckauer et al. 2017) or the maximum of that layer's ANN activations over training images.
The conversion accepts the built-in models and a user's own ``nn.Module`` made of conv / linear / ReLU /
average-pool / flatten / residual-add blocks (traced with ``torch.fx``); it works on a copy.
"""
from __future__ import annotations

import copy
import operator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import fx, nn

from .data import DataLike, as_split, batches
from .errors import ConfigError
from .neuron import IFNeuron, neurons, set_mode

ThresholdValues = Literal["positive", "all"]
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# what an SNN computes exactly on every time step: linear (or affine) maps of its input. Batch norm is folded
# (or, in eval mode, affine); dropout is the identity in eval mode
_LINEAR_MODULES = (*_WEIGHTED, *_BN, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                   nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Flatten, nn.Unflatten,
                   nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.ZeroPad2d)
_LINEAR_FUNCTIONS = {F.conv1d, F.conv2d, F.conv3d, F.linear, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
                     F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, torch.flatten, torch.cat,
                     torch.concat, torch.stack, torch.reshape, torch.transpose, torch.permute, torch.squeeze,
                     torch.unsqueeze, torch.mean, torch.sum, torch.add, torch.sub, torch.chunk, torch.split,
                     operator.add, operator.sub, operator.iadd, operator.isub, operator.neg, operator.pos,
                     operator.getitem, getattr}
_LINEAR_METHODS = {"view", "view_as", "reshape", "reshape_as", "flatten", "permute", "transpose", "t", "contiguous",
                   "squeeze", "unsqueeze", "expand", "expand_as", "mean", "sum", "add", "add_", "sub", "sub_", "neg",
                   "chunk", "split", "size", "dim", "numel", "clone", "to", "float", "double", "type_as"}
# linear when at most one factor depends on the input (a weight, a buffer or a number times the input), and for a
# division when the divisor does not
_PRODUCTS = {operator.mul, operator.imul, torch.mul, operator.truediv, operator.itruediv, torch.div, torch.true_divide,
             operator.matmul, torch.matmul, torch.mm, torch.bmm, "mul", "mul_", "div", "div_", "matmul"}
_DIVISIONS = {operator.truediv, operator.itruediv, torch.div, torch.true_divide, "div", "div_"}
_RELU = {F.relu, torch.relu, torch.relu_, F.relu_, "relu", "relu_"}
_CLAMPS = {torch.clamp, torch.clip, torch.clamp_min, "clamp", "clip", "clamp_", "clamp_min", "clamp_min_"}
_ACTIVATIONS = ("sigmoid", "tanh", "gelu", "silu", "leaky_relu", "elu", "prelu", "relu6", "hardswish", "hardtanh",
                "hardsigmoid", "mish", "softplus", "selu", "celu", "glu", "softsign", "logsigmoid", "threshold", "abs",
                "clamp", "clip", "clamp_max", "sign", "exp", "log", "sqrt", "pow", "square")
_REFUSALS = (  # (words in the op's name, the fix), the first match wins
    (("maxpool", "max_pool"), "use average pooling (nn.AvgPool2d or F.avg_pool2d) instead of max pooling, and retrain"),
    (("softmax",), "return the logits: the SNN's prediction is the arg-max of the output summed over time steps, "
                   "which a softmax would change. Put the softmax in the loss (nn.CrossEntropyLoss holds it)"),
    (("layernorm", "groupnorm", "instancenorm", "layer_norm", "group_norm", "instance_norm", "localresponse"),
     "it divides by statistics of each input; use BatchNorm (folded into the conv/linear before it) or no "
     "normalisation, and retrain"),
    (_ACTIVATIONS, "an IF neuron represents a ReLU only: replace it with nn.ReLU (or icsnn_core.IFNeuron("
                   "activation='qcfs'), the drop-in QCFS activation for low latency) and retrain"),
)


class _Tracer(fx.Tracer):
    """Traces into a user's modules but keeps each IFNeuron as one node (its forward branches on its mode)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, IFNeuron) or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.GraphModule(model, _Tracer().trace(model), type(model).__name__)
    except Exception as e:  # noqa: BLE001 - fx raises many kinds of errors on untraceable code
        raise ConfigError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(e).__name__}: {e}). Fix: build the model "
            "from modules without data-dependent control flow (conv/linear/ReLU/avg-pool/flatten/add)"
        ) from e


def _op(node: fx.Node, mods: dict[str, nn.Module]) -> str:
    """How a node reads in a message: ``F.relu``, ``Tensor.abs``, ``MaxPool2d module 'pool'``."""
    if node.op == "call_module":
        return f"{type(mods[node.target]).__name__} module {node.target!r}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return getattr(node.target, "__name__", None) or str(node.target)


def _clamp_is_relu(node: fx.Node) -> bool:
    """``clamp(min=0)`` / ``clamp_min(0)`` with no maximum: a ReLU."""
    args, kw = node.args[1:], node.kwargs
    lo = args[0] if args else kw.get("min")
    hi = None if node.target in (torch.clamp_min, "clamp_min", "clamp_min_") else (args[1] if len(args) > 1 else kw.get("max"))
    return isinstance(lo, (int, float)) and not isinstance(lo, bool) and lo == 0 and hi is None


def _refuse(node: fx.Node, mods: dict[str, nn.Module], why: str | None = None) -> ConfigError:
    op = _op(node, mods)
    key = op.lower().replace("tensor.", "")
    fix = next((fix for words, fix in _REFUSALS if any(w in key for w in words)),
               "build the model from conv / linear / average pooling / flatten / view / add / cat / batch norm / "
               "dropout and ReLU only (ReLU may be nn.ReLU, F.relu, torch.relu, .relu() or clamp(min=0))")
    return ConfigError(f"node {node.name!r} ({op}) {why or 'is neither a linear operation, a ReLU nor the output'}, "
                       f"so integrate-and-fire neurons cannot compute it. Fix: {fix}")


def relu_nodes(gm: fx.GraphModule) -> list[fx.Node]:
    """The ReLUs of a traced model, in any spelling; refuse every node that is neither linear, a ReLU, an IF
    neuron nor the output, naming it and the fix. Nodes that do not depend on the input (weights, shapes) pass."""
    mods = dict(gm.named_modules())
    on_input: set[fx.Node] = set()  # nodes whose value depends on the model's input
    relus = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            on_input.add(node)
            continue
        if node.op in ("get_attr", "output") or not any(a in on_input for a in node.all_input_nodes):
            continue  # constants (weights, buffers, shapes) and the output
        kind = node.target if node.op != "call_module" else mods[node.target]
        if node.op in ("call_method", "call_function") and kind in ("size", "dim", "numel") or (
                kind is getattr and node.args[1:] and node.args[1] in ("shape", "ndim", "dtype", "device")):
            continue  # a shape, not a value: not input-dependent in the sense that matters
        on_input.add(node)
        if node.op == "call_module":
            if isinstance(kind, nn.ReLU):
                relus.append(node)
            elif not isinstance(kind, (IFNeuron, *_LINEAR_MODULES)):
                raise _refuse(node, mods)
            continue
        if kind in _RELU:
            relus.append(node)
        elif kind in _CLAMPS:
            if not _clamp_is_relu(node):
                raise _refuse(node, mods, "clamps with a maximum or a bound other than 0 (only clamp(min=0), a ReLU, "
                                          "is allowed)")
            relus.append(node)
        elif kind in _PRODUCTS:
            factors = [a for a in node.args[:2] if isinstance(a, fx.Node) and a in on_input]
            if len(factors) > 1 or (kind in _DIVISIONS and len(node.args) > 1 and node.args[1] in on_input):
                raise _refuse(node, mods, "multiplies or divides two tensors that both depend on the input")
        elif kind is F.dropout:
            if node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True):
                raise _refuse(node, mods, "is a dropout in training mode")
        elif kind is F.pad:
            if node.kwargs.get("mode", "constant") != "constant" or node.kwargs.get("value") not in (None, 0, 0.0):
                raise _refuse(node, mods, "pads with something other than zeros")
        elif kind not in _LINEAR_FUNCTIONS and kind not in _LINEAR_METHODS:
            raise _refuse(node, mods)
    return relus


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm into the conv/linear layer before it, in place; the BN becomes ``nn.Identity``.

    Uses the BN's running statistics (the model's eval-mode function is kept exactly).
    """
    gm = _trace(model)
    mods = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods[node.target], _BN):
            continue
        src = node.args[0]
        ok = (isinstance(src, fx.Node) and src.op == "call_module" and isinstance(mods[src.target], _WEIGHTED)
              and len(src.users) == 1)
        if not ok:
            raise ConfigError(f"BatchNorm {node.target!r} does not directly follow a conv/linear layer, so it "
                              "cannot be folded. Fix: place each BatchNorm right after a conv or linear layer")
        _fold_into(mods[src.target], mods[node.target])
        model.set_submodule(node.target, nn.Identity())
    return model


@torch.no_grad()
def _fold_into(layer: nn.Module, bn: nn.Module) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
    layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
    layer.bias = nn.Parameter(bias * scale + shift)


def check_supported(model: nn.Module) -> None:
    """Raise a clear error, naming the node and the fix, for any operation with no exact spiking equivalent."""
    relu_nodes(_trace(model))


def convert(model: nn.Module, *, fold_bn: bool = True) -> nn.Module:
    """Return an SNN-ready copy of an ANN: batch norm folded and an :class:`IFNeuron` in place of every ReLU.

    ``model`` itself is left untouched. The copy is still in ANN mode and computes exactly what ``model``
    computed in eval mode. Every operation of the model must be linear (conv, linear, average pooling,
    flatten/view, adds, cat, batch norm, dropout), a ReLU in any spelling (``nn.ReLU``, ``F.relu``,
    ``torch.relu``, ``.relu()``, ``clamp(min=0)``) or an IF neuron; anything else is refused naming the node.
    A model whose ReLUs are ``nn.ReLU`` modules each used once keeps its class; one with functional or
    shared ReLUs is returned as a ``torch.fx.GraphModule`` with one neuron per call site. Converting an
    already converted model returns a copy with its thresholds and v(0).
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"convert needs a torch.nn.Module (the trained ANN), got {type(model).__name__}. Fix: pass "
                          "the model, e.g. icsnn_core.load_model(path)[0]")
    model = copy.deepcopy(model).eval()  # the user's model keeps its weights, batch norms and ReLUs
    relus = relu_nodes(_trace(model))  # refuse what cannot be converted before changing anything
    if fold_bn and any(isinstance(m, _BN) for m in model.modules()):
        fold_batchnorm(model)
    if not relus:
        if not any(True for _ in neurons(model)):
            raise ConfigError("the model has no ReLU and no IFNeuron, so there is nothing to convert. Fix: use "
                              "ReLU activations (nn.ReLU, F.relu, clamp(min=0)) or icsnn_core.IFNeuron")
        return model
    gm = _trace(model)
    relus = relu_nodes(gm)
    module_targets = [n.target for n in relus if n.op == "call_module"]
    if len(module_targets) == len(relus) and len(set(module_targets)) == len(module_targets):
        for target in module_targets:  # each ReLU module used once: swap it, keep the user's class
            model.set_submodule(target, IFNeuron())
        return model
    taken = dict(gm.named_modules())
    names = (f"if_neuron_{i}" for i in range(len(taken) + len(relus)) if f"if_neuron_{i}" not in taken)
    for node, name in zip(relus, names):  # functional or shared ReLUs: one new neuron per call site
        gm.add_submodule(name, IFNeuron())
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    return gm.eval()


# --- threshold balancing ---------------------------------------------------------------------------

class QuantileObserver:
    """Streaming p-quantile of a layer's activations, exact up to ``max_samples`` values, sampled beyond.

    ``torch.quantile`` refuses inputs above 16M elements; a conv layer over thousands of images produces
    billions. Knowing the expected total, each batch keeps a Bernoulli sample at rate
    ``max_samples / total`` (all values when the total fits), so the kept set is a uniform sample.
    """

    def __init__(self, quantile: float, values: ThresholdValues, expected_total: int, max_samples: int,
                 generator: torch.Generator) -> None:
        self.quantile, self.values = quantile, values
        self.rate = min(1.0, max_samples / max(1, expected_total))
        self.generator = generator
        self.kept: list[torch.Tensor] = []
        self.max = 0.0

    def update(self, a: torch.Tensor) -> None:
        a = a.detach().flatten().float()
        if self.values == "positive":
            a = a[a > 0]
        if a.numel() == 0:
            return
        self.max = max(self.max, float(a.max()))
        if self.rate < 1.0:
            keep = torch.rand(a.numel(), generator=self.generator).to(a.device) < self.rate
            a = a[keep]
        self.kept.append(a.cpu())

    def result(self) -> float:
        if self.quantile >= 1.0 or not self.kept:
            return self.max
        return quantile_of(torch.cat(self.kept), self.quantile)


def quantile_of(values: torch.Tensor, q: float) -> float:
    """The q-quantile with linear interpolation (as ``numpy.quantile``), for any number of values."""
    v = values.flatten().double().sort().values
    pos = q * (v.numel() - 1)
    lo = int(pos)
    hi = min(lo + 1, v.numel() - 1)
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def validate_quantile(q: float) -> float:
    if not (isinstance(q, (int, float)) and 0.0 < q <= 1.0):
        raise ConfigError(f"threshold quantile must be in (0, 1] (1 means the maximum), got {q!r}. "
                          "Fix: use e.g. 0.99 (the paper's range is 0.9-0.99) or 0.999")
    return float(q)


@torch.no_grad()
def thresholds_from_lambda(model: nn.Module) -> list[float]:
    """QCFS conversion (Bu et al. 2022): each layer's V_th is its trained lambda."""
    named = [n for _, n in neurons(model)]
    if not named or any(n.activation != "qcfs" for n in named):
        raise ConfigError("thresholds from lambda need an ANN trained with the QCFS activation (--activation qcfs)")
    for n in named:
        n.set_threshold(n.lam_value().detach())
    return [float(n.threshold) for n in named]


@torch.no_grad()
def balance_thresholds(model: nn.Module, data: DataLike, *, quantile: float = 0.99, images: int = 1000,
                       values: ThresholdValues = "positive", batch_size: int = 128,
                       device: str | torch.device = "cpu", max_samples: int = 2 ** 22, seed: int = 0) -> list[float]:
    """Set each neuron's ``V_th`` to the ``quantile`` of its ANN activations over the first ``images`` images.

    ``values="positive"`` takes the quantile over non-zero activations (as snn_toolbox, Rueckauer et al.
    2017, does); ``"all"`` includes the zeros. ``data`` (training images) is anything
    :func:`icsnn_core.data.as_split` takes. Returns the thresholds in neuron order.
    """
    q = validate_quantile(quantile)
    if values not in ("positive", "all"):
        raise ConfigError(f"threshold values must be 'positive' or 'all', got {values!r}")
    subset = as_split(data).subset(images)
    named = list(neurons(model))
    if not named:
        raise ConfigError("the model has no IF neurons: call icsnn_core.convert(model) first")
    set_mode(model, "ann")
    model.eval().to(device)
    g = torch.Generator().manual_seed(seed)
    sizes: dict[int, int] = {}
    probe = subset.images(slice(0, 1), device)
    hooks = [n.register_forward_hook(lambda m, i, o, k=k: sizes.__setitem__(k, o[0].numel()))
             for k, (_, n) in enumerate(named)]
    model(probe)
    for h in hooks:
        h.remove()
    observers = [QuantileObserver(q, values, sizes[k] * len(subset), max_samples, g) for k in range(len(named))]
    broken: list[str] = []  # layers whose activations hold NaN or inf: no threshold can be read from them

    def observe(o: torch.Tensor, obs: QuantileObserver, name: str) -> None:
        if name not in broken and not torch.isfinite(o).all():
            broken.append(name)
        obs.update(o)

    hooks = [n.register_forward_hook(lambda m, i, o, obs=obs, name=name: observe(o, obs, name))
             for (name, n), obs in zip(named, observers)]
    try:
        for x, _ in batches(subset, batch_size, device=device):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    if broken:
        raise ConfigError(f"the ANN's activations hold NaN or infinite values at {', '.join(broken)}: its weights "
                          "are broken. Fix: retrain the ANN, or check the checkpoint it was loaded from")
    thresholds = []
    for (name, n), obs in zip(named, observers):
        thr = obs.result()
        if not thr > 0:  # a layer that never fired on these images: any positive threshold is as good
            thr = obs.max if obs.max > 0 else 1.0
        n.set_threshold(thr)
        thresholds.append(thr)
    return thresholds
