"""Conversion methods by name, with the options that change their numbers.

The paper's methods (Sec. 4.2.1): ``snn`` (plain conversion, v(0) = 0, RobustNorm-style percentile
thresholds), ``i-snn`` (initialised potential, Algorithm 2, or Algorithm 1 with ``init="weight"``),
``c-snn`` (coding compensation alone), ``ic-snn`` (Algorithm 3: both). The peers: ``opi`` (Bu et al.
2022: v(0) = V_th / 2 on a ReLU ANN), ``qcfs`` (Bu et al., ICLR 2022: the same on a QCFS-trained ANN,
V_th = lambda) and ``cos`` (Hao et al., ICLR 2023: v(0) = V_th / 2 plus offset-spike calibration from
``rho`` pre-simulation steps on each input; its latency is T + rho). Each method sets the neurons' v(0)
(and COS's pre-simulation) for a horizon T; simulation is the same for all.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .calibration import (COMPENSATIONS, GRANULARITIES, RESIDUALS, coding_compensation, data_based_init,
                          set_initial_potential, weight_based_init)
from .data import DataLike, Split, as_split
from .errors import CalibrationWarning, ConfigError
from .neuron import ann_kind, neurons

METHODS = ("snn", "i-snn", "c-snn", "ic-snn", "opi", "qcfs", "cos")
# the smallest calibration set whose IC-SNN accuracy is within 0.2 points of 10,000 images' (benchmarks/speed.py:
# VGG16 w0.25 on CIFAR-10, T = 16, clipped residual, all 10,000 test images; see the book's Performance page)
DEFAULT_CALIB_IMAGES = 128
CHECK_IMAGES = 128  # calibration images on which a calibrated SNN is compared with plain conversion (one warning)
INITS = ("data", "weight")
# the options each method reads; the others are left empty in results
_OPTIONS = {
    "snn": (),
    "i-snn": ("init", "residual", "granularity", "calib_images"),
    "c-snn": ("compensation",),
    "ic-snn": ("init", "compensation", "residual", "granularity", "calib_images"),
    "opi": (),
    "qcfs": (),
    "cos": ("rho", "iterations", "shift"),
}
# COS: how far a miscounted neuron's v0 moves (IFNeuron._offset_spike_calibration): as in the authors' code
# (the default), or by exactly one threshold (this project's first reading of the paper)
SHIFTS = ("authors", "threshold")
# methods defined only on one kind of trained ANN, and what to use instead on the other
_NEEDS_ANN = {
    "qcfs": ("qcfs", "train the ANN with the QCFS activation (icsnn train --activation qcfs; in your own model, "
                     "icsnn_core.IFNeuron(activation='qcfs') is a drop-in for nn.ReLU), or use method 'opi', the "
                     "same v(0) = V_th/2 on a ReLU ANN"),
    "opi": ("relu", "use method 'qcfs': on a QCFS-trained ANN the same rule (v(0) = V_th/2, V_th = lambda) is QCFS"),
}
_DATA_ONLY = ("residual", "calib_images")  # options that exist only with init="data"


_DEFAULTS: dict[str, object] = dict(init="data", compensation="printed", residual="raw", granularity="layer",
                                   calib_images=DEFAULT_CALIB_IMAGES, rho=4, iterations=1, shift="authors")
_CHOICES = {"init": INITS, "compensation": COMPENSATIONS, "residual": RESIDUALS, "granularity": GRANULARITIES,
            "shift": SHIFTS}
_COUNTS = ("calib_images", "rho", "iterations")  # options that are positive integers


def option_names(name: str, init: str | None = None) -> tuple[str, ...]:
    """The options method ``name`` reads (with ``init="weight"``, Algorithm 1, no calibration images)."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}. Fix: choose one of {', '.join(METHODS)}")
    init = init if init is not None else _DEFAULTS["init"]
    return tuple(k for k in _OPTIONS[name] if not (init == "weight" and k in _DATA_ONLY))


