"""Vector input that need not fit in memory: memmaps, ``.npy`` files, datasets.

An in-memory array is moved to the training device whole, as it always was.
A read-only ``np.memmap``, the path of a ``.npy`` file (opened as one) and a
map-style ``torch.utils.data.Dataset`` of vectors are *streamed*: training,
the neighbour search and prediction read the rows they need, a batch or a
block at a time, and never copy the whole input.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sized
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "DatasetRows",
    "fingerprint",
    "float32_tensor",
    "is_streamed",
    "is_vector_dataset",
    "iter_blocks",
    "n_rows",
    "open_vectors",
    "read_block",
    "read_rows",
    "row_range",
]


class DatasetRows:
    """A map-style dataset of vectors read like a 2-D array.

    Items are 1-D arrays or tensors, or ``(vector, label)`` pairs whose label
    is ignored. Indexing with a slice or an integer array returns a float32
    array of those rows; a dataset with ``__getitems__`` is asked for a whole
    batch at once.
    """

    def __init__(self, dataset: Dataset) -> None:
        if not isinstance(dataset, Sized):
            raise TypeError("The dataset must have a length (a map-style torch Dataset).")
        self.dataset = dataset
        first = _vector_of(dataset[0])
        self.shape = (len(dataset), first.shape[0])
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        keys = range(*key.indices(len(self))) if isinstance(key, slice) else np.asarray(key)
        indices = [int(i) for i in keys]
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(indices) if getitems is not None else [self.dataset[i] for i in indices]
        if not items:
            return np.zeros((0, self.shape[1]), dtype=np.float32)
        return np.stack([_vector_of(item) for item in items]).astype(np.float32, copy=False)


def _vector_of(item: Any) -> np.ndarray:
    """The vector of a dataset item: the item itself or the first of a pair."""
    if isinstance(item, (tuple, list)):
        item = item[0]
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    return np.asarray(item)


def is_vector_dataset(X: Any) -> bool:
    """A map-style dataset whose first item is a vector (not an image)."""
    if not isinstance(X, Dataset) or not isinstance(X, Sized):
        return False
    try:
        return len(X) > 0 and _vector_of(X[0]).ndim == 1
    except TypeError:
        return False


def is_npy_path(X: Any) -> bool:
    return isinstance(X, (str, os.PathLike)) and Path(X).suffix == ".npy"


def open_vectors(X: Any) -> Any:
    """A ``.npy`` path opened as a read-only memmap and a vector dataset
    wrapped as :class:`DatasetRows`; anything else unchanged."""
    if is_npy_path(X):
        path = Path(X)
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r} does not exist: pass the path of a .npy file.")
        return np.load(path, mmap_mode="r")
    if is_vector_dataset(X):
        return DatasetRows(X)
    return X


def is_streamed(X: Any) -> bool:
    """Whether X is read a block at a time rather than held in memory."""
    return isinstance(X, (np.memmap, DatasetRows))


def iter_blocks(data: Any, block_rows: int = 65536):
    """The rows of an array-like as float32 arrays of ``block_rows`` rows."""
    for start in range(0, n_rows(data), block_rows):
        yield _float32(data[start : start + block_rows])


def _float32(rows: Any) -> np.ndarray:
    """Rows as a writable, C-contiguous float32 array (a slice of a read-only
    memmap is a view of the file, and torch wants memory it may write)."""
    block = np.asarray(rows, dtype=np.float32)
    if not (block.flags.writeable and block.flags.c_contiguous):
        block = np.array(block, order="C")
    return block


def float32_tensor(X: Any) -> torch.Tensor:
    """An in-memory array as a float32 tensor, sharing its memory where it can.

    A read-only array (``setflags(write=False)``, a frozen buffer) is shared
    too: what reads it here never writes to it, so torch's warning that it
    might is silenced rather than the array copied.
    """
    array = np.ascontiguousarray(X, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def fingerprint(data: Any) -> str:
    """A hash of every row of a streamed input, read block by block (streamed
    images by their own ``blocks``)."""
    digest = hashlib.sha256(repr(tuple(data.shape)).encode())
    blocks = data.blocks(4096) if hasattr(data, "blocks") else iter_blocks(data)
    for block in blocks:
        digest.update(np.asarray(block).tobytes())
    return digest.hexdigest()


def n_rows(data: Any) -> int:
    return int(data.shape[0])


def read_block(
    data: Any, start: int | np.ndarray, stop: int | None, device: torch.device | str
) -> torch.Tensor:
    """Rows ``start:stop`` (or the rows of an index array ``start``) of a
    tensor or an array-like as float32 on ``device``."""
    key = slice(start, stop) if stop is not None else start
    if isinstance(data, torch.Tensor):
        index = key if isinstance(key, slice) else torch.as_tensor(key, device=data.device)
        return data[index].to(device=device, dtype=torch.float32)
    return torch.from_numpy(_float32(data[key])).to(device)


def row_range(data: Any, rows: slice) -> Any:
    """The block ``rows`` of a tensor or an array-like, without reading it:
    a view of a tensor or an array (a memmap stays one), and of other
    array-likes an object that reads its rows when indexed."""
    if rows == slice(0, n_rows(data)):
        return data
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return data[rows]
    return _RowRange(data, rows.start, rows.stop)


class _RowRange:
    """Rows ``start:stop`` of an array-like, read when indexed."""

    def __init__(self, data: Any, start: int, stop: int) -> None:
        self.data, self.start = data, start
        self.shape = (stop - start, *data.shape[1:])
        self.dtype = data.dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            return self.data[self.start + start : self.start + stop : step]
        return self.data[np.asarray(key) + self.start]


def read_rows(data: Any, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The rows ``index`` (a tensor of row numbers) of a streamed input, on ``device``."""
    rows = read_block(data, index.cpu().numpy(), None, torch.device("cpu"))
    if device.type == "cuda":
        rows = rows.pin_memory()
    return rows.to(device, non_blocking=True)
