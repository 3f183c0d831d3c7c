"""A consensus of restarts: one partition from several trained runs.

With several restarts (``n_init``) on vectors, a fit also forms the consensus
of its runs and keeps it when its label-free score is at least the best
run's, as it usually is when runs disagree. The runs' cluster probabilities are
concatenated, one block per run, and k-means finds the consensus clusters in
that space, a standard cluster-ensemble construction that needs no matching
of one run's cluster numbers to another's. Where the runs disagree, a sample
goes with the clusters most runs put it in: one run that merged two classes
does not decide the result, but when most runs merged the same pair, the
consensus merges it too, which is why the score decides between the consensus
and the best run.

:class:`RestartConsensus` is the fitted result as a network: it runs every
kept network and returns, as logits, the log-posterior of the isotropic
Gaussian mixture that k-means implies (equal weights, one variance), so that
the arg-max is the nearest consensus centre and ``softmax`` gives a
probability of each consensus cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

from .._centers import cluster_sums

__all__ = ["RestartConsensus", "fit_consensus"]

# As KMeans' own default n_init for a small problem: the concatenated
# probabilities are a few dozen columns, so ten starts cost milliseconds.
_KMEANS_N_INIT = 10
# A k-means++ start costs about N * K * (n_runs * K) * log K: beyond this
# many clusters one k-means starts from the reference run's partition instead.
_KMEANS_PLUSPLUS_MAX_CLUSTERS = 32


class RestartConsensus(nn.Module):
    """Several trained networks read as one: their consensus clusters.

    Parameters
    ----------
    runs : sequence of nn.Module
        The trained networks; each returns ``(logits, z)``, logits of shape
        (B, n_clusters) or, with several heads, (B, n_heads, n_clusters).
    heads : sequence of int
        The head kept from each run.
    centers : Tensor of shape (n_clusters, n_runs * n_clusters)
        The consensus centres in the space of concatenated probabilities.
    variance : float
        The per-coordinate variance of that space around its centres.
    reference : int
        The run whose instance vectors are returned (the best-scored one).
    """

    heads: torch.Tensor
    centers: torch.Tensor
    variance: torch.Tensor
    reference: torch.Tensor

    def __init__(
        self,
        runs: Sequence[nn.Module],
        heads: Sequence[int],
        centers: torch.Tensor,
        variance: float,
        reference: int,
    ) -> None:
        super().__init__()
        self.runs = nn.ModuleList(runs)
        # Buffers, so that a state dict restores them into a skeleton.
        self.register_buffer("heads", torch.as_tensor(heads, dtype=torch.long))
        self.register_buffer("centers", torch.as_tensor(centers, dtype=torch.float32))
        self.register_buffer("variance", torch.as_tensor(variance, dtype=torch.float32))
        self.register_buffer("reference", torch.as_tensor(reference, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        run_logits = []
        for index, (run, head) in enumerate(zip(self.runs, self.heads, strict=True)):
            logits, z = run(x)
            run_logits.append(logits[:, int(head)] if logits.dim() == 3 else logits)
            if index == int(self.reference):
                instances = z
        return self.combine(run_logits), instances

    def combine(self, run_logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """The consensus logits from each run's logits (its kept head's), so
        that runs already evaluated need not run again."""
        probabilities = [torch.softmax(logits.float(), dim=1) for logits in run_logits]
        distances = torch.cdist(torch.cat(probabilities, dim=1), self.centers).square()
        return -distances / (2 * self.variance)


def fit_consensus(
    probabilities: Sequence[np.ndarray], random_state: int, reference: int = 0
) -> tuple[np.ndarray, float, np.ndarray]:
    """The consensus of runs' cluster probabilities: centres, variance, labels.

    Parameters
    ----------
    probabilities : sequence of ndarray of shape (n_samples, n_clusters)
        Each run's cluster probabilities on the training samples.
    random_state : int
        Seed of k-means.
    reference : int, default=0
        The run whose partition starts k-means when there are many clusters.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_runs * n_clusters)
    variance : float
        k-means' inertia per sample and coordinate (floored, so that a
        consensus every run agrees on exactly still has a finite posterior).
    labels : ndarray of shape (n_samples,)
        The consensus cluster of each sample: its nearest centre.
    """
    stacked = np.concatenate([np.asarray(p, dtype=np.float32) for p in probabilities], axis=1)
    n_clusters = probabilities[0].shape[1]
    if n_clusters <= _KMEANS_PLUSPLUS_MAX_CLUSTERS:
        kmeans = KMeans(n_clusters, n_init=_KMEANS_N_INIT, random_state=random_state)
    else:
        init = _partition_means(stacked, probabilities[reference].argmax(axis=1), n_clusters)
        kmeans = KMeans(n_clusters, init=init, n_init=1, random_state=random_state)
    kmeans.fit(stacked)
    variance = max(kmeans.inertia_ / stacked.size, 1e-6)
    return kmeans.cluster_centers_.astype(np.float32), float(variance), kmeans.labels_


def _partition_means(X: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """The mean row of each cluster of ``labels``; an empty cluster takes a row
    of the largest cluster, so that k-means starts with ``n_clusters`` centres."""
    sums, sizes = cluster_sums(X, labels, n_clusters)
    centers = sums / np.maximum(sizes, 1)[:, None]
    empty = np.flatnonzero(sizes == 0)
    if empty.size:
        donors = np.flatnonzero(labels == sizes.argmax())
        centers[empty] = X[donors[: empty.size]]
    return centers.astype(X.dtype)