@dataclass(frozen=True)
class Method:
    """A method and the readings of the paper's ambiguous points it uses (None where they do not apply).

    ``Method("ic-snn")`` and ``Method.make("ic-snn")`` are the same: the options a method reads default to the
    paper's printed readings, and an option it does not read is refused.
    """

    name: str
    init: str | None = None
    compensation: str | None = None
    residual: str | None = None
    granularity: str | None = None
    calib_images: int | None = None
    rho: int | None = None  # COS: pre-simulation steps
    iterations: int | None = None  # COS: rounds of offset-spike calibration (the authors' code runs 1)
    shift: str | None = None  # COS: "authors" or "threshold" (see SHIFTS)

    def __post_init__(self) -> None:
        # fill the defaults of the options this method reads and validate them; refuse those it does not read
        used = option_names(self.name, self.init)
        for k, default in _DEFAULTS.items():
            value = getattr(self, k)
            if k not in used:
                if value is not None:
                    reads = ", ".join(used) or "no options"
                    raise ConfigError(f"method {self.name!r} does not read option {k}={value!r} (it reads {reads}"
                                      f"{' with init=' + repr(self.init) if self.init == 'weight' else ''}). "
                                      f"Fix: leave {k} out")
                continue
            if value is None:
                object.__setattr__(self, k, value := default)
            if k in _CHOICES and value not in _CHOICES[k]:
                raise ConfigError(f"unknown {k} {value!r}; choose one of {', '.join(_CHOICES[k])}")
            if k in _COUNTS and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"{k} must be a positive integer, got {value!r}. Fix: e.g. {k}=4")
        if self.init == "weight" and self.granularity == "neuron":
            raise ConfigError("init='weight' (Algorithm 1) has no per-neuron reading; use granularity layer or channel")

    @classmethod
    def make(cls, name: str, *, init: str | None = None, compensation: str | None = None, residual: str | None = None,
             granularity: str | None = None, calib_images: int | None = None, rho: int | None = None,
             iterations: int | None = None, shift: str | None = None) -> "Method":
        """Build a method; options left out take the printed readings' defaults (see :func:`option_names`)."""
        return cls(name, init=init, compensation=compensation, residual=residual, granularity=granularity,
                   calib_images=calib_images, rho=rho, iterations=iterations, shift=shift)

    def with_options(self, **options: object) -> "Method":
        """The same method with ``options`` changed; current options the new combination does not read are dropped
        (e.g. ``residual`` when ``init="weight"``)."""
        used = option_names(self.name, options.get("init", self.init))  # type: ignore[arg-type]
        current = {k: v for k, v in asdict(self).items() if v is not None and k in used}
        return Method.make(self.name, **{**current, **options})

    @property
    def label(self) -> str:
        """A short unique name, e.g. ``ic-snn[init=data,compensation=printed,...]``."""
        opts = ",".join(f"{k}={v}" for k, v in asdict(self).items() if k != "name" and v is not None)
        return f"{self.name}[{opts}]" if opts else self.name

    @property
    def depends_on_T(self) -> bool:
        """Whether v(0) depends on the horizon T; if not, one long simulation serves every T."""
        return self.name in ("i-snn", "c-snn", "ic-snn")

    @property
    def presim(self) -> int:
        """Steps each input is pre-simulated before the T real steps (COS's rho; 0 for the others)."""
        return self.rho or 0

    def latency(self, T: int) -> int:
        """Time steps from the input's arrival to the decision: T plus any pre-simulation."""
        return T + self.presim

    def check_ann(self, model: nn.Module) -> str:
        """Refuse a model trained with the wrong activation for this method; return ``relu`` or ``qcfs``."""
        kind = ann_kind(model)
        needed = _NEEDS_ANN.get(self.name)
        if needed and kind != needed[0]:
            raise ConfigError(f"method {self.name!r} is defined on a {needed[0].upper()}-trained ANN, and this one "
                              f"was trained with {kind.upper()} activations. Fix: {needed[1]}")
        return kind

    def options(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if k != "name"}

    def apply(self, model: nn.Module, T: int, calib: DataLike | None = None, *,
              image_shape: tuple[int, ...] | None = None, check: bool = True, **sim: object) -> None:
        """Set every neuron's v(0) as this method prescribes for horizon ``T``.

        A method whose v(0) depends on T (:attr:`depends_on_T`: I-SNN, C-SNN, IC-SNN) is calibrated for that one
        T: apply it again before simulating another horizon. ``calib`` holds training images (never test images),
        as anything :func:`icsnn_core.data.as_split` takes; ``image_shape`` (one input without the batch
        dimension, for Algorithm 1) is read from ``calib`` when not given. ``sim`` passes batch_size / max_fold /
        device / coding / seed to the calibration simulation. Warns (:class:`CalibrationWarning`) when the
        calibrated v(0) is below 0 in some layer, or else (unless ``check=False``: two more simulations of
        :data:`CHECK_IMAGES` images for T steps) when the calibrated SNN scores below plain conversion on its
        calibration images.
        """
        self.check_ann(model)
        named = [n for _, n in neurons(model)]
        for n in named:
            n.presim, n.presim_iterations, n.presim_shift = self.presim, self.iterations or 1, self.shift or "authors"
        calib = as_split(calib) if calib is not None else None
        if self.name == "snn":
            v0 = [0.0] * len(named)
        elif self.name in ("opi", "qcfs", "cos"):
            v0 = [n.threshold / 2 for n in named]
        elif self.name == "c-snn":
            v0 = coding_compensation(model, None, T, compensation=self.compensation, init="none")
        elif self.init == "weight":
            shape = image_shape or infer_image_shape(model, calib)
            if self.name == "i-snn":
                v0 = weight_based_init(model, T, shape, self.granularity)
            else:
                v0 = coding_compensation(model, None, T, compensation=self.compensation, init="weight",
                                         image_shape=shape, granularity=self.granularity)
        else:
            if calib is None:
                raise ConfigError(f"{self.name} with init='data' needs calibration images from the training split. "
                                  f"Fix: pass them, e.g. method.apply(snn, T, (x_train, y_train))")
            data = calib.subset(self.calib_images)
            opts = dict(residual=self.residual, granularity=self.granularity, **sim)
            if self.name == "i-snn":
                v0 = data_based_init(model, data, T, **opts)
            else:
                v0 = coding_compensation(model, data, T, compensation=self.compensation, init="data", **opts)
            negative = self._warn_if_negative(v0)
            set_initial_potential(model, v0)
            if not negative and check:
                self._warn_if_worse_than_plain(model, data, T, v0, sim)
            return
        set_initial_potential(model, v0)

    def _warn_if_worse_than_plain(self, model: nn.Module, data: Split, T: int, v0: list[torch.Tensor | float],
                                  sim: dict[str, object]) -> None:
        """Warn when the calibrated SNN scores below plain conversion (v(0) = 0) at T on (at most
        :data:`CHECK_IMAGES` of) its own calibration images: a calibration that hurts where it was measured.
        Two short simulations; the neurons keep the calibrated v(0)."""
        from .simulate import accuracy_curve

        check = data.subset(CHECK_IMAGES)
        opts = {k: sim[k] for k in ("batch_size", "max_fold", "device", "coding", "seed") if k in sim}
        calibrated = float(accuracy_curve(model, check, T, **opts)[-1])
        set_initial_potential(model, [0.0] * len(v0))
        plain = float(accuracy_curve(model, check, T, **opts)[-1])
        set_initial_potential(model, v0)
        if calibrated < plain:
            warnings.warn(f"{self.label}: at T = {T} the calibrated SNN scores below plain conversion on its own "
                          f"calibration images ({calibrated:.1f}% against {plain:.1f}%). The readings that work on the "
                          "paper's networks are residual='clip' and init='weight', e.g. Method.make('ic-snn', "
                          "residual='clip'); the book's Ambiguities page (book/pages/ambiguities.ipynb) measures each "
                          "reading", CalibrationWarning, stacklevel=3)

    def _warn_if_negative(self, v0: list[torch.Tensor | float]) -> bool:
        # the printed readings (raw mean residual) let silent neurons pull v(0) below 0; the SNN can then fall to
        # chance (measured on the book's Ambiguities page). The message holds no numbers, so Python shows it once
        # per variant rather than once per T.
        negative = any(float(torch.as_tensor(v).float().mean()) < 0 for v in v0)
        if negative:
            warnings.warn(f"{self.label}: the calibrated initial potential v(0) is below 0 in some layers (silent "
                          "neurons pull the raw mean residual down), and the SNN may score far below plain "
                          "conversion. The readings that hold v(0) in [0, V_th) are residual='clip' (or 'fired') and "
                          "init='weight', e.g. Method.make('ic-snn', residual='clip'); the book's Ambiguities page "
                          "(book/pages/ambiguities.ipynb) measures each reading", CalibrationWarning, stacklevel=3)
        return negative


