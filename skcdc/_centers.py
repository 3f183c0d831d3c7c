"""Per-cluster sums and means of rows, without an (N, K) one-hot in between."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["cluster_sums"]


def cluster_sums(X: np.ndarray, labels: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """The float64 sum of the rows of X in each cluster, (K, D), and the
    cluster sizes, (K,): one sparse product, so memory stays at X's own."""
    n = len(labels)
    assignment = sp.csr_matrix(
        (np.ones(n), (np.asarray(labels, dtype=np.int64), np.arange(n))), shape=(n_clusters, n)
    )
    sums = np.asarray(assignment @ np.asarray(X, dtype=np.float64))
    return sums, np.bincount(labels, minlength=n_clusters)
