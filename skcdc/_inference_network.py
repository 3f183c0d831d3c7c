"""Inference copies of a fitted network: only the layers a prediction needs.

Training leaves a network that computes everything the loss read: the input
scaling, the encoder with batch normalisation as its own pass, every
categorical head and the instance head. A label needs one head's logits, so
the copy made here keeps the input scaling and the encoder, folds the scaling
and every batch normalisation (with its running statistics) into the linear
or convolution layer before it, and keeps only the rows of the categorical
layer of the head the fit kept, and the instance head for
:meth:`~skcdc.CDCClustering.transform`; :func:`logits_only` gives the same
copy without the instance head, sharing its layers, for ``predict``.

The folded copy computes the same function in exact arithmetic; in float32
its logits differ from the training network's by rounding (about 1e-6 of
their size). A network whose structure is not one of skcdc's own (a user's
``network`` class) is used as it is.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from .networks import (
    BackboneFeatures,
    CDCHeads,
    ImageCDCNetwork,
    InputScaler,
    MLPEncoder,
    SelectHead,
    VectorCDCNetwork,
)
from .training.consensus import RestartConsensus
from .training.floor import NearestCentroid, centroid_logits

__all__ = ["LogitsOnly", "inference_network", "logits_only"]


def inference_network(network: nn.Module, with_instance: bool = False) -> nn.Module:
    """An evaluation-mode copy of a fitted ``network_`` that returns its
    logits alone or, ``with_instance``, ``(logits, z)``; where its structure
    is not skcdc's, the network itself (with ``with_instance``) or
    :class:`LogitsOnly` of it."""
    copied = _copy(network)
    full = (network if copied is None else copied).eval()
    return full if with_instance else logits_only(full)


def logits_only(network: nn.Module) -> nn.Module:
    """What returns the logits alone of an inference copy that returns
    ``(logits, z)``, sharing its layers: the copy is folded once and held
    once for both ``predict`` and ``transform``."""
    if isinstance(network, NearestCentroid):
        return CentroidLogits(network.centers, network.variance).eval()
    if isinstance(network, ConsensusCopy):
        runs = [logits_only(run) for run in network.consensus.runs]
        consensus = network.consensus
        return ConsensusCopy(
            runs, consensus.centers, consensus.variance, network.reference, with_instance=False
        ).eval()
    if isinstance(network, nn.Sequential) and isinstance(network[-1], KeptHead):
        return nn.Sequential(*network[:-1], KeptHead(network[-1].categorical, None)).eval()
    return LogitsOnly(network).eval()


def _copy(network: nn.Module) -> nn.Module | None:
    """The folded copy returning ``(logits, z)``, None for a structure that
    is not skcdc's."""
    if isinstance(network, NearestCentroid):
        inner = _copy(network.network)
        return None if inner is None else NearestCentroid(inner, network.centers, network.variance)
    if isinstance(network, RestartConsensus):
        reference = int(network.reference)
        # Only the reference run's instance vectors are returned.
        runs = [
            _copy_run(run, int(head), with_instance=index == reference)
            for index, (run, head) in enumerate(zip(network.runs, network.heads, strict=True))
        ]
        kept = [run for run in runs if run is not None]
        if len(kept) < len(runs):
            return None
        return ConsensusCopy(
            kept, network.centers, network.variance, reference, with_instance=True
        )
    if isinstance(network, nn.Sequential) and isinstance(network[-1], SelectHead):
        return _copy_run(network[:-1], network[-1].head, with_instance=True)
    return None


def _copy_run(run: nn.Module, head: int, with_instance: bool) -> nn.Module | None:
    """``Sequential(*input stages, skcdc network)`` as a folded encoder and
    the kept head."""
    if not isinstance(run, nn.Sequential):
        return None
    *stages, network = run
    if isinstance(network, VectorCDCNetwork):
        encoder: nn.Module = network.encoder
    elif isinstance(network, ImageCDCNetwork):
        encoder = BackboneFeatures(network.backbone)
    else:
        return None
    heads = KeptHead.of(network.heads, head, with_instance)
    return nn.Sequential(_fold(nn.Sequential(*stages, encoder)), heads)


def _fold(encoder: nn.Sequential) -> nn.Sequential:
    """A copy of ``encoder`` with input scaling and batch normalisation folded
    into the linear and convolution layers before them."""
    layers = _fold_input_scaling(_flatten(copy.deepcopy(encoder)))
    folded: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and folded:
            previous = folded[-1]
            if isinstance(previous, nn.Linear) and isinstance(layer, nn.BatchNorm1d):
                folded[-1] = fuse_linear_bn_eval(previous.eval(), layer.eval())
                continue
            if isinstance(previous, nn.Conv2d) and isinstance(layer, nn.BatchNorm2d):
                folded[-1] = fuse_conv_bn_eval(previous.eval(), layer.eval())
                continue
        if isinstance(layer, BackboneFeatures):
            layer = BackboneFeatures(_fuse_traced(layer.backbone))
        folded.append(layer)
    return nn.Sequential(*folded)


