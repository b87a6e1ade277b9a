"""Named run configurations. A profile is data, not a code path: every profile runs through
:func:`icsnn_core.pipeline.reproduce` the same way.

- ``ci``: the embedded digits set and a small CNN; the whole pipeline in under 3 minutes on 2 CPU cores.
- ``cpu``: CIFAR-10 with width-reduced models; hours on a CPU.
- ``full``: the paper's models and training schedule on CIFAR-10 (Sec. 4.1); needs a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError
from .methods import DEFAULT_CALIB_IMAGES, Method, paper_variants, peer_variants
from .train import TrainConfig, recipe


@dataclass(frozen=True)
class ModelChoice:
    arch: str
    width: float = 1.0
    bn: bool = False
    activation: str = "relu"  # "qcfs" trains the ANN for QCFS / COS (and IC-SNN on top of it)
    levels: int = 4


def methods_for(calib_images: int, other_calib: int, compact: bool = False,
                cos_iterations: tuple[int, ...] = (1, 2)) -> dict[str, tuple[Method, ...]]:
    """What runs on each kind of ANN: on ReLU, every paper method and reading plus OPI and COS; on QCFS,
    QCFS and COS plus the paper's methods as printed and IC-SNN in its bounded, potential-unit reading.

    ``compact`` (for compute-bound CIFAR runs) measures the readings one at a time for IC-SNN only, and on the
    QCFS ANN the one-simulation methods (plain, QCFS, COS) and IC-SNN (as printed and bounded). The order is
    the order of importance, so that a run cut short keeps what matters most: on the ReLU ANN the paper's
    methods (IC-SNN as printed and bounded, I-SNN, C-SNN), then plain conversion and the peers, then IC-SNN
    with Algorithm 1's weight-based v(0), then the readings one at a time; C-SNN with the ``potential``
    reading is OPI's v(0) exactly, so it comes last."""
    ic = Method.make("ic-snn", calib_images=calib_images)
    bounded_ic = [ic, ic.with_options(compensation="potential", residual="clip")]
    if compact:
        readings = [m for m in paper_variants(calib_images, other_calib, i_snn_readings=False)
                    if m.name == "ic-snn" and m != ic]
        readings.sort(key=lambda m: m.init != "weight")  # Algorithm 1 is the paper's own, not a reading of ours
        relu = [*bounded_ic, Method.make("i-snn", calib_images=calib_images), Method.make("c-snn"),
                Method.make("snn"), *peer_variants("relu", cos_iterations), *readings,
                Method.make("c-snn", compensation="potential")]
        return {"relu": tuple(dict.fromkeys(relu)),
                "qcfs": (Method.make("snn"), *peer_variants("qcfs", cos_iterations), *bounded_ic)}
    on_qcfs = [Method.make("snn"), Method.make("i-snn", calib_images=calib_images), Method.make("c-snn"), *bounded_ic]
    return {"relu": (*paper_variants(calib_images, other_calib), *peer_variants("relu", cos_iterations)),
            "qcfs": (*on_qcfs, *peer_variants("qcfs", cos_iterations))}


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    dataset: str
    models: tuple[ModelChoice, ...]
    train: TrainConfig
    T_grid: tuple[int, ...]
    methods: dict[str, tuple[Method, ...]] = field(repr=False)  # by the ANN's activation
    threshold_quantile: float = 0.99
    threshold_values: str = "positive"
    threshold_images: int = 1000
    n_test: int | None = None  # None: the whole test split
    eval_batch_size: int = 256
    max_fold: int | None = None
    coding: str = "direct"
    seed: int = 0


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        description="digits (embedded in scikit-learn), digits-cnn with ReLU and with QCFS, 30 epochs, T = 1..64; about 105 s on 2 CPU cores",
        dataset="digits",
        models=(ModelChoice("digits-cnn"), ModelChoice("digits-cnn", activation="qcfs")),
        train=TrainConfig(epochs=30, batch_size=64, milestones=(20, 25), augment=False),
        T_grid=(1, 2, 4, 8, 16, 32, 64),
        methods=methods_for(calib_images=512, other_calib=64),
        threshold_images=512,
    ),
    "cpu": Profile(
        name="cpu",
        description="CIFAR-10, VGG16 at width 0.25 and ResNet20 at width 0.5, ReLU and QCFS, the fast recipe for 15 epochs, T = 1..128 on 2,000 test images; hours on a CPU",
        dataset="cifar10",
        models=tuple(ModelChoice(arch, width, bn=True, activation=act)
                     for arch, width in (("vgg16", 0.25), ("resnet20", 0.5)) for act in ("relu", "qcfs")),
        # the fast recipe: +13.2 points over the paper's on held-out training images (benchmarks/recipe_study.py)
        train=recipe("fast", 15),
        T_grid=(1, 2, 4, 8, 16, 32, 64, 128),
        methods=methods_for(calib_images=DEFAULT_CALIB_IMAGES, other_calib=1024, compact=True, cos_iterations=(1,)),
        threshold_images=1000,
        n_test=2000,
        eval_batch_size=200,
    ),
    # the one-call GPU reproduction: `icsnn reproduce --profile full` trains the four ANNs with the fast recipe
    # (chosen on held-out training images by benchmarks/recipe_study.py at the cpu profile's scale) and measures
    # every method. Batch 512 with lr 0.2 and 30 epochs are a first guess at what fits a few minutes per ANN on one
    # H100/H200, not yet measured there: stage_times.csv of the first GPU run says where the time goes
    "full": Profile(
        name="full",
        description="CIFAR-10, VGG16 and ResNet20 at full width, ReLU and QCFS, the fast recipe for 30 epochs, T = 1..256 on all 10,000 test images; GPU",
        dataset="cifar10",
        models=tuple(ModelChoice(arch, 1.0, bn=True, activation=act)
                     for arch in ("vgg16", "resnet20") for act in ("relu", "qcfs")),
        train=recipe("fast", 30, amp=True, channels_last=True, batch_size=512, lr=0.2),
        T_grid=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        methods=methods_for(calib_images=DEFAULT_CALIB_IMAGES, other_calib=1024, compact=True),
        threshold_images=5000,
        eval_batch_size=500,
        max_fold=16384,  # two processes share one GPU; a larger fold does not simulate faster
    ),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
