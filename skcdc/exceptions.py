"""Warnings and errors that skcdc raises, so that callers can filter or catch them."""

from __future__ import annotations

__all__ = [
    "CheckpointMismatchError",
    "CollapseWarning",
    "DivergenceError",
    "IncompatibleFileError",
    "LostRankError",
    "TrainingStoppedWarning",
]


class CollapseWarning(UserWarning):
    """Clusters were left empty, or one cluster took most of the samples."""


class TrainingStoppedWarning(UserWarning):
    """Training ended before its last epoch (interrupted or diverged); the
    estimator keeps the weights of the last completed epoch."""


class DivergenceError(FloatingPointError):
    """The loss became NaN or infinite before any epoch completed."""


class IncompatibleFileError(ValueError):
    """A file written by another, incompatible version of skcdc."""


class CheckpointMismatchError(ValueError):
    """A checkpoint folder holds a run of other data or other parameters."""


class LostRankError(RuntimeError):
    """Another process of a distributed fit stopped or could not be reached."""
