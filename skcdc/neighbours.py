"""Nearest-neighbour search for the positives of vector input, at any size.

Two searches give the same result up to the recall of the second:

- :func:`knn_indices`, exact, in torch, blocked over the queries *and* the
  reference so that its memory is ``query_block x reference_block`` floats
  whatever the number of rows. Its work grows with ``N^2``: the default where
  that is cheap (up to :data:`EXACT_MAX_ROWS` rows on a CPU; on a GPU at any
  size, where a million rows take seconds to minutes).
- :func:`hnsw_indices`, approximate, with faiss' HNSW graph over vectors
  quantised to 8 bits (the optional extra ``pip install "skcdc[faiss]"``),
  whose work grows with ``N log N`` and whose memory is a quarter of the data's.

:func:`neighbour_search` picks one, runs it, and reports which ran, how long
it took and its recall against the exact search on a sample of the rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .distributed import SINGLE, World
from .sources import n_rows, read_block, row_range

__all__ = [
    "EXACT_MAX_ROWS",
    "METRICS",
    "NeighbourSearch",
    "hnsw_indices",
    "knn_indices",
    "neighbour_search",
]

METRICS = ("euclidean", "cosine")
# On a CPU the exact search of 100000 rows of a few hundred features takes
# a couple of minutes on two cores; beyond, the approximate search is used
# when faiss is installed.
EXACT_MAX_ROWS = 100_000
# Distances held at once by the exact search: 2048 x 16384 floats, 128 MB.
QUERY_BLOCK = 2048
REFERENCE_BLOCK = 16384
# HNSW: links per node and search breadth.
HNSW_M = 32
HNSW_EF_SEARCH = 96
HNSW_EF_CONSTRUCTION = 80
SQ_TRAINING_ROWS = 65536
RECALL_SAMPLE = 1000


def knn_indices(
    queries: Any,
    reference: Any,
    n_neighbors: int,
    *,
    metric: str = "euclidean",
    exclude_self: bool = False,
    query_offset: int = 0,
    device: torch.device | str | None = None,
    query_block: int = QUERY_BLOCK,
    reference_block: int = REFERENCE_BLOCK,
    progress: Any = None,
) -> torch.Tensor:
    """Exact k nearest neighbours of ``queries`` among ``reference``.

    Both are tensors, arrays (a read-only ``np.memmap`` included) or
    :class:`~skcdc.sources.DatasetRows`; they are read a block at a time, so
    memory stays at ``query_block x reference_block`` distances plus one
    block of each, never ``N x N`` nor a whole memmap.

    Parameters
    ----------
    queries : tensor or array of shape (Q, D)
    reference : tensor or array of shape (R, D)
    n_neighbors : int
        How many neighbours to return per query.
    metric : {"euclidean", "cosine"}, default="euclidean"
    exclude_self : bool, default=False
        If True, ``queries`` must be rows of ``reference`` (row ``i`` of one is
        row ``query_offset + i`` of the other) and each point is not its own
        neighbour.
    query_offset : int, default=0
        Where the queries start in ``reference``, with ``exclude_self``.
    device : torch.device, default=None
        Where distances are computed; by default the queries' device (the
        CPU for arrays).
    query_block, reference_block : int
        Rows of each side per block.
    progress : tqdm-like, default=None
        Updated by the number of queries done after each query block.

    Returns
    -------
    LongTensor of shape (Q, n_neighbors)
        Indices into ``reference``, nearest first, on ``device``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    if device is None:
        device = queries.device if isinstance(queries, torch.Tensor) else torch.device("cpu")
    n_reference = n_rows(reference)
    # One block of the reference when it fits: read once, not once per query block.
    single = n_reference <= reference_block
    cached = _block(reference, 0, n_reference, metric, device) if single else None
    out = []
    for q_start in range(0, n_rows(queries), query_block):
        block, _ = _block(queries, q_start, q_start + query_block, metric, device)
        best_d = torch.full((block.shape[0], 0), float("inf"), device=device)
        best_i = torch.zeros((block.shape[0], 0), dtype=torch.long, device=device)
        for r_start in range(0, n_reference, reference_block):
            ref, ref_sq = (
                cached
                if cached is not None
                else _block(reference, r_start, r_start + reference_block, metric, device)
            )
            # ||q||^2 is constant per row, so it does not change the ranking.
            # One product into one buffer: no (Q, R) temporaries beside it.
            distance = torch.addmm(ref_sq[None, :], block, ref.T, alpha=-2.0)
            if exclude_self:
                rows = torch.arange(block.shape[0], device=device)
                columns = rows + query_offset + q_start - r_start
                inside = (columns >= 0) & (columns < ref.shape[0])
                distance[rows[inside], columns[inside]] = float("inf")
            k = min(n_neighbors, distance.shape[1])
            top = distance.topk(k, dim=1, largest=False)
            best_d = torch.cat([best_d, top.values], dim=1)
            best_i = torch.cat([best_i, top.indices + r_start], dim=1)
            if best_d.shape[1] > n_neighbors:
                best_d, order = best_d.topk(n_neighbors, dim=1, largest=False)
                best_i = best_i.gather(1, order)
        # Nearest first, when a single reference block left them unsorted.
        best_d, order = best_d.sort(dim=1)
        out.append(best_i.gather(1, order))
        if progress is not None:
            progress.update(block.shape[0])
    return torch.cat(out)


