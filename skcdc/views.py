"""Views: how the two members of a positive pair are made.

For vector input (frozen-feature mode) the positive of a sample is one of its
``k`` nearest neighbours in the input space, the practice of SCAN and TEMI. For images (image mode)
the two members are two random augmentations of the same image, made with
``torchvision.transforms.v2``, or of the image and one of its nearest
neighbours in pixel space.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from .distributed import SINGLE, World
from .images import StreamedImages
from .neighbours import METRICS, NeighbourSearch, neighbour_search
from .sources import n_rows, read_rows

if TYPE_CHECKING:
    from torchvision.transforms import v2

__all__ = ["METRICS", "AugmentedViews", "NeighbourViews", "default_augmentation"]


class NeighbourViews:
    """Positive pairs from nearest neighbours, for vector input.

    Parameters
    ----------
    data : Tensor or array of shape (N, D)
        The training set: a tensor already on the training device, or a
        streamed input (:mod:`skcdc.sources`) whose rows are read per batch.
    n_neighbors : int
        The positive of a sample is drawn uniformly from its ``n_neighbors``
        nearest neighbours (the sample itself excluded).
    metric : {"euclidean", "cosine"}
        Distance for the neighbour search.
    device : torch.device, default=None
        Where views are returned; by default the data's device.
    method : {"auto", "exact", "hnsw"}, default="auto"
        The neighbour search (:func:`skcdc.neighbours.neighbour_search`).
    verbose : int, default=0
        Above 0, a progress bar over the search.
    world : World, default=SINGLE
        Processes that share the search out: each answers the queries of
        its block of rows against all rows, and every one gets all answers.
    n_held_out : int, default=0
        Neighbours searched beyond the ``n_neighbors`` positives, never
        drawn as positives: a label-free check of the clusters reads them
        (:mod:`skcdc.training.floor`).

    Attributes
    ----------
    neighbors : LongTensor of shape (N, n_neighbors)
        The nearest neighbours of each sample, nearest first.
    held_out : LongTensor of shape (N, n_held_out)
        The next ``n_held_out`` neighbours of each sample.
    search : NeighbourSearch or None
        Which search ran, its time and recall (None without neighbours).
    """

    def __init__(
        self,
        data: Any,
        n_neighbors: int,
        *,
        metric: str = "euclidean",
        device: torch.device | None = None,
        method: str = "auto",
        verbose: int = 0,
        world: World = SINGLE,
        n_held_out: int = 0,
    ) -> None:
        self.data = data
        self.world = world
        if device is None:
            device = data.device if isinstance(data, torch.Tensor) else torch.device("cpu")
        self.device = device
        self.n_neighbors = min(n_neighbors, n_rows(data) - 1)
        self.search: NeighbourSearch | None = None
        searched = min(self.n_neighbors + n_held_out, n_rows(data) - 1)
        if self.n_neighbors > 0:
            found, self.search = neighbour_search(
                data, searched, metric=metric, device=self.device, method=method,
                verbose=verbose, world=world,
            )
            self.neighbors = found[:, : self.n_neighbors]
            self.held_out = found[:, self.n_neighbors :]
        else:
            self.neighbors = torch.arange(n_rows(data), device=self.device)[:, None]
            self.held_out = self.neighbors[:, :0]

    def __call__(
        self, index: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two views of the samples ``index`` (a batch of row indices, or
        this process's share of a global batch)."""
        positives = _random_neighbours(self.neighbors, index, generator, self.world)
        return self._rows(index), self._rows(positives)

    def _rows(self, index: torch.Tensor) -> torch.Tensor:
        if isinstance(self.data, torch.Tensor):
            return self.data[index]
        return read_rows(self.data, index, self.device)

    def of_itself(self) -> NeighbourViews:
        """Views that pair each sample with itself, for losses whose target
        must stay with the sample it was read from."""
        views = copy.copy(self)
        views.neighbors = torch.arange(n_rows(self.data), device=self.device)[:, None]
        return views


def _random_neighbours(
    neighbors: torch.Tensor,
    index: torch.Tensor,
    generator: torch.Generator | None,
    world: World = SINGLE,
) -> torch.Tensor:
    """One uniformly drawn neighbour of each sample of ``index`` (all on one
    device), drawn for the global batch (:func:`_global_draw`)."""
    choice = _global_draw(torch.randint, (neighbors.shape[1],), index.shape[0], generator, world)
    return neighbors[index, choice.to(index.device)]


def _global_draw(
    draw: Callable, args: tuple, n: int, generator: torch.Generator | None, world: World
) -> torch.Tensor:
    """This process's ``n`` values of ``draw(*args, size)`` drawn for the
    whole global batch of ``world``, so that every process's generator moves
    alike and the draws are one process's."""
    device = generator.device if generator is not None else torch.device("cpu")
    values = draw(*args, (n * world.size,), generator=generator, device=device)
    return values[world.rank * n : (world.rank + 1) * n]


# The sizes that pick the default recipe: below SMALL_IMAGE_SIDE px the
# small-image recipe (no flips), below SUBPIXEL_SIDE px with sub-pixel moves.
SMALL_IMAGE_SIDE = 32
SUBPIXEL_SIDE = 16


