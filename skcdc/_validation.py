"""Checks at the estimator's boundary: one clear error before any training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils.validation import validate_data

from .distributed import current_world
from .images import is_image_input, load_images
from .sources import is_streamed, iter_blocks, open_vectors

if TYPE_CHECKING:
    from .estimator import CDCClustering

__all__ = [
    "check_batch_shares",
    "check_float32_range",
    "check_image_shape",
    "check_n_clusters",
    "check_not_a_table",
    "check_streamed_vectors",
    "image_mode",
    "validate_input",
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


def validate_input(estimator: CDCClustering, X: Any, reset: bool) -> Any:
    """X as a float table, a streamed table (:mod:`skcdc.sources`) or a
    (N, C, H, W) image tensor for ``estimator`` (a CDCClustering): with
    ``reset``, as fit sees it, recording the features or the image shape on
    the estimator; otherwise checked against what fit saw."""
    images = image_mode(estimator.mode, X) if reset else hasattr(estimator, "image_shape_")
    if not images:
        X = open_vectors(X)
        if is_streamed(X):
            check_streamed_vectors(
                X, None if reset else estimator.n_features_in_, min_samples=2 if reset else 1
            )
            if reset:
                estimator.n_features_in_ = int(X.shape[1])
        else:
            X = validate_data(
                estimator, X, dtype=[np.float64, np.float32], ensure_min_samples=2 if reset else 1,
                reset=reset,
            )
            check_float32_range(X)
        if reset:
            estimator.__dict__.pop("image_shape_", None)
            if is_streamed(X):
                estimator.__dict__.pop("feature_names_in_", None)
        return X
    if not reset:
        check_not_a_table(X, estimator.image_shape_)
    X = load_images(
        X, layout=estimator.image_layout, num_workers=estimator.num_workers,
        world=current_world(),
    )
    if reset:
        for attribute in ("n_features_in_", "feature_names_in_"):
            estimator.__dict__.pop(attribute, None)
        estimator.image_shape_ = tuple(X.shape[1:])
    else:
        check_image_shape(tuple(X.shape[1:]), estimator.image_shape_)
    return X
