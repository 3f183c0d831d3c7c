"""Clustering metrics: accuracy under the best matching, a report, scorers.

Cluster ids are arbitrary, so accuracy is measured after matching each cluster
to one class with the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``)
on the contingency table. NMI and ARI come from scikit-learn unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import (
    adjusted_rand_score,
    make_scorer,
    normalized_mutual_info_score,
)
from sklearn.metrics.cluster import contingency_matrix
from sklearn.utils.validation import check_consistent_length, column_or_1d

__all__ = [
    "ClusteringReport",
    "accuracy_scorer",
    "adjusted_rand_scorer",
    "cluster_accuracy_score",
    "clustering_report",
    "matched_confusion_matrix",
    "nmi_scorer",
]


def _check_labels(labels_true, labels_pred) -> tuple[np.ndarray, np.ndarray]:
    labels_true = column_or_1d(labels_true)
    labels_pred = column_or_1d(labels_pred)
    check_consistent_length(labels_true, labels_pred)
    if labels_true.size == 0:
        raise ValueError("labels_true and labels_pred are empty; pass at least one label.")
    return labels_true, labels_pred


def _matching(labels_true, labels_pred):
    """Contingency table (classes x clusters, both sorted) and its best
    one-to-one matching, as the row and column indices of the matched cells."""
    table = contingency_matrix(labels_true, labels_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return table, rows, cols


def cluster_accuracy_score(labels_true, labels_pred) -> float:
    """Clustering accuracy: the fraction of samples whose cluster, matched
    one-to-one to a class by the Hungarian algorithm, is their class.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth classes, of any hashable type.
    labels_pred : array-like of shape (n_samples,)
        Cluster labels. Their number may differ from the number of classes;
        unmatched clusters count as errors.

    Returns
    -------
    float
        In ``[0, 1]``; 1 is a perfect clustering up to relabelling.

    Examples
    --------
    >>> cluster_accuracy_score([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    labels_true, labels_pred = _check_labels(labels_true, labels_pred)
    table, rows, cols = _matching(labels_true, labels_pred)
    return float(table[rows, cols].sum() / labels_true.size)


def matched_confusion_matrix(labels_true, labels_pred) -> np.ndarray:
    """Confusion matrix with clusters reordered to face their matched class.

    Parameters
    ----------
    labels_true, labels_pred : array-like of shape (n_samples,)

    Returns
    -------
    ndarray of shape (n_classes, n_columns)
        Row ``i`` is the ``i``-th class in sorted order; column ``i`` is the
        cluster matched to it, so the diagonal holds the correctly clustered
        counts. Clusters matched to no class follow, in sorted order.
    """
    labels_true, labels_pred = _check_labels(labels_true, labels_pred)
    table, rows, cols = _matching(labels_true, labels_pred)
    empty = np.zeros((table.shape[0], 1), dtype=table.dtype)
    # rows come back sorted, so cols[i] is the cluster matched to class rows[i].
    matched = dict(zip(rows, cols))
    columns = [table[:, [matched[i]]] if i in matched else empty for i in range(table.shape[0])]
    unmatched = sorted(set(range(table.shape[1])) - set(cols))
    columns += [table[:, [c]] for c in unmatched]
    return np.hstack(columns)


@dataclass
class ClusteringReport:
    """ACC, NMI, ARI and the matched confusion matrix of one clustering."""

    accuracy: float
    nmi: float
    ari: float
    n_clusters: int
    confusion_matrix: np.ndarray = field(repr=False)

    def as_dict(self) -> dict[str, float]:
        """The scalar metrics, for a DataFrame row or a log line."""
        return {"ACC": self.accuracy, "NMI": self.nmi, "ARI": self.ari}

    def __str__(self) -> str:
        return (
            f"ACC {self.accuracy:.3f}  NMI {self.nmi:.3f}  ARI {self.ari:.3f}  "
            f"({self.n_clusters} clusters)"
        )


def clustering_report(labels_true, labels_pred) -> ClusteringReport:
    """All the usual external metrics of a clustering at once.

    Parameters
    ----------
    labels_true, labels_pred : array-like of shape (n_samples,)

    Returns
    -------
    ClusteringReport
    """
    labels_true, labels_pred = _check_labels(labels_true, labels_pred)
    return ClusteringReport(
        accuracy=cluster_accuracy_score(labels_true, labels_pred),
        nmi=float(normalized_mutual_info_score(labels_true, labels_pred)),
        ari=float(adjusted_rand_score(labels_true, labels_pred)),
        n_clusters=int(np.unique(labels_pred).size),
        confusion_matrix=matched_confusion_matrix(labels_true, labels_pred),
    )


#: ``GridSearchCV(..., scoring=accuracy_scorer)`` scores a clusterer by the
#: matched accuracy of ``predict`` on the held-out fold against its labels.
accuracy_scorer = make_scorer(cluster_accuracy_score)
nmi_scorer = make_scorer(normalized_mutual_info_score)
adjusted_rand_scorer = make_scorer(adjusted_rand_score)
