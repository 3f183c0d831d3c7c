"""The k-means floor: a fit on vectors keeps k-means' partition of its input
unless a label-free check rates the trained partition clearly above it.

A user who picks :class:`~skcdc.CDCClustering` over ``KMeans`` should not
end up with worse clusters. After the runs (and their consensus), a fit on
vectors also runs k-means on its input and compares the two partitions by
their agreement with *held-out* neighbours: those of ranks
``n_neighbors + 1`` to ``HELD_OUT_FACTOR * n_neighbors``. The network was
trained to agree with the first ``n_neighbors`` (its positive pairs), so a
score read on them rates any trained network above k-means whatever the two
are worth; the next neighbours were never paired, and rate both more alike.
They still lie close to the positives, so a little of that bias remains, and
the score of either partition is an estimate from one sample of rows: the
trained partition is kept only when it wins by at least ``Z_MARGIN`` standard
errors of the difference (a paired bootstrap over the rows), and k-means' is
kept otherwise, the baseline unless the evidence is clear.

:class:`NearestCentroid` is the kept k-means partition as a network, so that
``predict``, ``predict_proba``, ``transform`` and the saved model work as for
any fit: its logits are the log-posterior of the isotropic Gaussian mixture
that k-means implies (equal weights, one variance), and its instance part is
the trained network's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

from .._inference import module_device
from ..distributed import SINGLE, World
from ..scoring import neighbour_agreement
from ..sources import float32_tensor
from ..views import NeighbourViews

if TYPE_CHECKING:
    from .stages import Result

__all__ = ["HELD_OUT_FACTOR", "NearestCentroid", "centroid_logits", "kmeans_floor"]

# The held-out neighbours run from rank n_neighbors + 1 to this many times
# n_neighbors: as many again as the positives, twice over.
HELD_OUT_FACTOR = 3
# The starts of KMeans' own long-standing default.
KMEANS_N_INIT = 10
# The trained partition must beat k-means' held-out agreement by this many
# standard errors, estimated from this many bootstrap draws of the rows.
Z_MARGIN = 2.0
BOOTSTRAP_DRAWS = 30


class NearestCentroid(nn.Module):
    """k-means centres read as a network that returns ``(logits, z)``.

    Parameters
    ----------
    network : nn.Module
        The trained network whose instance vectors are returned.
    centers : Tensor of shape (n_clusters, n_features)
        The k-means centres, in input space.
    variance : float or Tensor
        The per-coordinate variance of the input around its centres.
    """

    centers: torch.Tensor
    variance: torch.Tensor

    def __init__(
        self, network: nn.Module, centers: torch.Tensor, variance: float | torch.Tensor
    ) -> None:
        super().__init__()
        self.network = network
        # Buffers, so that a state dict restores them into a skeleton.
        self.register_buffer("centers", torch.as_tensor(centers, dtype=torch.float32))
        self.register_buffer("variance", torch.as_tensor(variance, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, z = self.network(x)
        return centroid_logits(x.float(), self.centers, self.variance), z


def centroid_logits(
    x: torch.Tensor, centers: torch.Tensor, variance: torch.Tensor
) -> torch.Tensor:
    distances = (x * x).sum(1, keepdim=True) - 2 * x @ centers.T + (centers**2).sum(1)
    return -distances.clamp_min(0) / (2 * variance)


def agreement_gap_error(
    trained: np.ndarray, other: np.ndarray, neighbors: np.ndarray, seed: int
) -> float:
    """Standard error of ``agreement(trained) - agreement(other)`` on the
    graph ``neighbors``, by a paired bootstrap: both partitions are scored on
    the same draws of rows (with their neighbours)."""
    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(BOOTSTRAP_DRAWS):
        rows = rng.integers(0, len(trained), len(trained))
        gaps.append(
            neighbour_agreement(trained, neighbors[rows], rows=rows)
            - neighbour_agreement(other, neighbors[rows], rows=rows)
        )
    return float(np.std(gaps))


def kmeans_floor(
    result: Result,
    X: np.ndarray,
    views: NeighbourViews,
    n_clusters: int,
    seed: int,
    world: World = SINGLE,
) -> Result:
    """``result`` with its partition replaced by k-means' unless the trained
    one agrees clearly better with the held-out neighbours; either way the
    result records both scores. Every rank of ``world`` ends with rank 0's
    k-means."""
    run = result.run
    kmeans = KMeans(n_clusters, n_init=KMEANS_N_INIT, random_state=seed).fit(X)
    centers = torch.as_tensor(kmeans.cluster_centers_, dtype=torch.float32)
    variance = torch.tensor(kmeans.inertia_ / X.size, dtype=torch.float32).clamp_min(1e-12)
    # sklearn's threads may split ties differently on different machines.
    world.broadcast([centers, variance])
    network = NearestCentroid(run.network, centers, float(variance))
    network = network.to(module_device(run.network))
    # From X alone: no second pass of the trained network over it.
    logits = centroid_logits(float32_tensor(X), centers, variance).numpy()
    labels = logits.argmax(axis=1).astype(np.int32)
    # The neighbours no positive pair joined.
    held_out = views.held_out.cpu().numpy()
    scores = (neighbour_agreement(run.labels, held_out), neighbour_agreement(labels, held_out))
    result = replace(result, floor_scores=scores)
    error = agreement_gap_error(run.labels, labels, held_out, seed)
    # Identical partitions tie with no error: the trained one stays.
    if scores[0] - scores[1] >= Z_MARGIN * error:
        return result
    kept = replace(run, network=network, labels=labels, logits=logits)
    return replace(result, run=kept, floor=True)

