"""Checks at the estimator's boundary: one clear error before any training."""

from __future__ import annotations

from typing import Any

import numpy as np

from .images import is_image_input
from .sources import iter_blocks

__all__ = [
    "check_batch_shares",
    "check_float32_range",
    "check_image_shape",
    "check_n_clusters",
    "check_not_a_table",
    "check_streamed_vectors",
    "image_mode",
]


def image_mode(mode: str, X: Any) -> bool:
    """Whether X is trained on in image mode: ``mode``, or for ``"auto"``
    3-D/4-D arrays, datasets and folders."""
    if mode == "auto":
        return is_image_input(X)
    return mode == "images"


def check_not_a_table(X: Any, image_shape: tuple[int, ...]) -> None:
    """New input of a model fitted on images must be images too."""
    if getattr(X, "ndim", None) == 2:
        raise ValueError(
            f"This CDCClustering was fitted on images of shape {image_shape} "
            "(C, H, W); pass images, not a 2-D table."
        )


def check_image_shape(shape: tuple[int, ...], image_shape: tuple[int, ...]) -> None:
    """New images must have the (C, H, W) shape the model was fitted on."""
    if shape != image_shape:
        raise ValueError(
            f"Images have shape {shape} (C, H, W) but CDCClustering was "
            f"fitted on {image_shape}; resize them to the training size."
        )


def check_n_clusters(n_clusters: int, n_samples: int) -> None:
    if n_clusters > n_samples:
        raise ValueError(
            f"n_samples={n_samples} should be >= n_clusters={n_clusters}: "
            "lower n_clusters or pass more samples."
        )


def check_streamed_vectors(X: Any, n_features: int | None, min_samples: int) -> None:
    """What ``validate_data`` checks of an array, for a streamed input read
    block by block (:mod:`skcdc.sources`): two dimensions, numbers, enough
    rows, the fitted width, finite values in float32's range."""
    if len(X.shape) != 2:
        raise ValueError(
            f"Expected a 2-D table of vectors (n_samples, n_features), got shape {tuple(X.shape)}."
        )
    if np.dtype(X.dtype).kind not in "fiub":
        raise ValueError(f"Vectors must be numeric; got dtype {X.dtype}.")
    if X.shape[0] < min_samples:
        raise ValueError(
            f"Found array with {X.shape[0]} sample(s) (shape={tuple(X.shape)}) while a minimum "
            f"of {min_samples} is required."
        )
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but CDCClustering is expecting {n_features} "
            "features as input."
        )
    for block in iter_blocks(X):
        if not np.isfinite(block).all():
            raise ValueError(
                "Input X contains NaN or infinity (or values beyond float32's range); "
                "remove or impute them first, e.g. with sklearn's SimpleImputer."
            )


def check_batch_shares(batch_size: int, n_processes: int) -> None:
    """Every process of a distributed fit forwards at least one sample a step."""
    if batch_size < n_processes:
        raise ValueError(
            f"batch_size={batch_size} is the global batch, shared out among {n_processes} "
            f"processes: each needs at least one sample. Raise batch_size to at least "
            f"{n_processes}, or launch fewer processes."
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
