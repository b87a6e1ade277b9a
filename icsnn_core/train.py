"""ANN training with the paper's recipe (Sec. 4.1.3), atomic per-epoch checkpoints and exact resume.

Defaults: SGD, lr 0.1, momentum 0.9, weight decay 5e-4, batch 128, 300 epochs, lr divided by 5 at epochs
70/130/190/240, random crop + horizontal flip. The shuffling/augmentation generator is saved with the
weights, so an interrupted run resumed from its checkpoint ends with the same weights as an
uninterrupted one (same seed, same device).
"""
from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import Dataset, batches
from .errors import CheckpointError, ConfigError
from .files import atomic_save, atomic_write_text
from .models import build_model
from .neuron import DEFAULT_INIT_LAMBDA

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
        return build_model(self.arch, self.num_classes, self.in_channels, self.width, self.bn, self.mean, self.std,
                           self.activation, self.levels, self.init_lambda)

    def describe(self) -> str:
        act = f"QCFS L={self.levels}" if self.activation == "qcfs" else "ReLU"
        return f"{self.arch} (width {self.width:g}, {'with' if self.bn else 'no'} batch norm, {act})"


@dataclass(frozen=True)
class TrainConfig:
    """The ANN training recipe; the defaults are the paper's."""

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

    def validate(self) -> "TrainConfig":
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs <= 0:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not self.lr > 0 or self.batch_size <= 0:
            raise ConfigError(f"lr and batch_size must be positive, got lr={self.lr}, batch_size={self.batch_size}")
        return self

    def lr_at(self, epoch: int) -> float:
        """The learning rate of 0-based ``epoch``: divided by 1/gamma at each milestone passed."""
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)

    def scaled_to(self, epochs: int) -> "TrainConfig":
        """The same schedule squeezed or stretched to ``epochs`` (milestones keep their relative place)."""
        ms = tuple(sorted({max(1, round(m * epochs / self.epochs)) for m in self.milestones if m < self.epochs}))
        return TrainConfig(**{**asdict(self), "epochs": epochs, "milestones": ms})


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load an icsnn checkpoint safely (``weights_only=True``) and check its format."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist. Fix: train one with `icsnn train` or check the path")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt file, foreign pickle, ...
        raise CheckpointError(f"cannot read checkpoint {path} ({type(e).__name__}: {e}). Fix: retrain it") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an icsnn checkpoint (format {CHECKPOINT_FORMAT}). Fix: retrain with "
                              "`icsnn train`, or load your own weights into a model and call icsnn_core.convert")
    return ckpt


def spec_of(ckpt: dict[str, Any]) -> ModelSpec:
    s = dict(ckpt["spec"])
    s.setdefault("init_lambda", 8.0)  # checkpoints written before the field existed started QCFS's lambda at 8
    return ModelSpec(**{**s, "mean": tuple(s["mean"]), "std": tuple(s["std"])})


def _recipe_spec(spec: ModelSpec) -> dict[str, Any]:
    """The spec as compared when resuming: lambda's starting value means nothing to a ReLU network."""
    d = asdict(spec)
    if spec.activation != "qcfs":
        d.pop("init_lambda")
    return d


def load_model(path: str | os.PathLike, expect: ModelSpec | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint; with ``expect``, refuse one of another architecture."""
    ckpt = load_checkpoint(path)
    spec = spec_of(ckpt)
    fields = ("arch", "width", "bn", "num_classes", "activation", "levels")
    if expect is not None and any(getattr(spec, f) != getattr(expect, f) for f in fields):
        raise CheckpointError(f"checkpoint {path} holds {spec.describe()} for {spec.num_classes} classes, not "
                              f"{expect.describe()} for {expect.num_classes}. Fix: pass the matching --arch/--width/--bn "
                              "or point at the right checkpoint")
    model = spec.build()
    model.load_state_dict(ckpt["model"])
    return model, ckpt


def train(spec: ModelSpec, data: Dataset, cfg: TrainConfig, checkpoint: str | os.PathLike, *,
          device: str | torch.device = "cpu", progress: bool = True, stop_after: int | None = None) -> nn.Module:
    """Train (or resume training) the ANN described by ``spec`` and return it in eval mode.

    The checkpoint is rewritten atomically after every epoch, with a CSV log beside it
    (``<checkpoint>.log.csv``). A finished checkpoint is loaded, not retrained; one trained with another
    spec or recipe is refused rather than overwritten. ``stop_after`` ends the run after that many epochs
    of this call (used to test resuming).
    """
    cfg.validate()
    path = Path(checkpoint)
    torch.manual_seed(cfg.seed)
    model = spec.build()
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    history: list[dict[str, float]] = []
    start = 0
    recipe = {"spec": asdict(spec), "train": asdict(cfg), "dataset": data.name}
    if path.exists():
        ckpt = load_checkpoint(path)
        # through spec_of, a checkpoint written before a field existed compares with the value it was trained with
        stored = {"spec": _recipe_spec(spec_of(ckpt)), "train": ckpt["train"], "dataset": ckpt["dataset"]}
        expected = {**recipe, "spec": _recipe_spec(spec)}
        if _normalise(stored) != _normalise(expected):
            raise CheckpointError(f"checkpoint {path} was trained with another model or recipe "
                                  f"({_diff(stored, expected)}). "
                                  "Fix: use another checkpoint path, or delete this one to retrain")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"])
        history, start = list(ckpt["history"]), int(ckpt["epoch"])
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    use_amp = cfg.amp and torch.device(device).type == "cuda"
    end = cfg.epochs if stop_after is None else min(cfg.epochs, start + stop_after)
    for epoch in tqdm(range(start, end), desc=f"train {spec.arch}", initial=start, total=cfg.epochs,
                      disable=not progress):
        model.train()
        started = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y in batches(data.train, cfg.batch_size, shuffle=True, generator=gen, augment=cfg.augment,
                            device=device):
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                out = model(x)
                loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
        if not torch.isfinite(torch.tensor(loss_sum)):
            raise ConfigError(f"training diverged at epoch {epoch + 1} (loss is NaN). Fix: lower --lr or use --bn")
        history.append({"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "loss": loss_sum / seen,
                        "train_accuracy": 100.0 * correct / seen, "seconds": round(time.perf_counter() - started, 2)})
        atomic_save({"format": CHECKPOINT_FORMAT, **recipe, "epoch": epoch + 1,
                            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                            "optimizer": opt.state_dict(),
                            "generator": gen.get_state(), "history": history}, path)
        _write_log(history, Path(f"{path}.log.csv"))
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
