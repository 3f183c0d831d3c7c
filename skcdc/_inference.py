"""Running a network over validated input in blocks, in evaluation mode."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .views import to_float_images

__all__ = ["flat", "forward", "map_blocks", "module_device", "predict_labels", "softmax"]

# Rows per forward pass at prediction time: large enough to keep a GPU busy,
# small enough that the activations of the default network stay in the tens of MB.
BLOCK_ROWS = 4096
BLOCK_IMAGES = 512


def forward(network: nn.Module, X: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Logits and instance vectors of validated X (a table or images)."""
    outputs = map_blocks(network, X)
    return np.concatenate([l for l, _ in outputs]), np.concatenate([z for _, z in outputs])


def predict_labels(network: nn.Module, X: Any) -> np.ndarray:
    """The argmax of the logits of validated X as int32, taken block by block
    on the device, so that no (N, K) array is ever made."""
    labels = map_blocks(network, X, reduce=lambda out: out[0].argmax(dim=1).int())
    return np.concatenate(labels) if labels else np.zeros(0, dtype=np.int32)


def map_blocks(module: nn.Module, X: Any, reduce: Any = None) -> list[Any]:
    """``module``'s outputs on validated X, block by block, in evaluation mode,
    as float32 numpy arrays (an array, or a tuple of them, per block); with
    ``reduce``, what it makes of each block's outputs (on the device) instead."""
    device = module_device(module)
    images = isinstance(X, torch.Tensor)
    step = BLOCK_IMAGES if images else BLOCK_ROWS
    outputs = []
    module.eval()
    with torch.inference_mode():
        for start in range(0, X.shape[0], step):
            if images:
                block = to_float_images(X[start : start + step].to(device))
            else:
                block = np.ascontiguousarray(X[start : start + step])
                block = torch.tensor(block, dtype=torch.float32, device=device)
            out = module(block)
            if reduce is not None:
                outputs.append(reduce(out).cpu().numpy())
            # Off the device block by block: the device holds one block's outputs.
            elif isinstance(out, tuple):
                outputs.append(tuple(t.float().cpu().numpy() for t in out))
            else:
                outputs.append(out.float().cpu().numpy())
    return outputs


def module_device(module: nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def flat(X: np.ndarray | torch.Tensor) -> np.ndarray:
    """Samples as rows: images flattened to float32 pixels in [0, 1]."""
    if isinstance(X, torch.Tensor):
        return to_float_images(X).flatten(1).numpy()
    return X