def _block(
    data: Any, start: int, stop: int, metric: str, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``start:stop`` as float32 on ``device`` (normalised for the
    cosine metric) and their squared norms."""
    block = read_block(data, start, stop, device)
    if metric == "cosine":
        block = F.normalize(block, dim=1)
    return block, (block * block).sum(1)


def hnsw_indices(
    data: Any,
    n_neighbors: int,
    *,
    metric: str = "euclidean",
    rows: slice | None = None,
    block_rows: int = 65536,
    progress: Any = None,
) -> torch.Tensor:
    """Approximate neighbours of every row of ``data`` (or of the ``rows``
    of it) among the others, by faiss' HNSW graph (added and searched a block
    at a time).

    Returns a LongTensor (N, n_neighbors) on the CPU, nearest first. Raises
    ``ImportError`` naming the extra to install when faiss is missing.
    """
    faiss = _faiss()
    n, d = n_rows(data), int(data.shape[1])
    # Vectors kept in 8 bits a coordinate: a quarter of a float copy of the
    # data, at a small cost in recall (reported).
    index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, HNSW_M)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    # The quantiser's ranges from rows spread over the whole input, which may
    # be ordered (by class, by source).
    sample = np.unique(np.linspace(0, n - 1, min(n, SQ_TRAINING_ROWS)).astype(np.int64))
    index.train(_faiss_block(data, sample, None, metric))
    for start in range(0, n, block_rows):
        index.add(_faiss_block(data, start, start + block_rows, metric))
    index.hnsw.efSearch = max(HNSW_EF_SEARCH, n_neighbors + 1)
    rows = rows if rows is not None else slice(0, n)
    out = []
    for start in range(rows.start, rows.stop, block_rows):
        block = _faiss_block(data, start, min(start + block_rows, rows.stop), metric)
        _, found = index.search(block, n_neighbors + 1)
        out.append(_drop_self(found, start, n_neighbors))
        if progress is not None:
            progress.update(block.shape[0])
    return torch.from_numpy(np.concatenate(out))


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "The approximate neighbour search needs faiss: pip install \"skcdc[faiss]\"."
        ) from exc
    return faiss


def _faiss_block(data: Any, start: int | np.ndarray, stop: int | None, metric: str) -> np.ndarray:
    block = read_block(data, start, stop, torch.device("cpu"))
    if metric == "cosine":
        block = F.normalize(block, dim=1)
    return np.ascontiguousarray(block.numpy(), dtype=np.float32)


def _drop_self(found: np.ndarray, start: int, n_neighbors: int) -> np.ndarray:
    """Each row's neighbours without the row itself (or, when the search did
    not return it, without the farthest)."""
    rows = np.arange(start, start + found.shape[0])[:, None]
    is_self = found == rows
    # Keep the first n_neighbors entries that are not the row itself.
    order = np.argsort(is_self, axis=1, kind="stable")[:, :n_neighbors]
    kept = np.take_along_axis(found, order, axis=1)
    # A missing result (-1, from a graph too small) falls back to the row's nearest.
    missing = kept < 0
    if missing.any():
        kept[missing] = np.broadcast_to(kept[:, :1], kept.shape)[missing]
    return kept.astype(np.int64)


@dataclass(frozen=True)
class NeighbourSearch:
    """Which neighbour search ran on the training data, with its cost.

    ``method`` is ``"exact"`` or ``"hnsw"``; ``seconds`` its wall time;
    ``recall`` the share of the exact neighbours it found, measured on
    ``recall_sample`` rows (1.0 for the exact search, which is not measured).
    """

    method: str
    seconds: float
    recall: float
    recall_sample: int


def neighbour_search(
    data: Any,
    n_neighbors: int,
    *,
    metric: str = "euclidean",
    device: torch.device,
    method: str = "auto",
    seed: int = 0,
    verbose: int = 0,
    world: World = SINGLE,
) -> tuple[torch.Tensor, NeighbourSearch]:
    """The ``n_neighbors`` nearest neighbours of every row of ``data`` among
    the others, and a report of the search.

    ``method="auto"``: exact on a GPU and up to :data:`EXACT_MAX_ROWS` rows on
    a CPU; above, HNSW when faiss is installed (else exact, with a warning
    that says how long it may take and what to install). With several
    processes (``world``) each answers the queries of its own block of rows
    and all of them get every answer.
    """
    n = n_rows(data)
    if method == "auto":
        method = _auto_method(n, device)
    shard = world.shard(n)
    progress = _progress(shard.stop - shard.start, verbose and world.is_main, method)
    start = time.perf_counter()
    try:
        if method == "exact":
            neighbors = knn_indices(
                row_range(data, shard), data, n_neighbors, metric=metric, exclude_self=True,
                query_offset=shard.start, device=device, progress=progress,
            )
        else:
            neighbors = hnsw_indices(
                data, n_neighbors, metric=metric, rows=shard, progress=progress
            )
    finally:
        if progress is not None:
            progress.close()
    if world.distributed:
        neighbors = torch.from_numpy(world.gather_rows(neighbors.cpu().numpy()))
    seconds = world.reduce_max(time.perf_counter() - start)
    recall, sample = 1.0, 0
    if method != "exact":
        recall, sample = _recall(data, neighbors, n_neighbors, metric, device, seed, world)
    return neighbors.to(device), NeighbourSearch(method, seconds, recall, sample)


def _auto_method(n: int, device: torch.device) -> str:
    if device.type == "cuda" or n <= EXACT_MAX_ROWS:
        return "exact"
    try:
        _faiss()
    except ImportError:
        import warnings

        warnings.warn(
            f"Searching the neighbours of {n} rows exactly on the CPU; its time grows with "
            "the square of the rows (hours at a million). Install faiss for the "
            "approximate search: pip install \"skcdc[faiss]\".",
            UserWarning,
            stacklevel=4,
        )
        return "exact"
    return "hnsw"


def _recall(
    data: Any,
    neighbors: torch.Tensor,
    n_neighbors: int,
    metric: str,
    device: torch.device,
    seed: int,
    world: World = SINGLE,
) -> tuple[float, int]:
    """Share of the exact neighbours found, on a random sample of rows (the
    same on every rank of ``world``, each searching its block of it)."""
    n = n_rows(data)
    sample = np.sort(np.random.default_rng(seed).choice(n, min(RECALL_SAMPLE, n), replace=False))
    rows = sample[world.shard(len(sample))]
    queries = read_block(data, rows, None, device)
    exact = knn_indices(queries, data, n_neighbors + 1, metric=metric, device=device)
    found = 0
    for row, truth, approx in zip(rows, exact.cpu().numpy(), neighbors[rows].cpu().numpy()):
        truth = truth[truth != row][:n_neighbors]
        found += np.intersect1d(truth, approx).size
    found = int(world.all_sum(torch.tensor([found], dtype=torch.float64)).item())
    return found / (len(sample) * n_neighbors), len(sample)


def _progress(n: int, verbose: int, method: str):
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=n, desc=f"neighbours ({method})", unit="rows", leave=False)