def default_augmentation(channels: int, height: int, width: int) -> v2.Compose:
    """The augmentation recipe for images of this size, on float tensors in [0, 1].

    - under 32 px (digits, MNIST-like): gentle crops (60-100% of the area) and
      small affine moves (up to 10 degrees, 10% shifts), brightness/contrast
      jitter; no flips, which would turn some digits into others. Under 16 px
      the affine move is :class:`~skcdc.augmentation.RandomSubpixelAffine`,
      bilinear and by fractions of a pixel, because ``v2.RandomAffine`` moves
      by whole pixels (12% of an 8 px side) and rotates with nearest
      neighbours;
    - 32 to 95 px: the CIFAR recipe of SimCLR (crops of 20-100%, flips,
      colour jitter 0.4, 20% grey);
    - 96 px and up: the full SimCLR recipe (crops of 8-100%, flips, colour
      jitter 0.8, 20% grey, Gaussian blur).

    Colour jitter of saturation and hue, and greying, only apply to RGB.
    """
    # torchvision (and the part of torch it pulls in) loads with image mode,
    # not with ``import skcdc``.
    from torchvision.transforms import v2

    from .augmentation import RandomSubpixelAffine
    size = (height, width)
    rgb = channels == 3
    if max(height, width) < SMALL_IMAGE_SIDE:
        affine = (
            RandomSubpixelAffine(degrees=10, translate=(0.1, 0.1))
            if max(height, width) < SUBPIXEL_SIDE
            else v2.RandomAffine(degrees=10, translate=(0.1, 0.1))
        )
        return v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.8, 1.25), antialias=True),
                affine,
                v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4)], p=0.8),
            ]
        )
    strength, scale = (0.4, (0.2, 1.0)) if max(height, width) < 96 else (0.8, (0.08, 1.0))
    jitter = (
        v2.ColorJitter(strength, strength, strength, strength / 4)
        if rgb
        else v2.ColorJitter(brightness=strength, contrast=strength)
    )
    steps = [
        v2.RandomResizedCrop(size, scale=scale, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([jitter], p=0.8),
    ]
    if rgb:
        steps.append(v2.RandomGrayscale(p=0.2))
    if max(height, width) >= 96:
        kernel = 2 * (max(height, width) // 20) + 1  # about 10% of the side, odd
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5))
    return v2.Compose(steps)


class AugmentedViews:
    """Positive pairs from two random augmentations of each image.

    Parameters
    ----------
    images : Tensor of shape (N, C, H, W) or StreamedImages
        uint8 (0-255) or float (0-1) images, on the CPU or the training
        device, or streamed from a dataset or a folder (decoded per batch).
    augmentation : callable
        Maps one float image (C, H, W) in [0, 1] to an augmented image of the
        same size. A ``torchvision.transforms.v2`` recipe made of the steps
        :mod:`skcdc.augmentation` supports (those of
        :func:`default_augmentation`) runs on the whole batch at once with
        per-image random parameters; anything else is applied image by
        image. Either way every sample gets its own random parameters, on the
        device of the batch (the GPU when there is one). The randomness comes
        from torch's global generator, which the estimator seeds.
    device : torch.device
        Where the views are returned.
    neighbors : LongTensor of shape (N, k) or None, default=None
        Nearest neighbours of each image (images held in memory only). With
        them, the second view is, with probability ``neighbour_share``, an
        augmentation of one of the image's neighbours drawn uniformly
        instead of the image itself.
    neighbour_share : float, default=0.0
        How often the second view comes from a neighbour.
    world : World, default=SINGLE
        Processes sharing the global batch: each draws the neighbours of the
        whole global batch and keeps its share, as :class:`NeighbourViews`.
    """

    def __init__(
        self,
        images: torch.Tensor | StreamedImages,
        augmentation: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device,
        *,
        neighbors: torch.Tensor | None = None,
        neighbour_share: float = 0.0,
        world: World = SINGLE,
    ) -> None:
        self.images = images
        self.augmentation = augmentation
        self.device = device
        self.neighbors = neighbors
        self.neighbour_share = neighbour_share
        self.world = world
        from .augmentation import batched

        # A v2 recipe of supported steps runs on the whole batch at once.
        self._batched = batched(augmentation, tuple(images.shape[2:]))

    def __call__(
        self, index: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two views of the images ``index``, as float tensors in [0, 1]."""
        if self.neighbors is None or self.neighbour_share == 0:
            return self._pair(self._batch(index))
        partners = self._partners(index, generator)
        return self._augment(self._batch(index)), self._augment(self._batch(partners))

    def _partners(self, index: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The image of each second view: a random neighbour with probability
        ``neighbour_share``, else the image itself."""
        assert self.neighbors is not None
        drawn = _random_neighbours(self.neighbors, index, generator, self.world)
        coin = _global_draw(torch.rand, (), index.shape[0], generator, self.world)
        return torch.where(coin.to(index.device) < self.neighbour_share, drawn, index)

    def epoch(self, batches: Iterable, generator: torch.Generator | None) -> Iterator:
        """``(index, view_a, view_b)`` for each batch of image numbers of an
        epoch. Streamed images are decoded by DataLoader workers, a couple of
        batches ahead, and augmented on the device."""
        if not isinstance(self.images, StreamedImages):
            for batch in batches:
                index = torch.as_tensor(batch, device=self.device)
                yield (index, *self(index, generator))
            return
        loader = self.images.load(batches, pin_memory=self.device.type == "cuda")
        for index, images in loader:
            batch = to_float_images(images.to(self.device, non_blocking=True))
            yield (index.to(self.device), *self._pair(batch))

    def of_itself(self) -> AugmentedViews:
        """Views whose two members are augmentations of the image itself."""
        views = copy.copy(self)
        views.neighbors = None
        return views

    def _pair(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._augment(batch), self._augment(batch)

    def _augment(self, batch: torch.Tensor) -> torch.Tensor:
        if self._batched is not None:
            return self._batched(batch)
        return torch.stack([self.augmentation(image) for image in batch])

    def _batch(self, index: torch.Tensor) -> torch.Tensor:
        return to_float_images(self.images[index.to(self.images.device)].to(self.device))


def to_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to float in [0, 1]; float images unchanged."""
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    return images.float()
