"""User-facing errors: each message names the problem and the fix; the CLI prints it without a traceback."""


class IcsnnError(Exception):
    """Base class of the errors a user can fix (bad option, missing data, wrong checkpoint)."""


class ConfigError(IcsnnError, ValueError):
    """An option or argument is invalid."""


class DataError(IcsnnError, FileNotFoundError):
    """A dataset is missing, incomplete or malformed."""


class CheckpointError(IcsnnError, ValueError):
    """A checkpoint does not match what it is loaded into."""