def _fuse_traced(backbone: nn.Module) -> nn.Module:
    """torch.fx's fusion of convolution and batch normalisation over a
    backbone (a small CNN, a ResNet); one it cannot trace (a user's) is kept
    as it is."""
    try:
        return fuse(backbone.eval())
    except Exception:  # noqa: BLE001 - any tracing failure means: keep it unfused
        return backbone


def _flatten(module: nn.Module) -> list[nn.Module]:
    """Nested ``Sequential`` containers and the MLP encoder as one list of
    layers, without those that do nothing in evaluation mode."""
    if isinstance(module, (nn.Dropout, nn.Identity)):
        return []
    if type(module) in (nn.Sequential, MLPEncoder):
        return [layer for child in module.children() for layer in _flatten(child)]
    return [module]


def _fold_input_scaling(layers: list[nn.Module]) -> list[nn.Module]:
    """``InputScaler`` followed by ``Linear`` as one ``Linear``:
    ``W ((x - m) / s) + b = (W / s) x + (b - W m / s)``."""
    out: list[nn.Module] = []
    for layer in layers:
        previous = out[-1] if out else None
        if isinstance(layer, nn.Linear) and isinstance(previous, InputScaler):
            with torch.no_grad():
                weight = layer.weight / previous.scale
                bias = layer.bias if layer.bias is not None else torch.zeros_like(weight[:, 0])
                merged = _linear(layer.in_features, layer.out_features, weight.device)
                merged.weight.copy_(weight)
                merged.bias.copy_(bias - weight @ previous.mean)
            out[-1] = merged
        else:
            out.append(layer)
    return out


def _linear(in_features: int, out_features: int, device: torch.device) -> nn.Linear:
    """A linear layer to be filled: no random initialisation, which would
    draw from the caller's global torch generator."""
    return torch.nn.utils.skip_init(nn.Linear, in_features, out_features, device=device)


class LogitsOnly(nn.Module):
    """The logits of a network that returns ``(logits, z)``."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[0]


class KeptHead(nn.Module):
    """The categorical rows of one head of :class:`~skcdc.networks.CDCHeads`
    (and its instance head, ``with_instance``)."""

    def __init__(self, categorical: nn.Linear, instance: nn.Module | None) -> None:
        super().__init__()
        self.categorical = categorical
        self.instance = instance

    @classmethod
    def of(cls, heads: CDCHeads, head: int, with_instance: bool) -> KeptHead:
        """Copies of head ``head``'s rows of ``heads`` (and of its instance head)."""
        rows = slice(head * heads.n_clusters, (head + 1) * heads.n_clusters)
        source = heads.categorical
        categorical = _linear(source.in_features, heads.n_clusters, source.weight.device)
        with torch.no_grad():
            categorical.weight.copy_(source.weight[rows])
            categorical.bias.copy_(source.bias[rows])
        return cls(categorical, copy.deepcopy(heads.instance) if with_instance else None)

    def forward(self, h: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.categorical(h)
        if self.instance is None:
            return logits
        return logits, F.normalize(self.instance(h), dim=1)


class CentroidLogits(nn.Module):
    """The logits of a k-means partition kept by the floor, from the input
    alone (no network runs)."""

    centers: torch.Tensor
    variance: torch.Tensor

    def __init__(self, centers: torch.Tensor, variance: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("centers", centers.clone())
        self.register_buffer("variance", variance.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return centroid_logits(x.float(), self.centers, self.variance)


class ConsensusCopy(nn.Module):
    """:class:`~skcdc.training.consensus.RestartConsensus` over inference
    copies of its runs (each returning its kept head's logits, and the
    reference run its instance vectors too, ``with_instance``)."""

    def __init__(
        self,
        runs: list[nn.Module],
        centers: torch.Tensor,
        variance: torch.Tensor,
        reference: int,
        with_instance: bool,
    ) -> None:
        super().__init__()
        self.consensus = RestartConsensus(runs, [0] * len(runs), centers, float(variance), reference)
        self.reference = reference
        self.with_instance = with_instance

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        outputs = [run(x) for run in self.consensus.runs]
        if not self.with_instance:
            return self.consensus.combine(outputs)
        z = outputs[self.reference][1]
        outputs[self.reference] = outputs[self.reference][0]
        return self.consensus.combine(outputs), z
