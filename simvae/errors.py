"""User-facing errors.

Anything a user can cause (bad option, missing file, diverging run) raises a
``SimvaeError``; the CLI prints its message on one line to stderr and exits
non-zero, with no traceback. Programming errors stay ordinary exceptions.
"""


class SimvaeError(Exception):
    """An error caused by input or circumstances, explained in one line."""

    exit_code = 2


class ConfigError(SimvaeError):
    """An unknown, mistyped or impossible configuration value."""


class DataError(SimvaeError):
    """A data file that is missing, corrupt or inconsistent."""


class RunDirError(SimvaeError):
    """A run folder that cannot be used (not writable, holds another run, no checkpoint)."""


class DivergenceError(SimvaeError):
    """Training produced a non-finite loss."""

    exit_code = 3


class CheckpointError(SimvaeError):
    """A checkpoint that does not match the method or architecture asked for."""
