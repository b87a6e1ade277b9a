"""User-facing errors: each message names the problem and the fix; the CLI prints it without a traceback."""


class IcsnnError(Exception):
    """Base class of the errors a user can fix (bad option, missing data, wrong checkpoint)."""


class ConfigError(IcsnnError, ValueError):
    """An option or argument is invalid."""


class DataError(IcsnnError, FileNotFoundError):
    """A dataset is missing, incomplete or malformed."""


class CheckpointError(IcsnnError, ValueError):
    """A checkpoint does not match what it is loaded into."""


class CalibrationWarning(UserWarning):
    """A calibration produced values that are known to make the SNN fail (e.g. a negative initial potential)."""


class ThresholdWarning(UserWarning):
    """An SNN is simulated with thresholds that were never set (balanced, taken from lambda, or set by hand)."""
