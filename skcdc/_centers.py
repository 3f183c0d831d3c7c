"""Per-cluster sums and means of rows, without an (N, K) one-hot in between,
block by block for input of any size."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ._inference import flat, input_blocks, paired_blocks
from .distributed import SINGLE, World

__all__ = ["cluster_centers", "cluster_sums"]


def cluster_sums(X: np.ndarray, labels: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """The float64 sum of the rows of X in each cluster, (K, D), and the
    cluster sizes, (K,): one sparse product, so memory stays at X's own."""
    n = len(labels)
    assignment = sp.csr_matrix(
        (np.ones(n), (np.asarray(labels, dtype=np.int64), np.arange(n))), shape=(n_clusters, n)
    )
    sums = np.asarray(assignment @ np.asarray(X, dtype=np.float64))
    return sums, np.bincount(labels, minlength=n_clusters)


def cluster_centers(
    X: Any, labels: np.ndarray, n_clusters: int, network: nn.Module, world: World = SINGLE
) -> np.ndarray:
    """Per-cluster means in input space, block by block; an empty cluster gets
    its probability-weighted mean (one more pass, only then), or the mean of
    all samples when no sample gives it any probability. Each process of
    ``world`` reads its block of rows; the sums are added up over them."""
    rows = world.shard(len(X))
    sums = np.zeros((n_clusters, int(np.prod(X.shape[1:]))))
    sizes = np.zeros(n_clusters)
    for start, block in _flat_blocks(X, rows):
        block_sums, block_sizes = cluster_sums(block, labels[start : start + len(block)], n_clusters)
        sums += block_sums
        sizes += block_sizes
    sums, sizes = _added_up(world, sums, sizes)
    centers = sums / np.maximum(sizes, 1)[:, None]
    empty = np.flatnonzero(sizes == 0)
    if empty.size:
        soft = np.zeros((empty.size, sums.shape[1]))
        weight = np.zeros(empty.size)
        columns = torch.as_tensor(empty)
        # Block by block: the probabilities of the empty clusters of all X at
        # once would be (N, n_empty).
        blocks = paired_blocks(
            network, X, reduce=lambda out: out[0].float().softmax(1)[:, columns], rows=rows
        )
        for raw, proba in blocks:
            proba = proba.astype(np.float64)
            soft += proba.T @ flat(raw).astype(np.float64, copy=False)
            weight += proba.sum(axis=0)
        soft, weight = _added_up(world, soft, weight)
        mean = sums.sum(axis=0) / max(sizes.sum(), 1)
        centers[empty] = np.where(
            weight[:, None] > 0, soft / np.maximum(weight, 1e-300)[:, None], mean
        )
    return centers


def _added_up(world: World, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each float64 array summed over the processes of ``world``."""
    return tuple(world.all_sum(torch.from_numpy(a)).numpy() for a in arrays)


def _flat_blocks(X: Any, rows: slice):
    """``(start, rows)`` of the ``rows`` of X as float64 rows (images
    flattened, in [0, 1]), in the blocks of :func:`~skcdc._inference.input_blocks`."""
    start = rows.start
    for block in input_blocks(X, rows):
        yield start, flat(block).astype(np.float64, copy=False)
        start += len(block)