def infer_image_shape(model: nn.Module, data: Split | None) -> tuple[int, ...]:
    """One input's shape without the batch dimension: from ``data``, else ``(in_features,)`` of a model whose only
    weighted layers are linear; Algorithm 1 feeds an all-ones input of this shape."""
    if data is not None:
        return tuple(data.x.shape[1:])
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    if layers and all(isinstance(m, nn.Linear) for m in layers):
        return (layers[0].in_features,)
    raise ConfigError("Algorithm 1 (init='weight') needs the shape of one input, and there is no calibration data to "
                      "read it from. Fix: pass image_shape=(channels, height, width), e.g. (3, 32, 32), or pass "
                      "the training split as calib")


def peer_variants(ann: str, cos_iterations: tuple[int, ...] = (1, 2)) -> list[Method]:
    """The peers that apply to an ANN trained with ``ann`` activations: COS with each number of iterations, and
    with the one-threshold shift for comparison."""
    return [Method.make("opi" if ann == "relu" else "qcfs"), *(Method.make("cos", iterations=i) for i in cos_iterations),
            Method.make("cos", shift="threshold")]


def paper_variants(calib_images: int, other_calib: int, i_snn_readings: bool = True) -> list[Method]:
    """The paper's methods as printed, then each ambiguous point changed one at a time (for I-SNN too,
    unless ``i_snn_readings`` is False)."""
    i_snn = Method.make("i-snn", calib_images=calib_images)
    ic_snn = Method.make("ic-snn", calib_images=calib_images)
    one_at_a_time = [dict(residual="clip"), dict(residual="fired"), dict(granularity="channel"),
                     dict(granularity="neuron"), dict(calib_images=other_calib), dict(init="weight")]
    variants = [Method.make("snn"), i_snn, *[i_snn.with_options(**o) for o in one_at_a_time if i_snn_readings],
                Method.make("c-snn"), Method.make("c-snn", compensation="potential"),
                ic_snn, ic_snn.with_options(compensation="potential"),
                *[ic_snn.with_options(**o) for o in one_at_a_time]]
    return list(dict.fromkeys(variants))  # keep order, drop duplicates

