"""ANN training, atomic per-epoch checkpoints and exact resume.

Two named recipes (:data:`RECIPES`), both for the same networks:

- ``paper`` (the default; Sec. 4.1.3): SGD, lr 0.1, momentum 0.9, weight decay 5e-4 on every parameter,
  batch 128, 300 epochs, lr divided by 5 at epochs 70/130/190/240, random crop + horizontal flip.
- ``fast``: the same SGD, weight decay and augmentation with a one-cycle schedule (linear warm-up, then
  linear decay to zero, updated every step), Nesterov momentum, label smoothing 0.1, and for QCFS its lambdas
  started from the data, a warm-up of the first 60% of the epochs with finer levels, halved each epoch
  down to QCFS's L, and the run started from the trained ReLU twin's weights (``warm_start``). Each change
  is measured in ``benchmarks/recipe_study.py``; more options measured there (no weight decay on batch-norm
  parameters, biases and lambda, or on the lambdas alone; an exponential moving average of the weights;
  QCFS's warm-up without its floor; a larger learning rate for the lambdas; a fifth of the weight decay;
  distillation from the ReLU twin) did not pay and are not part of it.

The shuffling/augmentation generator is saved with the weights, so an interrupted run resumed from its
checkpoint ends with the same weights as an uninterrupted one (same seed, same device, same thread count:
CPU kernels sum in an order that depends on the number of threads and the processor's vector unit).
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import pickle
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import distributed
from .data import Dataset, batches
from .errors import CheckpointError, ConfigError
from .files import atomic_save, atomic_write_text
from .models import build_model, is_user_model, load_user_model
from .neuron import DEFAULT_INIT_LAMBDA, LAMBDA_MIN, neurons

CHECKPOINT_FORMAT = "icsnn-checkpoint-1"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: stored in every checkpoint."""

    arch: str
    width: float = 1.0
    bn: bool = False
    num_classes: int = 10
    in_channels: int = 3
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    activation: str = "relu"  # or "qcfs" (Bu et al. 2022), with L = levels
    levels: int = 4
    init_lambda: float = DEFAULT_INIT_LAMBDA  # QCFS only: lambda's starting value

    def build(self) -> nn.Module:
        if is_user_model(self.arch):  # the user's own class (the CLI's --model file.py:Class); runs their code
            return load_user_model(self.arch)
        return build_model(self.arch, self.num_classes, self.in_channels, self.width, self.bn, self.mean, self.std,
                           self.activation, self.levels, self.init_lambda)

    def describe(self) -> str:
        act = f"QCFS L={self.levels}" if self.activation == "qcfs" else "ReLU"
        if is_user_model(self.arch):
            return f"your model {self.arch} ({act})"
        return f"{self.arch} (width {self.width:g}, {'with' if self.bn else 'no'} batch norm, {act})"


SCHEDULES = ("step", "onecycle")


