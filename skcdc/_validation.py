"""Checks at the estimator's boundary: one clear error before any training."""

from __future__ import annotations

from typing import Any

import numpy as np

from .images import is_image_input

__all__ = ["check_float32_range", "check_n_clusters", "image_mode"]


def image_mode(mode: str, X: Any) -> bool:
    """Whether X is trained on in image mode: ``mode``, or for ``"auto"``
    3-D/4-D arrays, datasets and folders."""
    if mode == "auto":
        return is_image_input(X)
    return mode == "images"


def check_n_clusters(n_clusters: int, n_samples: int) -> None:
    if n_clusters > n_samples:
        raise ValueError(
            f"n_samples={n_samples} should be >= n_clusters={n_clusters}: "
            "lower n_clusters or pass more samples."
        )


def check_float32_range(X: np.ndarray) -> None:
    """The network computes in float32: refuse values that would become infinite."""
    largest = float(np.abs(X).max()) if X.size else 0.0
    limit = float(np.finfo(np.float32).max)
    if largest > limit:
        raise ValueError(
            f"X has values up to {largest:.3g}, beyond the float32 range ({limit:.3g}) the "
            "network computes in; rescale it first, e.g. with sklearn's StandardScaler."
        )
