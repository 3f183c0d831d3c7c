"""Real data sets for examples and benchmarks, loaded from what installs offline.

Nothing here downloads: each loader reads data that ships inside an installed
package and says which package to install when it is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset", "load_digits_features"]


@dataclass
class Dataset:
    """A data set with its ground truth, for benchmarks and examples."""

    name: str
    X: np.ndarray
    y: np.ndarray
    description: str

    @property
    def n_clusters(self) -> int:
        """Number of ground-truth classes."""
        return int(np.unique(self.y).size)


def load_digits_features() -> Dataset:
    """scikit-learn's bundled digits as 64 raw pixel features (1797 x 64)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return Dataset("digits", X.astype(np.float32), y, "scikit-learn digits, 8x8 pixels, 64-d")
