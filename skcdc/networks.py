"""Networks: an encoder followed by a categorical head and an instance head.

A network for :class:`skcdc.CDCClustering` is any ``torch.nn.Module`` class
whose constructor accepts the keyword arguments ``in_features``,
``n_clusters`` and ``instance_dim`` (plus whatever the user passes in
``network_params``) and whose ``forward(x)`` returns ``(logits, z)``: the
categorical logits of shape (B, n_clusters), or (B, n_heads, n_clusters) for
several heads, and the instance vectors of shape (B, instance_dim),
L2-normalised.

In image mode the network class receives ``in_channels`` and ``image_size``
(a (height, width) pair) instead of ``in_features``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BACKBONES",
    "BackboneFeatures",
    "CDCHeads",
    "ChannelNormalizer",
    "ImageCDCNetwork",
    "InputScaler",
    "MLPEncoder",
    "SelectHead",
    "SmallCNN",
    "VectorCDCNetwork",
]

BACKBONES = ("auto", "small_cnn", "resnet18", "resnet34", "resnet50")


class InputScaler(nn.Module):
    """Centres each feature and divides by one scale shared by all features.

    A single scale (the root-mean-square of the centred data) keeps the relative
    size of the features, which carries meaning in embeddings and in pixels,
    while making training independent of the units of the input.
    """

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)

    @classmethod
    def from_data(cls, data: torch.Tensor) -> InputScaler:
        """Fit the scaler on a (N, D) tensor."""
        mean = data.mean(dim=0)
        scale = (data - mean).pow(2).mean().sqrt().clamp_min(1e-12)
        if not (torch.isfinite(mean).all() and torch.isfinite(scale)):
            # Squares of float32 values above about 1e19 overflow: redo in float64.
            wide = data.double()
            mean = wide.mean(dim=0)
            scale = (wide - mean).pow(2).mean().sqrt().clamp_min(1e-12)
            mean, scale = mean.to(data.dtype), scale.to(data.dtype)
        return cls(mean, scale)

    @classmethod
    def from_blocks(cls, blocks, n_features: int, add_up=None) -> InputScaler:
        """Fit the scaler on an iterable of (n, D) float arrays or tensors, in
        one pass with float64 sums, for input that is never held whole.
        ``add_up`` adds the sums of several processes that each read a part
        of the rows (:meth:`skcdc.distributed.World.all_sum`)."""
        sums = torch.zeros(2 * n_features + 1, dtype=torch.float64)
        for block in blocks:
            block = torch.as_tensor(block, dtype=torch.float64)
            sums[:n_features] += block.sum(0)
            sums[n_features:-1] += (block * block).sum(0)
            sums[-1] += block.shape[0]
        if add_up is not None:
            sums = add_up(sums)
        total, squares, count = sums[:n_features], sums[n_features:-1], sums[-1].item()
        mean = total / count
        variance = (squares - count * mean * mean).sum() / (count * mean.numel())
        scale = variance.clamp_min(0).sqrt().clamp_min(1e-12)
        return cls(mean.float(), scale.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


class ChannelNormalizer(nn.Module):
    """Standardises each channel of float images with the training set's statistics."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1))
        self.register_buffer("std", std.reshape(1, -1, 1, 1))

    @classmethod
    def from_images(cls, images: torch.Tensor, chunk: int = 4096) -> ChannelNormalizer:
        """Fit on (N, C, H, W) images (uint8 0-255 or float 0-1), in chunks;
        streamed images (:class:`~skcdc.images.StreamedImages`) bring the
        sums from the pass that opened them."""
        if hasattr(images, "channel_sums"):
            total, squares = images.channel_sums
        else:
            total = torch.zeros(images.shape[1], dtype=torch.float64)
            squares = torch.zeros_like(total)
            for start in range(0, images.shape[0], chunk):
                block = images[start : start + chunk].double()
                if images.dtype == torch.uint8:
                    block = block / 255
                total += block.sum(dim=(0, 2, 3)).cpu()
                squares += block.pow(2).sum(dim=(0, 2, 3)).cpu()
        count = images.shape[0] * images.shape[2] * images.shape[3]
        mean = total / count
        std = (squares / count - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-3)
        return cls(mean.float(), std.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SmallCNN(nn.Sequential):
    """A small convolutional encoder for images up to about 32 px.

    Four 3x3 convolution blocks (widths ``width`` to ``8 * width``, the last
    three with stride 2), batch norm, ReLU, then global average pooling.
    About 0.4 M parameters at the default width.

    Parameters
    ----------
    in_channels : int
        1 for grey, 3 for RGB.
    width : int, default=32
        Channels of the first block.
    """

    def __init__(self, in_channels: int, width: int = 32) -> None:
        layers: list[nn.Module] = []
        channels = in_channels
        for i, out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            layers += [
                nn.Conv2d(channels, out, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        super().__init__(*layers)
        self.out_features = channels


def resnet_backbone(name: str, in_channels: int, small_images: bool) -> nn.Module:
    """A torchvision ResNet without its classifier (random weights, nothing downloaded).

    ``small_images`` swaps the 7x7 stride-2 stem and max-pool for one 3x3
    stride-1 convolution, the usual change for 32 px images (SimCLR on CIFAR).
    """
    from torchvision import models

    network = getattr(models, name)(weights=None)
    if small_images:
        network.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        network.maxpool = nn.Identity()
    elif in_channels != 3:
        network.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    network.out_features = network.fc.in_features
    network.fc = nn.Identity()
    return network


class MLPEncoder(nn.Sequential):
    """Fully connected encoder: ``n_layers`` of Linear, BatchNorm, ReLU.

    Parameters
    ----------
    in_features : int
        Width of the input vectors.
    hidden_dim : int
        Width of every hidden layer and of the output.
    n_layers : int
        Number of Linear-BatchNorm-ReLU blocks.
    dropout : float
        Dropout on the input; a cheap extra perturbation of the views.
    """

    def __init__(
        self, in_features: int, hidden_dim: int = 512, n_layers: int = 2, dropout: float = 0.0
    ) -> None:
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        width = in_features
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU()]
            width = hidden_dim
        super().__init__(*layers)
        self.out_features = width


class CDCHeads(nn.Module):
    """The two heads of the disentangled representation.

    Parameters
    ----------
    in_features : int
        Width of the encoder output.
    n_clusters : int
        Size of the categorical part.
    instance_dim : int
        Size of the instance part.
    n_heads : int, default=1
        Independent categorical heads. With more than one, the logits are
        (B, n_heads, n_clusters): each head clusters on its own and the
        lowest-loss one is kept after training (:class:`SelectHead`), which
        makes the result less dependent on the initialisation.
    """

    def __init__(
        self, in_features: int, n_clusters: int, instance_dim: int, n_heads: int = 1
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.n_clusters = n_clusters
        self.categorical = nn.Linear(in_features, n_clusters * n_heads)
        self.instance = nn.Sequential(
            nn.Linear(in_features, in_features), nn.ReLU(), nn.Linear(in_features, instance_dim)
        )

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.categorical(h)
        if self.n_heads > 1:
            logits = logits.view(-1, self.n_heads, self.n_clusters)
        return logits, F.normalize(self.instance(h), dim=1)


class SelectHead(nn.Module):
    """Keeps one categorical head of a multi-head network's ``(logits, z)``."""

    def __init__(self, head: int) -> None:
        super().__init__()
        self.head = head

    def forward(self, out: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits, z = out
        return (logits[:, self.head] if logits.dim() == 3 else logits), z


class VectorCDCNetwork(nn.Module):
    """The default network for vector input (frozen-feature mode).

    Parameters
    ----------
    in_features : int
        Number of input features.
    n_clusters : int
        Number of clusters, the width of the categorical head.
    instance_dim : int, default=128
        Width of the instance head.
    hidden_dim : int, default=512
        Width of the encoder's hidden layers.
    n_layers : int, default=2
        Depth of the encoder.
    dropout : float, default=0.0
        Input dropout.
    n_heads : int, default=1
        Number of categorical heads, see :class:`CDCHeads`.
    """

    def __init__(
        self,
        in_features: int,
        n_clusters: int,
        instance_dim: int = 128,
        hidden_dim: int = 512,
        n_layers: int = 2,
        dropout: float = 0.0,
        n_heads: int = 1,
    ) -> None:
        super().__init__()
        self.encoder = MLPEncoder(in_features, hidden_dim, n_layers, dropout)
        self.heads = CDCHeads(self.encoder.out_features, n_clusters, instance_dim, n_heads)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.encoder(x))


class ImageCDCNetwork(nn.Module):
    """The default network for images (image mode): a backbone and the two heads.

    Parameters
    ----------
    in_channels : int
        1 for grey, 3 for RGB.
    image_size : tuple of int
        (height, width) of the images.
    n_clusters : int
        Width of the categorical head.
    instance_dim : int, default=128
        Width of the instance head.
    backbone : str or nn.Module class, default="auto"
        ``"small_cnn"`` (:class:`SmallCNN`), ``"resnet18"``, ``"resnet34"``,
        ``"resnet50"`` (torchvision, with the small-image stem up to 32 px),
        ``"auto"`` (the small CNN up to 32 px, ResNet-18 above), or a module
        class built with ``backbone_kwargs`` that maps (B, C, H, W) to (B, F).
    backbone_kwargs : dict, default=None
        Arguments of a backbone class (or ``width`` of the small CNN).
    backbone_weights : dict or path-like, default=None
        A state dict for the backbone (e.g. pretrained weights you
        downloaded), or a file of one read with ``torch.load(weights_only=True)``.
    freeze_backbone : bool, default=False
        Keep the backbone's weights (and batch-norm statistics) fixed and
        train the heads only.
    n_heads : int, default=1
        Categorical heads, see :class:`CDCHeads`.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: tuple[int, int],
        n_clusters: int,
        instance_dim: int = 128,
        backbone: str | type[nn.Module] = "auto",
        backbone_kwargs: dict | None = None,
        backbone_weights: dict | str | None = None,
        freeze_backbone: bool = False,
        n_heads: int = 1,
    ) -> None:
        super().__init__()
        self.backbone = _make_backbone(backbone, in_channels, image_size, backbone_kwargs or {})
        if backbone_weights is not None:
            state = (
                backbone_weights
                if isinstance(backbone_weights, dict)
                else torch.load(backbone_weights, map_location="cpu", weights_only=True)
            )
            self.backbone.load_state_dict(state)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)
        out_features = _output_width(self.backbone, in_channels, image_size)
        self.heads = CDCHeads(out_features, n_clusters, instance_dim, n_heads)

    def train(self, mode: bool = True) -> ImageCDCNetwork:
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # frozen means the batch-norm statistics too
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.backbone(x).flatten(1))


class BackboneFeatures(nn.Module):
    """An image network's backbone alone, flattened: the input of its heads.

    What the refinement stage (``refine_epochs``) clusters on once the
    end-to-end stage has trained the backbone.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).flatten(1)


def _make_backbone(
    backbone: str | type[nn.Module], in_channels: int, image_size: tuple[int, int], kwargs: dict
) -> nn.Module:
    small = max(image_size) <= 32
    if isinstance(backbone, str):
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES} or a module class; got {backbone!r}.")
        if backbone == "small_cnn" or (backbone == "auto" and small):
            return SmallCNN(in_channels, **kwargs)
        return resnet_backbone("resnet18" if backbone == "auto" else backbone, in_channels, small)
    return backbone(**kwargs)


def _output_width(backbone: nn.Module, in_channels: int, image_size: tuple[int, int]) -> int:
    """Width of a backbone's flattened output, read off one forward pass."""
    width = getattr(backbone, "out_features", None)
    if isinstance(width, int):
        return width
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.zeros(1, in_channels, *image_size))
    backbone.train(was_training)
    return out.flatten(1).shape[1]
