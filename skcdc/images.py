"""Image input: telling images from tables, in memory or streamed from disk.

Image mode accepts numpy or torch arrays of shape (N, H, W), (N, H, W, C) or
(N, C, H, W) with C in {1, 3}, a ``torch.utils.data.Dataset`` that yields
images or ``(image, label)`` pairs, and a folder of image files in
torchvision's ``ImageFolder`` layout (one sub-folder per class; the classes
are ignored). Arrays become one (N, C, H, W) tensor held in memory; datasets
and folders become :class:`StreamedImages`, decoded a batch at a time by
``DataLoader`` workers, so memory does not grow with the number of images.
``uint8`` stays ``uint8`` (a quarter of the memory of float), floats must lie
in [0, 1]. All images must share one size; resize them beforehand (e.g. a
``transform`` on the dataset) when they do not.
"""

from __future__ import annotations

import os
from collections.abc import Sized
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .distributed import SINGLE, World
from .sources import is_npy_path, is_vector_dataset

__all__ = ["IMAGE_LAYOUTS", "StreamedImages", "is_image_input", "load_images"]

IMAGE_LAYOUTS = ("auto", "channels_first", "channels_last")
_CHANNELS = (1, 3)


def is_image_input(X: Any) -> bool:
    """True for what image mode takes: 3-D/4-D arrays, datasets of images,
    folders (not ``.npy`` files of vectors, nor datasets of vectors)."""
    if isinstance(X, (str, os.PathLike)):
        return not is_npy_path(X)
    if isinstance(X, Dataset):
        return not is_vector_dataset(X)
    ndim = getattr(X, "ndim", None)
    if ndim is None and isinstance(X, (list, tuple)):
        ndim = np.ndim(X)
    return ndim in (3, 4)


def load_images(
    X: Any, *, layout: str = "auto", num_workers: int = 0, world: World = SINGLE
) -> Any:
    """Any accepted image input as a (N, C, H, W) uint8 or float32 tensor, or,
    for a dataset or a folder, as :class:`StreamedImages`.

    Parameters
    ----------
    X : array-like, torch.Tensor, Dataset, str or path-like
        The images (see the module docstring).
    layout : {"auto", "channels_first", "channels_last"}, default="auto"
        Where the channel axis of a 4-D array is; ``"auto"`` tells it from
        the shape and refuses ambiguous shapes such as (N, 3, 32, 3).
    num_workers : int, default=0
        DataLoader workers that decode a dataset or a folder.
    world : World, default=SINGLE
        Processes that share the checking pass of a dataset or a folder.

    Returns
    -------
    Tensor of shape (N, C, H, W), dtype uint8 or float32, or StreamedImages.
    """
    if isinstance(X, (str, os.PathLike)):
        X = _image_folder(Path(X))
    if isinstance(X, Dataset):
        return StreamedImages(X, num_workers, world)
    images = _array_to_nchw(X, layout)
    _check_images(images)
    return images