@dataclass(frozen=True)
class TrainConfig:
    """The ANN training recipe; the defaults are the paper's (``recipe="paper"``)."""

    epochs: int = 300
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    milestones: tuple[int, ...] = (70, 130, 190, 240)
    gamma: float = 0.2  # "the learning rate decayed by 5"
    augment: bool = True
    seed: int = 0
    amp: bool = False  # bfloat16 autocast on CUDA
    channels_last: bool = False
    recipe: str = "paper"  # a label: names the checkpoint file when not the paper's
    schedule: str = "step"  # "step": the milestones above; "onecycle": warm-up then linear decay to 0, per step
    warmup: float = 0.0  # onecycle: the fraction of all steps spent rising linearly from 0 to lr
    nesterov: bool = False
    label_smoothing: float = 0.0
    decay_all: bool = True  # False: no weight decay on batch-norm parameters, biases and QCFS's lambda
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off); the EMA is the result
    decay_lambda: bool = True  # QCFS: False keeps weight decay off its lambdas alone (decay pulls the clip down)
    lambda_lr: float = 1.0  # QCFS: lambda's learning rate as a multiple of the weights' (its gradient sums a layer)
    lambda_quantile: float | None = 0.99  # QCFS: start each lambda at this quantile of its layer's inputs (None:
    # at ModelSpec.init_lambda, as before; see init_lambdas)
    compile: bool = False  # torch.compile the training step's model (CUDA only)
    quant_warmup: float = 0.0  # QCFS: the fraction of the epochs trained before the published activation (with
    # its L levels) takes over for the rest, so the ANN that results is QCFS's exactly. During the warm-up:
    quant_warmup_mode: str = "clip"  # "clip": the floor off (lambda * clip(z / lambda, 0, 1)); "halving": finer
    # levels, halved every epoch down to L (a warm-up of W epochs trains with L 2^W, L 2^(W-1), ..., 2L levels)
    distill: float = 0.0  # knowledge distillation from a teacher (train's ``teacher``, e.g. the ReLU twin): the
    # weight of the soft-target term; the loss is (1 - distill) CE + distill tau^2 KL(teacher || student) at tau
    distill_temperature: float = 4.0
    warm_start: bool = False  # QCFS: start from a trained model's weights (train's ``init``: the ReLU twin, the
    # same network): every parameter and buffer but the lambdas, which then start from the data as above

    def validate(self) -> "TrainConfig":
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs <= 0:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}. Fix: e.g. --epochs 30")
        if not self.lr > 0 or self.batch_size <= 0:
            raise ConfigError(f"lr and batch_size must be positive, got lr={self.lr}, batch_size={self.batch_size}. "
                              "Fix: e.g. --lr 0.1 --batch-size 128")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not (0 <= self.warmup < 1 and 0 <= self.label_smoothing < 1 and 0 <= self.ema < 1):
            raise ConfigError(f"warmup, label_smoothing and ema must lie in [0, 1), got {self.warmup}, "
                              f"{self.label_smoothing}, {self.ema}. Fix: e.g. 0.15, 0.1 and 0.999 as in the fast recipe")
        if self.quant_warmup_mode not in QUANT_WARMUP_MODES:
            raise ConfigError(f"unknown quant_warmup_mode {self.quant_warmup_mode!r}; choose one of "
                              f"{', '.join(QUANT_WARMUP_MODES)}")
        if not 0 <= self.quant_warmup < 1:
            raise ConfigError(f"quant_warmup must lie in [0, 1), got {self.quant_warmup}. Fix: e.g. 0.5 (the first "
                              "half of the epochs without QCFS's floor)")
        if not self.lambda_lr > 0:
            raise ConfigError(f"lambda_lr must be positive, got {self.lambda_lr}. Fix: e.g. 0.1 (a tenth of the "
                              "weights' learning rate) or 1 (the same)")
        if not (0 <= self.distill <= 1 and self.distill_temperature > 0):
            raise ConfigError(f"distill must lie in [0, 1] and distill_temperature be positive, got {self.distill} "
                              f"and {self.distill_temperature}. Fix: e.g. distill 0.9 at temperature 4")
        if not isinstance(self.warm_start, bool):
            raise ConfigError(f"warm_start must be True or False, got {self.warm_start!r}")
        if self.lambda_quantile is not None and not 0 < self.lambda_quantile <= 1:
            raise ConfigError(f"lambda_quantile must lie in (0, 1], got {self.lambda_quantile}. Fix: e.g. "
                              "--lambda-quantile 0.99, or 0 for the fixed start --init-lambda")
        return self

    def lr_at(self, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        """The learning rate at ``step`` (0-based) of 0-based ``epoch``.

        Schedule ``"step"``: lr divided by 1/gamma at each milestone passed (constant within an epoch).
        ``"onecycle"``: rises linearly to lr over the first ``warmup`` fraction of all steps, then falls linearly
        towards 0 (the last step's lr is lr / (steps after the warm-up + 1))."""
        if self.schedule == "step":
            return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)
        total = self.epochs * steps_per_epoch
        i = epoch * steps_per_epoch + step + 1  # 1-based: the first step already learns
        rise = self.warmup * total
        if i <= rise:
            return self.lr * i / rise
        return self.lr * max(0.0, (total - i + 1) / (total - rise + 1))

    def scaled_to(self, epochs: int) -> "TrainConfig":
        """The same schedule squeezed or stretched to ``epochs`` (milestones keep their relative place)."""
        ms = tuple(sorted({max(1, round(m * epochs / self.epochs)) for m in self.milestones if m < self.epochs}))
        return TrainConfig(**{**asdict(self), "epochs": epochs, "milestones": ms})


