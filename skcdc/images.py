"""Image input: telling images from tables, reading every kind into one tensor.

Image mode accepts numpy or torch arrays of shape (N, H, W), (N, H, W, C) or
(N, C, H, W) with C in {1, 3}, a ``torch.utils.data.Dataset`` that yields
images or ``(image, label)`` pairs, and a folder of image files in
torchvision's ``ImageFolder`` layout (one sub-folder per class; the classes
are ignored). Every kind becomes one (N, C, H, W) tensor held in memory:
``uint8`` stays ``uint8`` (a quarter of the memory of float), floats must lie
in [0, 1]. All images must share one size; resize them beforehand (e.g. a
``transform`` on the dataset) when they do not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .sources import is_npy_path, is_vector_dataset

__all__ = ["IMAGE_LAYOUTS", "is_image_input", "load_images"]

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


def load_images(X: Any, *, layout: str = "auto", num_workers: int = 0) -> torch.Tensor:
    """Read any accepted image input into a (N, C, H, W) uint8 or float32 tensor.

    Parameters
    ----------
    X : array-like, torch.Tensor, Dataset, str or path-like
        The images (see the module docstring).
    layout : {"auto", "channels_first", "channels_last"}, default="auto"
        Where the channel axis of a 4-D array is; ``"auto"`` tells it from
        the shape and refuses ambiguous shapes such as (N, 3, 32, 3).
    num_workers : int, default=0
        DataLoader workers that decode a dataset or a folder.

    Returns
    -------
    Tensor of shape (N, C, H, W), dtype uint8 or float32.
    """
    if isinstance(X, (str, os.PathLike)):
        X = _image_folder(Path(X))
    if isinstance(X, Dataset):
        images = _read_dataset(X, num_workers)
    else:
        images = _array_to_nchw(X, layout)
    _check_images(images)
    return images


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


def _read_dataset(dataset: Dataset, num_workers: int) -> torch.Tensor:
    """Decode every item of a dataset into one tensor, checking sizes agree."""
    try:
        n_items = len(dataset)
    except TypeError as exc:
        raise TypeError(
            "The dataset must have a length (a map-style torch Dataset); an iterable "
            "dataset cannot be indexed for positive pairs."
        ) from exc
    if n_items == 0:
        raise ValueError("The dataset is empty: image mode needs at least 2 images.")
    to_tensor = v2.Compose([v2.ToImage()])
    loader = DataLoader(
        range(n_items),
        batch_size=256,
        num_workers=num_workers,
        collate_fn=lambda idx: [to_tensor(_image_of(dataset[i])) for i in idx],
    )
    images: list[torch.Tensor] = []
    for chunk in loader:
        for image in chunk:
            image = image.as_subclass(torch.Tensor)
            if images and image.shape != images[0].shape:
                raise ValueError(
                    f"Images of mixed sizes: item {len(images)} is {tuple(image.shape)} "
                    f"(C, H, W) but item 0 is {tuple(images[0].shape)}. Resize them to one "
                    "size first, e.g. with a torchvision Resize/CenterCrop transform on "
                    "the dataset."
                )
            images.append(image)
    stacked = torch.stack(images)
    return stacked if stacked.dtype == torch.uint8 else stacked.float()


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
    if images.shape[0] < 2:
        raise ValueError(
            f"Found {images.shape[0]} image(s) while a minimum of 2 is required: clustering "
            "needs at least two samples."
        )
    if min(images.shape[2:]) < 1:
        raise ValueError(f"Images of shape {tuple(images.shape[1:])} are empty.")
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
