"""The ANNs of the paper (Sec. 4.1.1) built from :class:`IFNeuron` activations.

VGG16 and ResNet20 for 32x32 inputs: ReLU, average pooling instead of max pooling, no dropout, batch
norm optional (folded into the preceding conv/linear before conversion). A width multiplier scales
every hidden layer so that CPU-scale runs are possible. ``digits-cnn`` is a small CNN for the 8x8
scikit-learn digits, the embedded default dataset.

Every model starts with :class:`Normalize`, so models take images in [0, 1]: rate coding then draws
Bernoulli spikes from the raw pixel intensity and the normalisation acts on each step's spikes.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import torch
from torch import nn

from .errors import ConfigError
from .neuron import DEFAULT_INIT_LAMBDA, IFNeuron

ARCHS = ("vgg16", "resnet20", "digits-cnn")
NeuronFactory = Callable[[], nn.Module]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; an affine map, so it is exact on every time step of an SNN."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _w(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _conv_block(c_in: int, c_out: int, bn: bool, stride: int = 1, kernel: int = 3) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    return layers


VGG16_CFG = (64, 64, "A", 128, 128, "A", 256, 256, 256, "A", 512, 512, 512, "A", 512, 512, 512, "A")


class VGG16(nn.Module):
    """VGG16 for 32x32 inputs: 13 conv + 3 linear layers, average pooling, no dropout."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, bn: bool = False,
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,),
                 neuron: NeuronFactory = IFNeuron) -> None:
        super().__init__()
        layers: list[nn.Module] = [Normalize(mean, std)]
        c = in_channels
        for v in VGG16_CFG:
            if v == "A":
                layers.append(nn.AvgPool2d(2))
            else:
                layers += _conv_block(c, _w(int(v), width), bn) + [neuron()]
                c = _w(int(v), width)
        hidden = _w(4096, width)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c, hidden), neuron(), nn.Linear(hidden, hidden), neuron(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """CIFAR ResNet basic block; the shortcut is a 1x1 conv where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, bn: bool, neuron: NeuronFactory = IFNeuron) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(*_conv_block(c_in, c_out, bn, stride))
        self.neuron1 = neuron()
        self.conv2 = nn.Sequential(*_conv_block(c_out, c_out, bn))
        self.shortcut = (nn.Sequential(*_conv_block(c_in, c_out, bn, stride, kernel=1))
                         if stride != 1 or c_in != c_out else nn.Identity())
        self.neuron2 = neuron()  # fires on the sum of the residual branch and the shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron2(self.conv2(self.neuron1(self.conv1(x))) + self.shortcut(x))


class ResNet20(nn.Module):
    """The standard CIFAR ResNet-20 (He et al. 2016): 16-32-64 channels, 3x3 blocks, ~0.27M parameters."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, bn: bool = False,
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,),
                 neuron: NeuronFactory = IFNeuron) -> None:
        super().__init__()
        c = _w(16, width)
        layers: list[nn.Module] = [Normalize(mean, std), *_conv_block(in_channels, c, bn), neuron()]
        for stage, channels in enumerate((16, 32, 64)):
            c_out = _w(channels, width)
            for i in range(3):
                layers.append(BasicBlock(c, c_out, 2 if stage > 0 and i == 0 else 1, bn, neuron))
                c = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 digits (any size works): three conv layers, one hidden linear layer, 4 IF layers."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0, bn: bool = False,
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,),
                 neuron: NeuronFactory = IFNeuron) -> None:
        super().__init__()
        c1, c2, c3, h = _w(16, width), _w(32, width), _w(32, width), _w(64, width)
        self.net = nn.Sequential(
            Normalize(mean, std),
            *_conv_block(in_channels, c1, bn), neuron(),
            *_conv_block(c1, c2, bn), neuron(), nn.AvgPool2d(2),
            *_conv_block(c2, c3, bn), neuron(), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Linear(c3 * 4, h), neuron(), nn.Linear(h, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


_BUILDERS = {"vgg16": VGG16, "resnet20": ResNet20, "digits-cnn": DigitsCNN}


def build_model(arch: str, num_classes: int, in_channels: int, width: float = 1.0, bn: bool = False,
                mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,), activation: str = "relu",
                levels: int = 4, init_lambda: float = DEFAULT_INIT_LAMBDA) -> nn.Module:
    """Build a built-in architecture by name (one of :data:`ARCHS`) with ReLU or QCFS activations (``levels`` = L,
    trainable lambda starting at ``init_lambda``)."""
    if arch not in _BUILDERS:
        raise ConfigError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if not width > 0:
        raise ConfigError(f"width must be > 0, got {width}. Fix: e.g. --width 0.25 for a quarter of every layer")
    return _BUILDERS[arch](num_classes=num_classes, in_channels=in_channels, width=width, bn=bn, mean=mean, std=std,
                           neuron=partial(IFNeuron, activation, levels, init_lambda))


def is_user_model(ref: str) -> bool:
    """Whether ``ref`` names a user's model class (``path/to/file.py:Class`` or ``package.module:Class``)."""
    return ":" in ref


def load_user_model(ref: str) -> nn.Module:
    """Instantiate a user's model class, with no arguments, from ``path/to/file.py:Class`` or
    ``package.module:Class``. This imports (runs) the user's own file or module, as ``python file.py`` would."""
    import importlib
    import importlib.util
    import inspect
    from pathlib import Path

    where, _, cls_name = ref.rpartition(":")
    if not where or not cls_name:
        raise ConfigError(f"--model {ref!r} is not of the form path/to/file.py:ClassName or package.module:ClassName. "
                          "Fix: e.g. --model mynet.py:Net")
    try:
        if where.endswith(".py") or "/" in where:
            path = Path(where)
            if not path.is_file():
                raise ConfigError(f"--model {ref!r}: the file {path} does not exist. Fix: check the path")
            spec = importlib.util.spec_from_file_location(f"icsnn_user_model_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code can fail in any way while it is imported
        raise ConfigError(f"--model {ref!r}: importing {where} failed ({type(e).__name__}: {e}). Fix: make the file "
                          "importable (python -c 'import ...' should work), or check the module name") from e
    cls = getattr(module, cls_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        found = sorted(k for k, v in vars(module).items() if inspect.isclass(v) and issubclass(v, nn.Module)
                       and v.__module__ == module.__name__)
        raise ConfigError(f"--model {ref!r}: {where} has no torch.nn.Module class {cls_name!r} (it defines "
                          f"{', '.join(found) or 'none'}). Fix: name one of those")
    try:
        return cls()
    except TypeError as e:
        raise ConfigError(f"--model {ref!r}: {cls_name}() cannot be built without arguments ({e}). Fix: give every "
                          f"argument of {cls_name}.__init__ a default, or use the Python API (icsnn_core.convert("
                          "your_model))") from e