QUANT_WARMUP_MODES = ("clip", "halving")
QCFS_ONLY_TRAIN = ("decay_lambda", "lambda_lr", "lambda_quantile", "quant_warmup", "quant_warmup_mode", "warm_start")  # TrainConfig fields a ReLU ANN's training never reads

# the values a checkpoint written before a field existed was trained with (the paper's recipe)
_LEGACY_TRAIN = {**{f: getattr(TrainConfig(), f) for f in ("recipe", "schedule", "warmup", "nesterov", "label_smoothing",
                                                           "decay_all", "decay_lambda", "lambda_lr", "ema",
                                                           "compile", "quant_warmup", "quant_warmup_mode",
                                                           "distill", "distill_temperature", "warm_start")}, "lambda_quantile": None}

RECIPES: dict[str, TrainConfig] = {
    "paper": TrainConfig(),
    # chosen on the held-out part of the training set by benchmarks/recipe_study.py, never on the test set
    # (one-cycle +11.6 points, Nesterov and label smoothing +1.6 on VGG16 w0.25 at 10 epochs; no decay on
    # norm/bias/lambda -0.8 and an EMA -0.04 did not pay there, so they stay options, not part of the recipe)
    # QCFS only (a ReLU ANN ignores both): levels halved each epoch of the first 60% (qcfs-fast-halving0.6:
    # 80.48% held out at 10 epochs, against 75.70% trained with four levels from the start and 82.38% for ReLU),
    # and the run started from the trained ReLU twin (qcfs-fast-warm at w0.125: 77.16% / 77.08% held out, seeds
    # 0 / 1, its ReLU twin 76.96% / 77.28%, trained cold 2.42 / 3.20 points below it; at w0.25 82.44% against
    # 81.92%, cold 1.90 below; ResNet20 w0.5 78.36% against 79.74%, cold 3.98 below, and 78.08% against 79.20%
    # on a later machine, where a lower peak lr, distillation, a shorter or no warm-up on top of it did no better)
    "fast": TrainConfig(recipe="fast", schedule="onecycle", warmup=0.15, nesterov=True, label_smoothing=0.1,
                        lambda_quantile=0.99, quant_warmup=0.6, quant_warmup_mode="halving", warm_start=True),
}


def recipe(name: str, epochs: int | None = None, **overrides: Any) -> TrainConfig:
    """A named recipe (:data:`RECIPES`), its schedule scaled to ``epochs``, with ``overrides`` applied."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    cfg = RECIPES[name] if epochs is None else RECIPES[name].scaled_to(epochs)
    return replace(cfg, **overrides).validate()


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with a message for each way it fails."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist. Fix: train one with `icsnn train` or check the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):  # weights_only refused a class: a whole pickled module (torch.save(model))
            raise CheckpointError(
                f"cannot read checkpoint {path}: it names Python classes or functions, as a whole pickled model "
                "(torch.save(model)) does, and unpickling it could run any code. Fix: save its weights with torch.save(model.state_dict(), path), then either use the "
                "Python API (model.load_state_dict(torch.load(path, weights_only=True)); snn = icsnn_core.convert("
                "model)) or the command line with --model file.py:ClassName --checkpoint path") from e
        raise CheckpointError(f"cannot read checkpoint {path} ({type(e).__name__}: {e}). Fix: retrain it") from e
    except Exception as e:  # noqa: BLE001 - corrupt file, foreign pickle, ...
        raise CheckpointError(f"cannot read checkpoint {path} ({type(e).__name__}: {e}). Fix: retrain it") from e


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load an icsnn checkpoint safely (``weights_only=True``) and check its format."""
    path = Path(path)
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an icsnn checkpoint (format {CHECKPOINT_FORMAT}). Fix: retrain with "
                              "`icsnn train`; for your own model's state_dict pass --model file.py:ClassName, or load "
                              "it into your model and call icsnn_core.convert")
    missing = [k for k in ("spec", "train", "dataset", "epoch", "model") if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}: it was edited or cut short. Fix: "
                              "retrain it with `icsnn train`")
    return ckpt


