"""The label-free score: how well clusters agree with the neighbour graph.

``CDCClustering.score`` and the choice among restarts both read it: the
mutual information between each sample's cluster and the clusters of its
nearest neighbours. It is 0 when every sample is in one cluster or when the
clusters ignore the neighbourhood, and at most ``log(n_clusters)``, reached by
balanced clusters that no neighbour crosses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import mutual_info_score

from .neighbours import neighbour_search

__all__ = ["neighbour_agreement", "neighbour_graph"]


def neighbour_agreement(
    labels: np.ndarray, neighbors: np.ndarray, rows: np.ndarray | None = None
) -> float:
    """Mutual information (nats) between each sample's cluster and its neighbours'.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
    neighbors : ndarray of shape (n_samples, k) or (n_rows, k)
        Row ``i`` holds the indices of sample ``i``'s neighbours (of sample
        ``rows[i]``'s when ``rows`` is given).
    rows : ndarray of shape (n_rows,), default=None
        The samples whose neighbours ``neighbors`` holds, repeats allowed
        (a bootstrap draw); by default every sample in order.
    """
    if neighbors.shape[1] < 1:
        return 0.0
    k = neighbors.shape[1]
    own = labels if rows is None else labels[rows]
    return float(mutual_info_score(np.repeat(own, k), labels[neighbors.ravel()]))


def neighbour_graph(X: Any, n_neighbors: int, metric: str = "euclidean") -> np.ndarray:
    """The ``n_neighbors`` nearest neighbours of every row of X (an array, a
    memmap or :class:`~skcdc.sources.DatasetRows`) among the others, by the
    search :func:`~skcdc.neighbours.neighbour_search` picks; at most
    ``len(X) - 1`` of them."""
    n_neighbors = min(n_neighbors, X.shape[0] - 1)
    if n_neighbors < 1:
        return np.zeros((X.shape[0], 0), dtype=np.int64)
    neighbors, _ = neighbour_search(X, n_neighbors, metric=metric, device=torch.device("cpu"))
    return neighbors.numpy()
