"""Views: how the two members of a positive pair are made.

For vector input (frozen-feature mode) the positive of a sample is one of its
``k`` nearest neighbours in the input space, the practice of SCAN and TEMI,
with optional Gaussian feature noise on both members.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["METRICS", "NeighbourViews", "knn_indices"]

METRICS = ("euclidean", "cosine")


def knn_indices(
    queries: torch.Tensor,
    reference: torch.Tensor,
    n_neighbors: int,
    *,
    metric: str = "euclidean",
    exclude_self: bool = False,
    block_size: int = 1024,
) -> torch.Tensor:
    """Exact k nearest neighbours of ``queries`` among ``reference``.

    Distances are computed one block of queries at a time on the tensors'
    device, so memory stays at ``block_size x len(reference)``, never
    ``N x N``. The queries may be any batch: a whole data set, a local batch,
    or one shard of a distributed run.

    Parameters
    ----------
    queries : Tensor of shape (Q, D)
    reference : Tensor of shape (R, D)
    n_neighbors : int
        How many neighbours to return per query.
    metric : {"euclidean", "cosine"}, default="euclidean"
    exclude_self : bool, default=False
        If True, ``queries`` must be ``reference`` itself (row ``i`` of one is
        row ``i`` of the other) and each point is not its own neighbour.
    block_size : int, default=1024
        Queries per block.

    Returns
    -------
    LongTensor of shape (Q, n_neighbors)
        Indices into ``reference``, nearest first.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    if metric == "cosine":
        queries = F.normalize(queries, dim=1)
        reference = F.normalize(reference, dim=1)
    reference_sq = (reference * reference).sum(1)
    out = []
    for start in range(0, queries.shape[0], block_size):
        block = queries[start : start + block_size]
        # ||q||^2 is constant per row, so it does not change the ranking.
        distance = reference_sq[None, :] - 2.0 * block @ reference.T
        if exclude_self:
            rows = torch.arange(block.shape[0], device=block.device)
            distance[rows, rows + start] = float("inf")
        out.append(distance.topk(n_neighbors, dim=1, largest=False).indices)
    return torch.cat(out)


class NeighbourViews:
    """Positive pairs from nearest neighbours, for vector input.

    Parameters
    ----------
    data : Tensor of shape (N, D)
        The training set, already on the training device.
    n_neighbors : int
        The positive of a sample is drawn uniformly from its ``n_neighbors``
        nearest neighbours (the sample itself excluded).
    metric : {"euclidean", "cosine"}
        Distance for the neighbour search.
    noise : float
        Standard deviation of Gaussian noise added to both views, relative to
        each feature's standard deviation over the training set.
    """

    def __init__(
        self, data: torch.Tensor, n_neighbors: int, *, metric: str = "euclidean", noise: float = 0.0
    ) -> None:
        self.data = data
        self.n_neighbors = min(n_neighbors, data.shape[0] - 1)
        self.noise = noise
        self.neighbors = (
            knn_indices(data, data, self.n_neighbors, metric=metric, exclude_self=True)
            if self.n_neighbors > 0
            else torch.arange(data.shape[0], device=data.device)[:, None]
        )
        self._scale = data.std(dim=0, keepdim=True) if data.shape[0] > 1 else None

    def __call__(
        self, index: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two views of the samples ``index`` (a batch of row indices)."""
        choice = torch.randint(
            self.neighbors.shape[1],
            (index.shape[0],),
            generator=generator,
            device=_device(generator),
        ).to(self.data.device)
        anchor = self.data[index]
        positive = self.data[self.neighbors[index, choice]]
        if self.noise > 0 and self._scale is not None:
            anchor = anchor + self._noise_like(anchor, generator)
            positive = positive + self._noise_like(positive, generator)
        return anchor, positive

    def _noise_like(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, device=_device(generator)).to(x.device)
        return noise * self._scale * self.noise


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")
