"""Networks: an encoder followed by a categorical head and an instance head.

A network for :class:`skcdc.CDCClustering` is any ``torch.nn.Module`` class
whose constructor accepts the keyword arguments ``in_features``,
``n_clusters`` and ``instance_dim`` (plus whatever the user passes in
``network_kwargs``) and whose ``forward(x)`` returns ``(logits, z)``: the
categorical logits of shape (B, n_clusters) and the instance vectors of shape
(B, instance_dim), L2-normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CDCHeads", "InputScaler", "MLPEncoder", "SelectHead", "VectorCDCNetwork"]


class InputScaler(nn.Module):
    """Centres each feature and divides by one scale shared by all features.

    A single scale (the root-mean-square of the centred data) keeps the relative
    size of the features, which carries meaning in embeddings and in pixels,
    while making training independent of the units of the input.
    """

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)

    @classmethod
    def from_data(cls, data: torch.Tensor) -> InputScaler:
        """Fit the scaler on a (N, D) tensor."""
        mean = data.mean(dim=0)
        scale = (data - mean).pow(2).mean().sqrt().clamp_min(1e-12)
        return cls(mean, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


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
    instance_dim : int
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
        instance_dim: int,
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