def _check_finite(weights: dict[str, torch.Tensor], path: Path) -> None:
    broken = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise CheckpointError(f"checkpoint {path} holds NaN or infinite weights ({', '.join(broken[:3])}"
                              f"{', ...' if len(broken) > 3 else ''}): every number measured on it would be wrong. "
                              "Fix: retrain it (a lower --lr, or --bn, keeps training finite)")


def load_weights(model: nn.Module, path: str | os.PathLike) -> dict[str, Any] | None:
    """Load into a user's ``model`` the weights in ``path``: a ``state_dict`` (``torch.save(model.state_dict(),
    path)``) or an icsnn checkpoint (``icsnn train --model ...``). Returns the checkpoint, or None for a state_dict."""
    path = Path(path)
    obj = _torch_load(path)
    ckpt = obj if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT else None
    weights = load_checkpoint(path).get("ema", obj["model"]) if ckpt is not None else obj
    if not (isinstance(weights, dict) and weights and all(isinstance(v, torch.Tensor) for v in weights.values())):
        raise CheckpointError(f"{path} holds no state_dict (a dict of tensors). Fix: save the weights with "
                              "torch.save(model.state_dict(), path)")
    _check_finite(weights, path)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"the weights in {path} do not fit {type(model).__name__} "
                              f"({str(e).splitlines()[-1].strip() or str(e).splitlines()[0]}). Fix: pass the class the "
                              "state_dict was saved from, built with the same arguments") from e
    return ckpt


# the image shape of each built-in dataset: what a checkpoint written before it stored its own was trained on
_NATIVE_SHAPES = {"digits": (1, 8, 8), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "fashion-mnist": (1, 28, 28)}


def check_image_shape(ckpt: dict[str, Any], data: Dataset, where: str | os.PathLike = "the checkpoint") -> None:
    """Refuse images of another shape than the ANN was trained on: a model with adaptive pooling would accept
    them and every number measured on it would silently be wrong."""
    trained = ckpt.get("image_shape") or _NATIVE_SHAPES.get(ckpt.get("dataset"))
    given = tuple(data.train.x.shape[1:])
    for part, split in (("train", data.train), ("test", data.test)):
        shape = tuple(split.x.shape[1:])
        if trained is not None and shape != tuple(trained):
            raise ConfigError(f"the {part} images of {data.name} are {'x'.join(map(str, shape))} (channels x height x "
                              f"width) but {where} was trained on {'x'.join(map(str, trained))}. Fix: use images of "
                              "the size the model was trained on (resize them), or train a model on these")
        if shape != given:
            raise ConfigError(f"the test images of {data.name} are {'x'.join(map(str, shape))} but its training images "
                              f"are {'x'.join(map(str, given))}. Fix: give both splits images of one size")


def spec_of(ckpt: dict[str, Any]) -> ModelSpec:
    s = dict(ckpt["spec"])
    s.setdefault("init_lambda", 8.0)  # checkpoints written before the field existed started QCFS's lambda at 8
    return ModelSpec(**{**s, "mean": tuple(s["mean"]), "std": tuple(s["std"])})


def _recipe_spec(spec: ModelSpec) -> dict[str, Any]:
    """The spec as compared when resuming: QCFS's levels and lambda's starting value mean nothing to a ReLU
    network."""
    d = asdict(spec)
    if spec.activation != "qcfs":
        d.pop("init_lambda")
        d.pop("levels")
    return d


