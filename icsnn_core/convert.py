"""From a trained ANN to an SNN ready to run: batch-norm folding, ReLU -> IF neuron, threshold balancing.

Paper Sec. 2.3 / 4.1.1: only threshold balancing is used; each layer's threshold ``V_th`` is a
p-quantile (Rueckauer et al. 2017) or the maximum of that layer's ANN activations over training images.
The conversion accepts the built-in models and a user's own ``nn.Module`` made of conv / linear / ReLU /
average-pool / flatten / residual-add blocks (traced with ``torch.fx``).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import fx, nn

from .data import Split, batches
from .errors import ConfigError
from .neuron import IFNeuron, neurons, set_mode

ThresholdValues = Literal["positive", "all"]
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
_UNSUPPORTED_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                        nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.PReLU, nn.ReLU6,
                        nn.Hardswish, nn.Softmax, nn.LogSoftmax)
_UNSUPPORTED_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.adaptive_max_pool2d, torch.sigmoid, torch.tanh, F.gelu,
                          F.silu, F.leaky_relu, F.softmax, F.log_softmax, torch.softmax}
_RELU_FUNCTIONS = {F.relu, torch.relu}


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as e:  # noqa: BLE001 - fx raises many kinds of errors on untraceable code
        raise ConfigError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(e).__name__}: {e}). Fix: build the model "
            "from modules without data-dependent control flow (conv/linear/ReLU/avg-pool/flatten/add)"
        ) from e


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
    """Raise a clear error for layers that have no exact spiking equivalent here (max-pool, sigmoid, ...)."""
    for name, m in model.named_modules():
        if isinstance(m, _UNSUPPORTED_MODULES):
            raise ConfigError(f"layer {name!r} is {type(m).__name__}, which IF neurons cannot represent. Fix: use "
                              "ReLU activations and AvgPool2d instead of max pooling, and retrain")


def convert(model: nn.Module, *, fold_bn: bool = True) -> nn.Module:
    """Prepare an ANN for conversion: fold batch norm and put an :class:`IFNeuron` in place of every ReLU.

    The result is still in ANN mode and computes exactly what ``model`` computed in eval mode. Built-in
    models already use IF neurons; a user's model with ``nn.ReLU`` modules is changed in place, one with
    functional or shared ReLUs is returned as a ``torch.fx.GraphModule`` with one neuron per call site.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"convert needs a torch.nn.Module (the trained ANN), got {type(model).__name__}. Fix: pass "
                          "the model, e.g. icsnn_core.load_model(path)[0]")
    model.eval()
    check_supported(model)
    if fold_bn and any(isinstance(m, _BN) for m in model.modules()):
        fold_batchnorm(model)
    gm = _trace(model)
    mods = dict(gm.named_modules())
    relu_nodes = []
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in _UNSUPPORTED_FUNCTIONS:
            raise ConfigError(f"{node.target.__name__} at {node.name!r} has no exact spiking equivalent. Fix: use "
                              "ReLU and average pooling only, and retrain")
        if ((node.op == "call_module" and isinstance(mods[node.target], nn.ReLU))
                or (node.op == "call_function" and node.target in _RELU_FUNCTIONS)
                or (node.op == "call_method" and node.target == "relu")):
            relu_nodes.append(node)
    if not relu_nodes:
        if not any(True for _ in neurons(model)):
            raise ConfigError("the model has no ReLU and no IFNeuron, so there is nothing to convert")
        return model.eval()
    module_targets = [n.target for n in relu_nodes if n.op == "call_module"]
    if len(module_targets) == len(relu_nodes) and len(set(module_targets)) == len(module_targets):
        for target in module_targets:  # each ReLU module used once: swap it in place, keep the user's class
            model.set_submodule(target, IFNeuron())
        return model.eval()
    for i, node in enumerate(relu_nodes):  # functional or shared ReLUs: one new neuron per call site
        name = f"if_neuron_{i}"
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
        n.threshold.copy_(n.lam_value().detach())
    return [float(n.threshold) for n in named]


@torch.no_grad()
def balance_thresholds(model: nn.Module, data: Split, *, quantile: float = 0.99, images: int = 1000,
                       values: ThresholdValues = "positive", batch_size: int = 128,
                       device: str | torch.device = "cpu", max_samples: int = 2 ** 22, seed: int = 0) -> list[float]:
    """Set each neuron's ``V_th`` to the ``quantile`` of its ANN activations over the first ``images`` images.

    ``values="positive"`` takes the quantile over non-zero activations (as snn_toolbox, Rueckauer et al.
    2017, does); ``"all"`` includes the zeros. Returns the thresholds in neuron order.
    """
    q = validate_quantile(quantile)
    if values not in ("positive", "all"):
        raise ConfigError(f"threshold values must be 'positive' or 'all', got {values!r}")
    subset = data.subset(images)
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
        n.threshold.fill_(thr)
        thresholds.append(thr)
    return thresholds
