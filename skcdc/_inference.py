"""Running a network over validated input in blocks, in evaluation mode."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from .distributed import SINGLE, World
from .images import StreamedImages
from .views import to_float_images

__all__ = [
    "flat",
    "forward",
    "input_blocks",
    "is_images",
    "logits_of",
    "module_device",
    "output_blocks",
    "paired_blocks",
    "predict_labels",
    "predict_outputs",
    "softmax",
]

# Rows per forward pass at prediction time: large enough to keep a GPU busy,
# small enough that the activations of the default network stay in the tens of MB.
BLOCK_ROWS = 4096
BLOCK_IMAGES = 512


def forward(network: nn.Module, X: Any, world: World = SINGLE) -> tuple[np.ndarray, np.ndarray]:
    """Logits and instance vectors of validated X (a table or images); with
    several processes (``world``), each computes those of its block of rows
    and all get every row's."""
    outputs = list(output_blocks(network, X, rows=world.shard(len(X))))
    logits = np.concatenate([l for l, _ in outputs])
    z = np.concatenate([z for _, z in outputs])
    return world.gather_rows(logits), world.gather_rows(z)


def predict_labels(network: nn.Module, X: Any, world: World = SINGLE) -> np.ndarray:
    """The argmax of the logits of validated X as int32, taken block by block
    on the device, so that no (N, K) array is ever made. With several
    processes (``world``), each labels its block of rows and all get every
    label."""
    rows = world.shard(len(X))
    blocks = list(output_blocks(network, X, lambda out: logits_of(out).argmax(dim=1).int(), rows))
    labels = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int32)
    return world.gather_rows(labels)


def predict_outputs(network: nn.Module, X: Any, world: World = SINGLE) -> np.ndarray:
    """The cluster probabilities of validated X, followed by the instance
    vectors when ``network`` returns ``(logits, z)``: the softmax is taken on
    the device block by block and each block written into one array (float64
    for float64 tables, float32 otherwise), so that no (N, K) logits array,
    nor a concatenation of blocks, is ever made. With several processes (``world``), each computes its block
    of rows and all get every row."""

    def probabilities(out: Any) -> torch.Tensor:
        proba = torch.softmax(logits_of(out).float(), dim=1)
        return proba if isinstance(out, torch.Tensor) else torch.cat([proba, out[1].float()], 1)

    dtype = np.float64 if getattr(X, "dtype", None) == np.float64 else np.float32
    start, stop, _ = world.shard(len(X)).indices(X.shape[0])
    out: np.ndarray | None = None
    position = 0
    for block in output_blocks(network, X, probabilities, slice(start, stop)):
        if out is None:
            out = np.empty((stop - start, block.shape[1]), dtype=dtype)
        out[position : position + len(block)] = block
        position += len(block)
    if out is None:
        width = _output_width(network, X)
        out = np.zeros((0, width), dtype=dtype)
    return world.gather_rows(out)


def _output_width(network: nn.Module, X: Any) -> int:
    """The width of :func:`predict_outputs` for no rows, from one dummy sample."""
    dummy: np.ndarray | torch.Tensor = np.zeros((1, *X.shape[1:]), dtype=np.float32)
    if is_images(X):
        dummy = torch.zeros((1, *X.shape[1:]), dtype=torch.uint8)
    out = next(output_blocks(network, dummy))
    return sum(part.shape[1] for part in (out if isinstance(out, tuple) else (out,)))


def logits_of(out: Any) -> torch.Tensor:
    """The logits of a network's output: the output itself (an inference
    copy's) or the first of ``(logits, z)``."""
    return out if isinstance(out, torch.Tensor) else out[0]


def output_blocks(
    module: nn.Module, X: Any, reduce: Any = None, rows: slice | None = None
) -> Iterator[Any]:
    """``module``'s outputs on validated X (on its ``rows`` only, when given),
    block by block, in evaluation mode, as float32 numpy arrays (an array,
    or a tuple of them, per block); with ``reduce``, what it makes of each
    block's outputs (on the device) instead."""
    return (out for _, out in paired_blocks(module, X, reduce, rows))


def paired_blocks(
    module: nn.Module, X: Any, reduce: Any = None, rows: slice | None = None
) -> Iterator[tuple[Any, Any]]:
    """:func:`output_blocks` with each block of input beside its outputs, so
    that a caller who needs both reads the input once."""
    device = module_device(module)
    module.eval()
    with torch.inference_mode():
        for raw in input_blocks(X, rows):
            if is_images(X):
                block = to_float_images(raw.to(device))
            else:
                block = torch.tensor(np.ascontiguousarray(raw), dtype=torch.float32, device=device)
            out = module(block)
            if reduce is not None:
                yield raw, reduce(out).cpu().numpy()
            # Off the device block by block: the device holds one block's outputs.
            elif isinstance(out, tuple):
                yield raw, tuple(t.float().cpu().numpy() for t in out)
            else:
                yield raw, out.float().cpu().numpy()


def is_images(X: Any) -> bool:
    """Validated image input: a tensor or :class:`~skcdc.images.StreamedImages`."""
    return isinstance(X, (torch.Tensor, StreamedImages))


def input_blocks(X: Any, rows: slice | None = None) -> Any:
    """Consecutive blocks of validated input (of its ``rows`` only, when
    given): images (decoded by the loader when streamed) or rows, in the
    block sizes of prediction."""
    start, stop, _ = (rows or slice(None)).indices(X.shape[0])
    if isinstance(X, StreamedImages):
        return X.blocks(BLOCK_IMAGES, slice(start, stop))
    size = BLOCK_IMAGES if is_images(X) else BLOCK_ROWS
    return (X[i : min(i + size, stop)] for i in range(start, stop, size))


def module_device(module: nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def flat(X: np.ndarray | torch.Tensor) -> np.ndarray:
    """Samples of one block as rows: images flattened to float32 pixels in [0, 1]."""
    if isinstance(X, torch.Tensor):
        return to_float_images(X).flatten(1).numpy()
    return X
