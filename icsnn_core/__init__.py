"""icsnn_core: ANN-to-SNN conversion at low latency, the IC-SNN paper (Mathematics 2023, 11, 58) and its peers.

The pieces, in the order a run uses them: :mod:`.data` (datasets), :mod:`.models` (VGG16, ResNet20,
digits-cnn), :mod:`.train` (ANN training), :mod:`.convert` (BN folding, ReLU -> IF, threshold balancing),
:mod:`.neuron` (the IF neuron), :mod:`.calibration` (the paper's Algorithms 1-3), :mod:`.methods`
(methods by name), :mod:`.simulate` (time-folded simulation), :mod:`.measure` (figure measurements),
:mod:`.results` (tidy CSV with provenance), :mod:`.profiles` and :mod:`.pipeline` (end-to-end runs),
:mod:`.cli` (the ``icsnn`` command), :mod:`.distributed` (torchrun). Importing this package downloads nothing.
"""
from .calibration import coding_compensation, data_based_init, weight_based_init
from .convert import balance_thresholds, convert
from .data import Dataset, Split, as_split, load_dataset
from .errors import CalibrationWarning, CheckpointError, ConfigError, DataError, IcsnnError, ThresholdWarning
from .methods import METHODS, Method
from .models import build_model
from .neuron import IFNeuron, neurons, set_mode
from .simulate import accuracy_curve, ann_accuracy, ann_correct, reuse_freed_memory, simulate
from .train import RECIPES, ModelSpec, TrainConfig, load_model, recipe, train

__version__ = "0.1.0"

__all__ = [
    "CalibrationWarning", "CheckpointError", "ConfigError", "DataError", "Dataset", "IFNeuron", "IcsnnError",
    "METHODS", "Method", "ModelSpec", "RECIPES", "Split", "ThresholdWarning", "TrainConfig", "accuracy_curve",
    "ann_accuracy", "ann_correct", "as_split", "balance_thresholds", "build_model",
    "coding_compensation", "convert", "data_based_init", "load_dataset", "load_model", "neurons", "recipe",
    "reuse_freed_memory", "set_mode", "simulate", "train", "weight_based_init", "__version__",
]