class StreamedImages:
    """The images of a map-style dataset, decoded a batch at a time.

    Reads like a (N, C, H, W) tensor (``shape``, ``dtype``, ``len``, and
    indexing by a slice or an index array decodes those images), and
    :meth:`load` decodes the batches of an epoch in ``DataLoader`` workers,
    into pinned memory for a GPU, a couple of batches ahead. Opening one
    decodes every image once: a clear error about a wrong size or range
    comes before any training, and the per-channel statistics that the
    network's input normalisation needs come with it.

    Parameters
    ----------
    dataset : Dataset
        Items are images (PIL, arrays or tensors of (C, H, W)) or
        ``(image, label)`` pairs, as :func:`load_images` takes them.
    num_workers : int, default=0
        DataLoader workers that decode.
    world : World, default=SINGLE
        Processes of a distributed fit: each decodes its block of the images
        in the opening pass, and the channel sums are added up over them.
    """

    def __init__(self, dataset: Dataset, num_workers: int = 0, world: World = SINGLE) -> None:
        if not isinstance(dataset, Sized):
            raise TypeError(
                "The dataset must have a length (a map-style torch Dataset); an iterable "
                "dataset cannot be indexed for positive pairs."
            )
        n_items = len(dataset)
        if n_items == 0:
            raise ValueError("The dataset is empty: image mode needs at least 2 images.")
        self.dataset = dataset
        self.num_workers = num_workers
        first = _decode(dataset[0])
        self.shape = (n_items, *first.shape)
        self.dtype = first.dtype
        self.ndim = 4
        self.device = torch.device("cpu")
        self._scan(world)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice | np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(key, slice):
            indices = list(range(*key.indices(len(self))))
        else:
            indices = [int(i) for i in torch.as_tensor(key).reshape(-1).tolist()]
        return self._collate([self.dataset[i] for i in indices], indices)

    def load(self, batches: Any, pin_memory: bool = False) -> DataLoader:
        """A DataLoader that decodes each batch of indices of ``batches`` into
        ``(indices, images)``: a LongTensor (B,) and a (B, C, H, W) tensor,
        in ``num_workers`` worker processes."""
        workers = self.num_workers
        return DataLoader(
            _Indexed(self),
            batch_sampler=batches,
            num_workers=workers,
            collate_fn=self._collate_pairs,
            pin_memory=pin_memory,
            prefetch_factor=2 if workers else None,
            # Its own generator: a DataLoader otherwise draws its workers' base
            # seed from torch's global one, which the augmentations use.
            generator=torch.Generator().manual_seed(0),
        )

    def blocks(self, block: int, rows: slice | None = None) -> Any:
        """Consecutive blocks of ``block`` images (of the ``rows``), in order."""
        start, stop, _ = (rows or slice(None)).indices(len(self))
        starts = range(start, stop, block)
        loader = self.load([list(range(s, min(s + block, stop))) for s in starts])
        return (images for _, images in loader)

    def _collate_pairs(self, pairs: list[tuple[int, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        indices = [i for i, _ in pairs]
        return torch.as_tensor(indices), self._collate([item for _, item in pairs], indices)

    def _collate(self, items: list[Any], indices: list[int]) -> torch.Tensor:
        images = []
        for index, item in zip(indices, items):
            image = _decode(item)
            if image.shape != self.shape[1:]:
                raise ValueError(
                    f"Images of mixed sizes: item {index} is {tuple(image.shape)} (C, H, W) but "
                    f"item 0 is {tuple(self.shape[1:])}. Resize them to one size first, e.g. "
                    "with a torchvision Resize/CenterCrop transform on the dataset."
                )
            images.append(image)
        if not images:
            return torch.zeros((0, *self.shape[1:]), dtype=self.dtype)
        stacked = torch.stack(images)
        return stacked if stacked.dtype == torch.uint8 else stacked.float()

    def _scan(self, world: World) -> None:
        """Decode every image once (each rank its block): check it, and sum
        its channels."""
        sums = torch.zeros(2, self.shape[1], dtype=torch.float64)
        _check_count(len(self), self.shape[1:])
        for block in self.blocks(_SCAN_BLOCK, world.shard(len(self))):
            _check_pixels(block)
            block = block.double() / (255 if block.dtype == torch.uint8 else 1)
            sums[0] += block.sum(dim=(0, 2, 3))
            sums[1] += block.pow(2).sum(dim=(0, 2, 3))
        total, squares = world.all_sum(sums)
        #: Per-channel sums of the pixels (in [0, 1]) and of their squares.
        self.channel_sums = (total, squares)


_SCAN_BLOCK = 4096


class _Indexed(Dataset):
    """Items with their index, so that a worker's error can name the item."""

    def __init__(self, images: StreamedImages) -> None:
        self.dataset = images.dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


def _image_folder(path: Path) -> Dataset:
    from torchvision.datasets import ImageFolder

    if not path.is_dir():
        raise ValueError(
            f"{str(path)!r} is not a folder. Image mode reads a folder of image files in "
            "torchvision's ImageFolder layout (root/<class>/<image>); pass an array for "
            "images in memory."
        )
    try:
        return ImageFolder(path, loader=_read_image_file)
    except (FileNotFoundError, RuntimeError) as exc:
        raise ValueError(
            f"No images found under {str(path)!r}: put them in sub-folders "
            f"(root/<class>/<image>.png), the ImageFolder layout. ({exc})"
        ) from exc


def _read_image_file(path: str) -> Any:
    """Open an image file as grey ("L") or RGB, whichever it is closer to."""
    from PIL import Image

    with Image.open(path) as image:
        grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
        return image.convert("L" if grey else "RGB")


def _decode(item: Any) -> torch.Tensor:
    """A dataset item's image as a plain (C, H, W) tensor."""
    from torchvision.transforms import v2

    image = v2.functional.to_image(_image_of(item)).as_subclass(torch.Tensor)
    return image if image.dtype == torch.uint8 else image.float()


def _image_of(item: Any) -> Any:
    """The image of a dataset item: the item itself or the first of a pair."""
    return item[0] if isinstance(item, (tuple, list)) else item


def _array_to_nchw(X: Any, layout: str) -> torch.Tensor:
    tensor = X if isinstance(X, torch.Tensor) else torch.from_numpy(_numeric_array(X))
    tensor = tensor.detach().cpu()
    if tensor.is_complex():
        raise ValueError("Complex data not supported: pass real-valued images.")
    if tensor.dtype != torch.uint8:
        tensor = tensor.float()
    if tensor.ndim == 3:
        return tensor[:, None].contiguous()
    if tensor.ndim != 4:
        raise ValueError(
            f"Images must be (N, H, W), (N, H, W, C) or (N, C, H, W); got {tensor.ndim} "
            f"dimensions {tuple(tensor.shape)}."
        )
    first, last = tensor.shape[1] in _CHANNELS, tensor.shape[3] in _CHANNELS
    if layout == "auto":
        if first and last:
            raise ValueError(
                f"Cannot tell the channel axis of images of shape {tuple(tensor.shape)}: both "
                "axis 1 and axis 3 could hold 1 or 3 channels. Set "
                "image_layout='channels_first' (N, C, H, W) or 'channels_last' (N, H, W, C)."
            )
        if not (first or last):
            raise ValueError(
                f"Images of shape {tuple(tensor.shape)} have no axis of 1 or 3 channels "
                "(grey or RGB) at position 1 or 3. Convert them to grey or RGB, or pass "
                "(N, H, W) for grey images."
            )
        layout = "channels_first" if first else "channels_last"
    if layout == "channels_last":
        tensor = tensor.permute(0, 3, 1, 2)
    if tensor.shape[1] not in _CHANNELS:
        raise ValueError(
            f"With image_layout={layout!r} the images have {tensor.shape[1]} channels; "
            "image mode takes 1 (grey) or 3 (RGB)."
        )
    return tensor.contiguous()


def _numeric_array(X: Any) -> np.ndarray:
    array = np.asarray(X)
    if array.dtype.kind in "OUSV":
        raise ValueError(
            f"Images must be numeric (uint8 or float in [0, 1]); got dtype {array.dtype}."
        )
    if array.dtype.kind == "b":
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


def _check_images(images: torch.Tensor) -> None:
    _check_count(images.shape[0], images.shape[1:])
    _check_pixels(images)


def _check_count(n_images: int, shape: tuple[int, ...]) -> None:
    if n_images < 2:
        raise ValueError(
            f"Found {n_images} image(s) while a minimum of 2 is required: clustering "
            "needs at least two samples."
        )
    if min(shape[1:]) < 1:
        raise ValueError(f"Images of shape {tuple(shape)} are empty.")


def _check_pixels(images: torch.Tensor) -> None:
    if images.dtype == torch.uint8:
        return
    if not torch.isfinite(images).all():
        raise ValueError("Input images contain NaN or infinity: remove or repair those images.")
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > 1:
        raise ValueError(
            f"Float images must lie in [0, 1]; these span [{low:g}, {high:g}]. Divide by "
            "their maximum (255 for 8-bit pixels) or pass uint8 arrays."
        )