def load_model(path: str | os.PathLike, expect: ModelSpec | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint; with ``expect``, refuse one of another architecture."""
    ckpt = load_checkpoint(path)
    spec = spec_of(ckpt)
    if is_user_model(spec.arch):  # never run code that a checkpoint names: the user names it on the command line
        raise CheckpointError(f"checkpoint {path} holds your own model {spec.arch}. Fix: pass --model {spec.arch} "
                              "(from Python: icsnn_core.train.load_weights(YourClass(), path))")
    fields = ("arch", "width", "bn", "num_classes", "activation") + (("levels",) if spec.activation == "qcfs" else ())
    if expect is not None and any(getattr(spec, f) != getattr(expect, f) for f in fields):
        raise CheckpointError(f"checkpoint {path} holds {spec.describe()} for {spec.num_classes} classes, not "
                              f"{expect.describe()} for {expect.num_classes}. Fix: pass the matching --arch/--width/--bn "
                              "or point at the right checkpoint")
    weights = ckpt.get("ema", ckpt["model"])  # a recipe with an EMA returns the averaged weights
    _check_finite(weights, Path(path))
    model = spec.build()
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:  # the stored spec and weights disagree (edited or foreign file)
        raise CheckpointError(f"checkpoint {path}: its weights do not fit the model its spec describes "
                              f"({str(e).splitlines()[-1].strip()}). Fix: retrain it with `icsnn train`") from e
    return model, ckpt


def param_groups(model: nn.Module, weight_decay: float, decay_all: bool = True, decay_lambda: bool = True,
                 lambda_lr: float = 1.0) -> list[dict[str, Any]]:
    """SGD parameter groups: with ``decay_all=False`` batch-norm parameters, biases and QCFS's lambda (every
    parameter with fewer than two dimensions) get no weight decay, with ``decay_lambda=False`` QCFS's lambdas
    alone; decay would only shrink them towards 0. With ``lambda_lr != 1`` the lambdas form a group of their own
    whose ``lr_scale`` multiplies the schedule's learning rate (the other groups have none: a scale of 1)."""
    params = [p for p in model.parameters() if p.requires_grad]
    lams = {id(n.lam) for _, n in neurons(model) if n.activation == "qcfs"}
    own = lams if lambda_lr != 1.0 else set()  # lambdas in a group of their own
    rest = [p for p in params if id(p) not in own]
    undecayed = [p for p in rest if (not decay_all and p.dim() <= 1) or (not decay_lambda and id(p) in lams)]
    skip = {id(p) for p in undecayed}
    groups = [{"params": [p for p in rest if id(p) not in skip], "weight_decay": weight_decay},
              {"params": undecayed, "weight_decay": 0.0}]
    if own:
        groups.append({"params": [p for p in params if id(p) in own], "lr_scale": lambda_lr,
                       "weight_decay": weight_decay if decay_all and decay_lambda else 0.0})
    return [g for g in groups if g["params"]]


