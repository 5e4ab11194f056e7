"""Exceptions that tell the user what was expected, what arrived and what to do next.

Every error frontier raises on purpose derives from `FrontierError`; the CLI prints such errors as one line and
exits non-zero, while any other exception is a bug and keeps its traceback.
"""


class FrontierError(Exception):
    """Base class for errors caused by input, configuration or environment rather than by a bug."""


class ConfigError(FrontierError, ValueError):
    """An argument or configuration value is out of range or inconsistent."""


class ShapeError(FrontierError, ValueError):
    """A tensor has a shape or dtype the operation does not accept."""


class BackendUnavailableError(FrontierError, ImportError):
    """An optional package or backend is not installed; the message carries the install command."""


class ModelLoadError(FrontierError, OSError):
    """A model path is missing, or a weight/tokenizer file in it is truncated or corrupt."""


class ExperimentNotFoundError(ConfigError):
    """`frontier reproduce --only NAME` named no registered experiment."""
