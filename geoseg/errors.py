"""Exceptions raised by geoseg.

Every error geoseg raises on purpose derives from :class:`GeosegError`, and each
subclass also inherits the builtin it resembles, so callers can catch either::

    GeosegError
    ├── SceneError(GeosegError, ValueError)          the scene cannot be used as given
    ├── ConfigError(GeosegError, ValueError)         an option or setting is invalid
    │   └── ModelNotFoundError(ConfigError, LookupError)   no checkpoint or installed model matches
    ├── CheckpointError(GeosegError, ValueError)     a model file is not a usable geoseg checkpoint
    ├── QuantizationError(GeosegError, ValueError)   an int8 graph would not agree with fp32 well enough
    ├── DatasetError(GeosegError, ValueError)        dataset files exist but cannot be used as given
    ├── LockedError(GeosegError, RuntimeError)       another geoseg process is writing the same outputs
    │   └── JobLockedError(LockedError)              another run of the same regional job is in progress
    └── GeosegIOError(GeosegError, OSError)          a file cannot be read or written
        ├── SceneNotFoundError(GeosegIOError, FileNotFoundError)
        ├── DatasetNotFoundError(GeosegIOError, FileNotFoundError)
        ├── OutputExistsError(GeosegIOError, FileExistsError)
        │   └── ModelExistsError(OutputExistsError)   an installed model already has that name
        └── ChecksumError(GeosegIOError, ValueError)   a checkpoint does not have the expected SHA-256

Messages are one line and say how to fix the problem; the command-line
interface prints them without a traceback.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ChecksumError",
    "ConfigError",
    "DatasetError",
    "DatasetNotFoundError",
    "GeosegError",
    "GeosegIOError",
    "JobLockedError",
    "LockedError",
    "ModelExistsError",
    "ModelNotFoundError",
    "OutputExistsError",
    "QuantizationError",
    "SceneError",
    "SceneNotFoundError",
]


class GeosegError(Exception):
    """Root of every error geoseg raises on purpose."""


class SceneError(GeosegError, ValueError):
    """The input scene cannot be processed as given (no CRS, all nodata, wrong bands...)."""


class ConfigError(GeosegError, ValueError):
    """An option or setting has an invalid value."""


class CheckpointError(GeosegError, ValueError):
    """A model file is not a usable geoseg checkpoint."""


class QuantizationError(GeosegError, ValueError):
    """An int8 graph's classes agree with fp32 on fewer held-out pixels than required."""


class DatasetError(GeosegError, ValueError):
    """Dataset files exist but cannot be used as given (label values, sizes, bands, unmatched files)."""


class LockedError(GeosegError, RuntimeError):
    """Another geoseg process holds the lock on the same outputs (the command line exits 75: try later)."""


class JobLockedError(LockedError):
    """Another run of the same regional job holds its lock."""


class GeosegIOError(GeosegError, OSError):
    """A file cannot be read or written."""


class SceneNotFoundError(GeosegIOError, FileNotFoundError):
    """The input path does not exist."""


class DatasetNotFoundError(GeosegIOError, FileNotFoundError):
    """A dataset folder or file is missing; the message names the path that was expected."""


class OutputExistsError(GeosegIOError, FileExistsError):
    """An output already exists and overwriting was not requested."""


class ModelNotFoundError(ConfigError, LookupError):
    """No model file or installed model matches what was asked for, or no model was given and none is default."""


class ModelExistsError(OutputExistsError):
    """An installed model already has the requested name and overwriting was not requested."""


class ChecksumError(GeosegIOError, ValueError):
    """A downloaded or copied checkpoint does not have the expected SHA-256."""
