"""Warnings a fit gives about its own result: stopped early, or collapsed."""

from __future__ import annotations

import warnings

import numpy as np

from .exceptions import CollapseWarning, TrainingStoppedWarning
from .training.engine import INTERRUPTED

__all__ = ["warn_collapse", "warn_stopped"]


def warn_stopped(stop_reason: str | None, n_iter: int, planned: int, learning_rate: float) -> None:
    """Say that training ended before its last epoch, and why."""
    if stop_reason is None:
        return
    if stop_reason == INTERRUPTED:
        message = (
            f"Training was interrupted after {n_iter} of {planned} epochs. The estimator "
            "keeps the weights of the last completed epoch and can predict; fit again for "
            "the full run (with checkpoint_dir set it resumes)."
        )
    else:
        message = (
            f"The training loss became NaN or infinite in epoch {n_iter + 1}; the weights of "
            f"epoch {n_iter} were kept. Likely causes: learning_rate={learning_rate} too "
            "high, tau_c or tau_z too low, or reduced precision (mixed_precision)."
        )
    warnings.warn(message, TrainingStoppedWarning, stacklevel=3)


def dominant_share(n_clusters: int) -> float:
    """Share of the samples above which one cluster counts as having collapsed
    the others: a majority, but 90% for two clusters, where 60/40 is normal."""
    return 0.9 if n_clusters == 2 else 0.5


def warn_collapse(labels: np.ndarray, n_clusters: int, equipartition: str) -> None:
    """Warn when clusters are empty or one cluster took most samples."""
    if n_clusters < 2:
        return
    sizes = np.bincount(labels, minlength=n_clusters)
    n_empty = int((sizes == 0).sum())
    largest = sizes.max() / sizes.sum()
    if n_empty == 0 and largest <= dominant_share(n_clusters):
        return
    found = (
        f"{n_empty} of {n_clusters} clusters are empty"
        if n_empty
        else f"one cluster holds {largest:.0%} of the samples"
    )
    if equipartition == "sinkhorn":
        # Training already split every batch equally: what drifted is the argmax.
        stronger = "train longer (epochs) so that predictions settle on the balanced assignments"
    else:
        stronger = (
            "strengthen the equal-size prior (raise entropy_weight or use "
            "equipartition='sinkhorn')"
        )
    warnings.warn(
        f"Cluster collapse: {found}. If the data has that many distinct groups, {stronger}, "
        "lower learning_rate, or restart more (n_init); if the groups really are this "
        "unequal, ignore this warning or lower n_clusters.",
        CollapseWarning,
        stacklevel=3,
    )