@torch.no_grad()
def init_lambdas(model: nn.Module, x: torch.Tensor, quantile: float) -> list[float]:
    """Start each QCFS lambda at the ``quantile`` of its layer's positive inputs on ``x``, layer after layer.

    A fixed start (QCFS's code: 8; ours: 2) can quantise every input of a deep layer to 0 when the layers
    before it are small at initialisation: the network's output is then constant, the loss sits at ln(10)
    and learning begins only when noise breaks the symmetry, after a number of epochs that depends on the
    machine. Set in one forward pass, each lambda sees the outputs of the lambdas already set before it.
    Batch norm runs on the batch's statistics, as in training; its running statistics are left untouched.
    """
    saved = {k: v.clone() for k, v in model.named_buffers()}
    handles, values = [], []

    def hook(neuron: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        z = inputs[0].detach().float().flatten()
        z = z[z > 0]
        value = float(torch.quantile(z[:1 << 24], quantile)) if len(z) else float(neuron.lam.detach())
        neuron.lam.fill_(max(value, LAMBDA_MIN))
        values.append(value)

    for _, n in neurons(model):
        if n.activation == "qcfs":
            handles.append(n.register_forward_pre_hook(hook))
    was_training = model.training
    try:
        model.train()
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        for k, v in model.named_buffers():
            v.copy_(saved[k])
    return values


@torch.no_grad()
def project_lambdas(lambdas: Iterable[torch.Tensor]) -> None:
    """Put every QCFS lambda (a model's ``n.lam``) that an optimiser step took below :data:`LAMBDA_MIN` back on it.

    The activation uses ``lam.clamp_min(LAMBDA_MIN)``, whose gradient is zero below the bound: a lambda that
    overshoots below it would silence its layer for good (seen on CIFAR-10 VGG16 at width 0.25 from the fixed
    start 2 under the paper's recipe: one lambda at -1.13 after the second epoch, the loss at ln 10 from then
    on). On the bound the gradient still flows, so the layer can recover."""
    for lam in lambdas:
        lam.clamp_(min=LAMBDA_MIN)


class _EMA:
    """An exponential moving average of a model's weights and buffers, warmed up so that early steps count."""

    def __init__(self, model: nn.Module, decay: float, state: dict[str, torch.Tensor] | None = None,
                 updates: int = 0) -> None:
        self.decay, self.updates = decay, updates
        # on the model's device, also when resumed from a checkpoint's CPU tensors
        device = next(model.parameters()).device
        self.state = {k: v.detach().clone().to(device) for k, v in (state or model.state_dict()).items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            ema = self.state[k]
            if ema.is_floating_point():
                ema.mul_(d).add_(v.detach().to(ema.dtype), alpha=1 - d)
            else:
                ema.copy_(v)


def distillation_loss(out: torch.Tensor, y: torch.Tensor, teacher_out: torch.Tensor | None, cfg: TrainConfig) -> torch.Tensor:
    """Cross-entropy (with ``cfg.label_smoothing``), mixed with Hinton et al.'s soft-target term when
    ``cfg.distill`` > 0: ``(1 - a) CE + a tau^2 KL(softmax(t / tau) || softmax(s / tau))``, ``a = cfg.distill``."""
    ce = F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)
    if not cfg.distill:
        return ce
    tau = cfg.distill_temperature
    soft = F.kl_div(F.log_softmax(out.float() / tau, 1), F.log_softmax(teacher_out.float() / tau, 1),
                    reduction="batchmean", log_target=True)
    return (1 - cfg.distill) * ce + cfg.distill * tau * tau * soft


def weights_digest(model: nn.Module) -> str:
    """A SHA-256 of ``model``'s parameters and buffers (names, dtypes, shapes and bytes): which model a warm
    start began from, recorded in the checkpoint."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        v = v.detach().cpu().contiguous().reshape(-1)
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def warm_start(model: nn.Module, init: nn.Module) -> None:
    """Copy ``init``'s weights into ``model``: the same network, ``model``'s QCFS lambdas aside (a ReLU ``init``
    has none; they are set from the data afterwards). Any other mismatch is refused, naming the keys."""
    lams = {f"{name}.lam" if name else "lam" for name, n in neurons(model) if n.activation == "qcfs"}
    theirs = init.state_dict()
    mine = model.state_dict()
    missing = sorted(set(mine) - set(theirs) - lams)
    unexpected = sorted(set(theirs) - set(mine))
    shapes = sorted(k for k in set(mine) & set(theirs) if mine[k].shape != theirs[k].shape)
    if missing or unexpected or shapes:
        raise ConfigError(f"the warm start's model is another network (missing {missing[:3]}, unexpected "
                          f"{unexpected[:3]}, other shapes {shapes[:3]}). Fix: pass init= the ReLU twin of the same "
                          "arch and width, or set warm_start=False")
    with torch.no_grad():
        for k, v in theirs.items():
            mine[k].copy_(v)


def train(spec: ModelSpec, data: Dataset, cfg: TrainConfig, checkpoint: str | os.PathLike, *,
          device: str | torch.device = "cpu", progress: bool = True, stop_after: int | None = None,
          teacher: nn.Module | None = None, init: nn.Module | None = None) -> nn.Module:
    """Train (or resume training) the ANN described by ``spec`` and return it in eval mode.

    The checkpoint is rewritten atomically after every epoch, with a CSV log beside it
    (``<checkpoint>.log.csv``). A finished checkpoint is loaded, not retrained; one trained with another
    spec or recipe is refused rather than overwritten. ``stop_after`` ends the run after that many epochs
    of this call (used to test resuming). With ``cfg.ema`` the returned weights are the moving average.
    Under torchrun (:mod:`.distributed`) each rank trains on its slice of every batch with DDP and rank 0
    writes the checkpoint; every rank returns the same weights. With ``cfg.distill`` the ``teacher`` (a trained
    model, run in eval mode and never changed) supplies the soft targets. With ``cfg.warm_start`` a QCFS run
    starts from ``init``'s weights (:func:`warm_start`; ``init``, e.g. the ReLU twin, is left unchanged) instead of
    a random initialisation; the checkpoint records ``init``'s digest and is refused with another ``init``.
    A ReLU ANN ignores ``warm_start``, as every QCFS-only option (:data:`QCFS_ONLY_TRAIN`).
    """
    cfg.validate()
    if cfg.distill and teacher is None:
        raise ConfigError("the recipe distills (distill > 0) but no teacher was given. Fix: pass train(..., "
                          "teacher=model), e.g. the ReLU twin, or set distill=0")
    starts_warm = cfg.warm_start and spec.activation == "qcfs"
    if starts_warm and init is None:
        raise ConfigError("the recipe starts a QCFS ANN warm (warm_start=True, as the fast recipe does) but no model "
                          "to start from was given. Fix: pass train(..., init=model), the trained ReLU twin (on the "
                          "command line: --warm-from its checkpoint), or set warm_start=False (--cold)")
    init_digest = weights_digest(init) if starts_warm else None
    device = distributed.init(device)  # under torchrun: join the other ranks, on this rank's GPU
    path = Path(checkpoint)
    torch.manual_seed(cfg.seed)
    model = spec.build()
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.SGD(param_groups(model, cfg.weight_decay, cfg.decay_all, cfg.decay_lambda, cfg.lambda_lr),
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    history: list[dict[str, float]] = []
    start = 0
    recipe = {"spec": asdict(spec), "train": asdict(cfg), "dataset": data.name}
    ema: _EMA | None = None
    ema_saved: tuple[dict[str, torch.Tensor], int] | None = None
    if path.exists():
        ckpt = load_checkpoint(path)
        check_image_shape(ckpt, data, path)  # the likelier cause when the data's statistics differ too
        # through spec_of, a checkpoint written before a field existed compares with the value it was trained with
        stored = {"spec": _recipe_spec(spec_of(ckpt)), "train": {**_LEGACY_TRAIN, **ckpt["train"]},
                  "dataset": ckpt["dataset"]}
        expected = {**recipe, "spec": _recipe_spec(spec)}
        if spec.activation != "qcfs":  # options that only QCFS's training reads do not make a ReLU ANN another one
            for d in (stored, expected):
                d["train"] = {k: v for k, v in d["train"].items() if k not in QCFS_ONLY_TRAIN}
        if _normalise(stored) != _normalise(expected):
            raise CheckpointError(f"checkpoint {path} was trained with another model or recipe "
                                  f"({_diff(stored, expected)}). "
                                  "Fix: use another checkpoint path, or delete this one to retrain")
        if starts_warm and ckpt.get("init") != init_digest:
            raise CheckpointError(f"checkpoint {path} was started from another model than the init given (digest "
                                  f"{str(ckpt.get('init'))[:12]} vs {init_digest[:12]}): the ReLU twin was retrained or "
                                  "changed. Fix: pass the init it began from, or delete this checkpoint to retrain")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"])
        history, start = list(ckpt["history"]), int(ckpt["epoch"])
        if cfg.ema:
            ema_saved = ckpt["ema"], int(ckpt["ema_updates"])
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.distill:
        teacher = teacher.to(device).eval()
    if start == 0 and starts_warm:
        warm_start(model, init)
    if start == 0 and cfg.lambda_quantile is not None and spec.activation == "qcfs":
        # drawn from its own generator, so the shuffling of the epochs is the same with or without it
        first = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.batch_size]
        init_lambdas(model, data.train.images(first, device), cfg.lambda_quantile)
    if cfg.ema:
        ema = _EMA(model, cfg.ema, *ema_saved) if ema_saved else _EMA(model, cfg.ema)
    use_amp = cfg.amp and torch.device(device).type == "cuda"
    step_model = distributed.data_parallel(model)  # as is in a single process; wrapped before compiling, as DDP asks
    step_model = torch.compile(step_model) if cfg.compile and torch.device(device).type == "cuda" else step_model
    steps = -(-len(data.train) // cfg.batch_size)
    qcfs = [n for _, n in neurons(model) if n.activation == "qcfs"]
    lambdas = [n.lam for n in qcfs]  # found once, not at every step
    published_levels = [n.levels for n in qcfs]
    unquantised_epochs = int(cfg.quant_warmup * cfg.epochs)  # < epochs: the last epoch always has the L levels
    end = cfg.epochs if stop_after is None else min(cfg.epochs, start + stop_after)
    for epoch in tqdm(range(start, end), desc=f"train {spec.arch}", initial=start, total=cfg.epochs,
                      disable=not progress or not distributed.is_main()):
        model.train()
        for n, levels in zip(qcfs, published_levels):  # from the epoch alone: a resumed run trains as an uninterrupted one
            warm = max(0, unquantised_epochs - epoch)  # warm-up epochs left, this one included
            n.quantised = not warm or cfg.quant_warmup_mode != "clip"
            n.levels = levels * 2 ** warm if cfg.quant_warmup_mode == "halving" else levels
        started = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for i, (x, y) in enumerate(batches(data.train, cfg.batch_size, shuffle=True, generator=gen,
                                           augment=cfg.augment, device=device)):
            # every rank drew the same global batch from the same generator and trains on its own slice of it
            if len(y) < distributed.world_size():
                continue  # a last batch smaller than the number of ranks would leave a rank without images
            n = len(y)
            x, y = distributed.batch_slice(x), distributed.batch_slice(y)
            for group in opt.param_groups:
                group["lr"] = cfg.lr_at(epoch, i, steps) * group.get("lr_scale", 1.0)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                out = step_model(x)
                if cfg.distill:
                    with torch.no_grad():
                        teacher_out = teacher(x)
                loss = distillation_loss(out, y, teacher_out if cfg.distill else None, cfg)
            opt.zero_grad(set_to_none=True)
            # weighted by the slice's share, DDP's average over the ranks is the mean over the global batch
            # (times 1.0 in a single process: the same numbers)
            (loss * (distributed.world_size() * len(y) / n)).backward()
            opt.step()
            project_lambdas(lambdas)
            if ema is not None:
                ema.update(model)
            loss_sum += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
        loss_sum, correct, seen = distributed.all_sum(loss_sum, correct, seen)  # the global batches', every rank
        if not torch.isfinite(torch.tensor(loss_sum)):
            raise ConfigError(f"training diverged at epoch {epoch + 1} (loss is NaN). Fix: lower --lr or use --bn")
        history.append({"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "loss": loss_sum / seen,
                        "train_accuracy": 100.0 * correct / seen, "seconds": round(time.perf_counter() - started, 2),
                        "threads": torch.get_num_threads() if torch.device(device).type == "cpu" else ""})
        if distributed.is_main():  # one writer: the ranks hold the same weights
            extra = {"ema": {k: v.detach().cpu() for k, v in ema.state.items()}, "ema_updates": ema.updates} if ema else {}
            atomic_save({"format": CHECKPOINT_FORMAT, **recipe, "image_shape": list(data.train.x.shape[1:]),
                         "epoch": epoch + 1, **({"init": init_digest} if starts_warm else {}),
                         "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                         "optimizer": opt.state_dict(),
                         "generator": gen.get_state(), "history": history, **extra}, path)
            _write_log(history, Path(f"{path}.log.csv"))
        distributed.barrier()  # no rank moves on (or is stopped and resumed) before the checkpoint is complete
    # batch norm's running statistics last saw each rank's own slice: every rank takes rank 0's, the saved ones
    distributed.broadcast_([*model.state_dict().values(), *(ema.state.values() if ema is not None else ())])
    for n, levels in zip(qcfs, published_levels):
        n.quantised, n.levels = True, levels  # the model returned is QCFS's, also from a run stopped in the warm-up
    if ema is not None:
        model.load_state_dict(ema.state)
    return model.eval()


def _write_log(history: list[dict[str, float]], path: Path) -> None:
    buf = io.StringIO()
    # a run resumed from an older checkpoint may hold epochs without the newer columns
    w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for h in history for k in h)), restval="")
    w.writeheader()
    w.writerows(history)
    atomic_write_text(buf.getvalue(), path)


def _normalise(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _normalise(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_normalise(v) for v in obj]
    if isinstance(obj, float):
        # the data's mean and std differ in their last bits with the thread count (torchrun runs one thread
        # per process): a checkpoint started alone must resume under torchrun, and the other way round
        return float(f"{obj:.12g}")
    return obj


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    out = []
    for group in ("spec", "train"):
        for k in sorted(set(a[group]) | set(b[group])):
            if _normalise(a[group].get(k)) != _normalise(b[group].get(k)):
                out.append(f"{k}: {a[group].get(k)} vs {b[group].get(k)}")
    if a["dataset"] != b["dataset"]:
        out.append(f"dataset: {a['dataset']} vs {b['dataset']}")
    return "; ".join(out) or "unknown difference"
