"""Named run configurations. A profile is data, not a code path: every profile runs through
:func:`icsnn_core.pipeline.reproduce` the same way.

- ``ci``: the embedded digits set and a small CNN; the whole pipeline in under 3 minutes on 2 CPU cores.
- ``cpu``: CIFAR-10 with width-reduced models; hours on a CPU.
- ``full``: the paper's models and training schedule on CIFAR-10 (Sec. 4.1); needs a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError
from .methods import Method, paper_variants
from .train import TrainConfig


@dataclass(frozen=True)
class ModelChoice:
    arch: str
    width: float = 1.0
    bn: bool = False


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    dataset: str
    models: tuple[ModelChoice, ...]
    train: TrainConfig
    T_grid: tuple[int, ...]
    variants: tuple[Method, ...] = field(repr=False)
    threshold_quantile: float = 0.99
    threshold_values: str = "positive"
    threshold_images: int = 1000
    n_test: int | None = None  # None: the whole test split
    eval_batch_size: int = 256
    max_fold: int = 8192
    coding: str = "direct"
    seed: int = 0


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        description="digits (embedded in scikit-learn), digits-cnn, 30 epochs, T = 1..64; ~1-2 minutes on 2 CPU cores",
        dataset="digits",
        models=(ModelChoice("digits-cnn"),),
        train=TrainConfig(epochs=30, batch_size=64, milestones=(20, 25), augment=False),
        T_grid=(1, 2, 4, 8, 16, 32, 64),
        variants=tuple(paper_variants(calib_images=512, small_calib=64)),
        threshold_images=512,
    ),
    "cpu": Profile(
        name="cpu",
        description="CIFAR-10, VGG16 at width 0.25 and ResNet20, a short schedule, T = 1..128 on 2,000 test images; hours on a CPU",
        dataset="cifar10",
        models=(ModelChoice("vgg16", 0.25, bn=True), ModelChoice("resnet20", 1.0, bn=True)),
        train=TrainConfig().scaled_to(20),
        T_grid=(1, 2, 4, 8, 16, 32, 64, 128),
        variants=tuple(paper_variants(calib_images=512, small_calib=64)),
        threshold_images=1000,
        n_test=2000,
        eval_batch_size=200,
        max_fold=4096,
    ),
    "full": Profile(
        name="full",
        description="CIFAR-10, VGG16 and ResNet20 at full width, the paper's 300-epoch schedule, T = 1..256 on all 10,000 test images; GPU",
        dataset="cifar10",
        models=(ModelChoice("vgg16", 1.0, bn=True), ModelChoice("resnet20", 1.0, bn=True)),
        train=TrainConfig(amp=True, channels_last=True),
        T_grid=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        variants=tuple(paper_variants(calib_images=1000, small_calib=128)),
        threshold_images=5000,
        eval_batch_size=500,
        max_fold=65536,
    ),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
