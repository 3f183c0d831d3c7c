"""The training plan: every ``"auto"`` of :class:`~skcdc.CDCClustering` resolved once.

:func:`make_plan` turns the estimator's parameters and the shape of the data
(rows, images or vectors, device) into a frozen :class:`Plan`; training reads
nothing else. Budgets are counted in epochs (samples seen), with a floor in optimiser
steps for tiny data sets and a ceiling in samples seen for large ones, so the
same rule holds on any machine and a fit's cost grows about linearly with
its rows.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from .devices import native_bfloat16
from .loss import CDCLoss
from .networks import ImageCDCNetwork, VectorCDCNetwork
from .views import SMALL_IMAGE_SIDE, SUBPIXEL_SIDE, default_augmentation

__all__ = ["LossSettings", "Plan", "epoch_steps", "make_plan"]

# Restarts on small data sets, where a run's seed decides most and runs are
# short: every run trains to the end and the best-scored one, or the
# consensus of all, is kept.
SMALL_DATA = 5000
N_INIT_SMALL_VECTORS = 4
N_INIT_SMALL_IMAGES = 3
N_INIT_LARGE_VECTORS = 3
# Above this many rows a single run: its epochs are long enough that the
# seed decides little, and restarts would multiply the cost.
LARGE_DATA = 100_000
# Image mode's refinement stage restarts at any size: its runs are short next
# to the end-to-end stage.
N_INIT_REFINEMENT = 3
# The CDC phase of a run: on vectors 30 epochs up to SMALL_DATA samples and 20
# above, where three restarts of 20 epochs cost about one run of 50; on images,
# where one run trains the encoder, 50, or 30 with neighbour positives, which
# reach as much in fewer epochs.
EPOCHS_SMALL_VECTORS = 30
EPOCHS_LARGE_VECTORS = 20
EPOCHS_IMAGES = 50
EPOCHS_IMAGES_NEIGHBOURS = 30
# neighbour_share="auto": half the second views from pixel neighbours for
# images held in memory that the small-image recipe without sub-pixel moves
# augments (MNIST-like images, whose pixel neighbours mostly share a class);
# none for smaller, larger or streamed ones.
NEIGHBOUR_SHARE_AUTO = 0.5
# Self-labelling on vectors (and in image mode's refinement stage).
SELF_LABELLING_EPOCHS = 10
# Samples one vector run sees in each phase at most: the epoch counts above
# shrink as the data grows, so that a fit's cost grows about linearly with the
# rows (a million rows: 8 epochs, then 2 of self-labelling).
MAX_SAMPLES_CDC = 8_000_000
MAX_SAMPLES_SELF_LABELLING = 2_000_000
SELF_LABELLING_THRESHOLD = 0.95
# A tiny data set makes one or two optimiser steps per epoch; training
# converges by steps, so each vector phase makes at least this many.
MIN_STEPS_CDC = 100
MIN_STEPS_SELF_LABELLING = 50
# Equal cluster sizes are asked of a window of at least this many samples
# per cluster: beyond the batch when there are many clusters.
BALANCE_SAMPLES_PER_CLUSTER = 8
WEIGHT_DECAY = 1e-4
DEFAULT_INSTANCE_DIM = 128
# The training outputs (N x K probabilities, N x d instance vectors) are kept
# up to this many values (200 MB of float32); above, a fit keeps the labels
# and ``transform`` gives the outputs block by block. The consensus of
# restarts reads every run's outputs, so it needs them kept.
KEEP_OUTPUTS_MAX_VALUES = 50_000_000


@dataclass(frozen=True)
class LossSettings:
    """The CDC loss's settings, resolved (see :class:`~skcdc.loss.CDCLoss`)."""

    tau_c: float
    tau_z: float
    negative_weighting: str
    equipartition: str
    entropy_weight: float
    sinkhorn_epsilon: float
    anchor_weight: float
    balance_window: int

    def criterion(self) -> CDCLoss:
        return CDCLoss(**asdict(self))


@dataclass(frozen=True)
class Plan:
    """How one stage of a fit trains; built by :func:`make_plan`.

    ``network`` is the class built for each run with ``network_params``;
    ``consensus`` says whether the consensus of the ``n_init`` runs competes
    with the best-scored run; ``kmeans_floor`` whether k-means on the input
    competes with the kept partition (:mod:`skcdc.training.floor`);
    ``keep_outputs`` whether the runs' logits and instance vectors of the
    training data are kept (else only their labels); ``neighbour_share`` how
    often an image's second view is one of its pixel neighbours (image mode,
    ``CDCClustering(neighbour_share=...)``);
    ``refinement`` is image mode's second stage (a plan over the trained
    backbone's features) or None.
    """

    images: bool
    n_clusters: int
    network: type[nn.Module]
    network_params: Mapping[str, Any]
    augmentation: Callable | None
    loss: LossSettings
    n_neighbors: int
    metric: str
    n_init: int
    batch_size: int
    epochs: int
    self_labelling_epochs: int
    learning_rate: float
    mixed_precision: bool
    device: torch.device
    consensus: bool
    keep_outputs: bool = True
    kmeans_floor: bool = False
    neighbour_share: float = 0.0
    self_labelling_threshold: float = SELF_LABELLING_THRESHOLD
    weight_decay: float = WEIGHT_DECAY
    refinement: Plan | None = field(default=None)

    @property
    def epochs_per_run(self) -> int:
        """Epochs of one run, all its phases together."""
        return self.epochs + self.self_labelling_epochs

    def identity(self) -> str:
        """What makes a run of this plan, for checkpoints: everything but the device."""
        return repr(replace(self, device=torch.device("cpu")))


def make_plan(
    params: Mapping[str, Any],
    *,
    n_samples: int,
    images: bool,
    image_shape: tuple[int, ...] | None = None,
    streamed: bool = False,
    device: torch.device,
) -> Plan:
    """Resolve the estimator's parameters for data of this shape on ``device``.

    Parameters
    ----------
    params : mapping
        ``CDCClustering.get_params()``, already validated.
    n_samples : int
        Training rows (images or vectors).
    images : bool
        Image mode (the encoder trained end to end) or vectors.
    image_shape : tuple of int, default=None
        (C, H, W) of the images, for the default augmentation.
    streamed : bool, default=False
        Images read from a dataset or a folder, not held in memory.
    device : torch.device
        Where training runs.
    """
    batch_size = min(params["batch_size"], n_samples)
    n_init = _n_init(params["n_init"], n_samples, images)
    steps_per_epoch = epoch_steps(n_samples, batch_size)
    neighbour_share = (
        _neighbour_share(params["neighbour_share"], image_shape, streamed) if images else 0.0
    )
    epochs = params["epochs"]
    if epochs == "auto":
        epochs = _epochs(n_samples, steps_per_epoch, images, neighbour_share)
    network, network_params = _network(params["network"], params["network_params"], images)
    # Image mode's score reads the instance vectors of every image.
    keep_outputs = images or _keeps_outputs(n_samples, network_params, params["n_clusters"])
    plan = Plan(
        images=images,
        n_clusters=params["n_clusters"],
        network=network,
        network_params=network_params,
        augmentation=_augmentation(params["augmentation"], image_shape) if images else None,
        loss=_loss(params, images),
        n_neighbors=params["n_neighbors"],
        metric=params["metric"],
        n_init=n_init,
        batch_size=batch_size,
        epochs=epochs,
        self_labelling_epochs=_self_labelling_epochs(
            params["self_labelling_epochs"], n_samples, steps_per_epoch, images
        ),
        learning_rate=params["learning_rate"],
        mixed_precision=_mixed_precision(params["mixed_precision"], device, images),
        device=device,
        # The runs' consensus competes with the best run on vectors only: an
        # image network ends in one run's heads, which the refinement replaces.
        consensus=n_init > 1 and not images and keep_outputs,
        keep_outputs=keep_outputs,
        # k-means with restarts is cheap next to training up to LARGE_DATA
        # rows, and the comparison reads the kept outputs.
        kmeans_floor=(
            params["kmeans_floor"] and not images and keep_outputs and n_samples <= LARGE_DATA
        ),
        neighbour_share=neighbour_share,
    )
    if images and params["network"] == "auto":
        refine_epochs = epochs if params["refine_epochs"] == "auto" else params["refine_epochs"]
        if refine_epochs > 0:
            plan = replace(
                plan,
                refinement=_refinement(plan, params, n_samples, steps_per_epoch, refine_epochs),
            )
    return plan


def _keeps_outputs(n_samples: int, network_params: Mapping[str, Any], n_clusters: int) -> bool:
    width = n_clusters + network_params.get("instance_dim", DEFAULT_INSTANCE_DIM)
    return n_samples * width <= KEEP_OUTPUTS_MAX_VALUES


def epoch_steps(n_samples: int, batch_size: int) -> int:
    """Optimiser steps in one epoch: the engine drops the last partial batch."""
    return max(n_samples // batch_size, 1)


def _n_init(n_init: int | str, n_samples: int, images: bool) -> int:
    if n_init != "auto":
        return int(n_init)
    if n_samples <= SMALL_DATA:
        return N_INIT_SMALL_IMAGES if images else N_INIT_SMALL_VECTORS
    # Full restarts of an encoder trained end to end on many images would
    # multiply the longest part of a fit.
    return 1 if images or n_samples > LARGE_DATA else N_INIT_LARGE_VECTORS


def _neighbour_share(
    requested: float | str, image_shape: tuple[int, ...] | None, streamed: bool
) -> float:
    if requested != "auto":
        return float(requested)
    side = max(image_shape[1:]) if image_shape else 0
    small = SUBPIXEL_SIDE <= side < SMALL_IMAGE_SIDE
    return NEIGHBOUR_SHARE_AUTO if small and not streamed else 0.0


def _epochs(n_samples: int, steps_per_epoch: int, images: bool, neighbour_share: float) -> int:
    if images:
        return EPOCHS_IMAGES_NEIGHBOURS if neighbour_share > 0 else EPOCHS_IMAGES
    epochs = EPOCHS_SMALL_VECTORS if n_samples <= SMALL_DATA else EPOCHS_LARGE_VECTORS
    epochs = min(epochs, max(MAX_SAMPLES_CDC // n_samples, 1))
    return max(epochs, _ceil_div(MIN_STEPS_CDC, steps_per_epoch))


def _self_labelling_epochs(
    requested: int | str, n_samples: int, steps_per_epoch: int, images: bool
) -> int:
    if requested != "auto":
        return int(requested)
    # Self-labelling needs an encoder that already clusters; while an image
    # encoder is trained end to end, the refinement stage does it instead.
    if images:
        return 0
    epochs = min(SELF_LABELLING_EPOCHS, max(MAX_SAMPLES_SELF_LABELLING // n_samples, 1))
    return max(epochs, _ceil_div(MIN_STEPS_SELF_LABELLING, steps_per_epoch))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _loss(params: Mapping[str, Any], images: bool) -> LossSettings:
    equipartition = params["equipartition"]
    if equipartition == "auto":
        # An encoder trained end to end can buy a lower contrastive loss by
        # putting every sample in one cluster; only the hard constraint holds
        # it back. On fixed vectors the soft one clusters better.
        equipartition = "sinkhorn" if images else "entropy"
    return LossSettings(
        tau_c=params["tau_c"],
        tau_z=params["tau_z"],
        negative_weighting=params["negative_weighting"],
        equipartition=equipartition,
        entropy_weight=params["entropy_weight"],
        sinkhorn_epsilon=0.5,
        # With Sinkhorn, a stronger tie of the argmax to the balanced training
        # assignments keeps an end-to-end encoder from collapsing clusters at
        # prediction time.
        anchor_weight=3.0 if images else 1.0,
        balance_window=BALANCE_SAMPLES_PER_CLUSTER * params["n_clusters"],
    )


def _mixed_precision(requested: bool, device: torch.device, images: bool) -> bool:
    """bfloat16 autocast where the device computes it natively; on the CPU
    only for vectors (end-to-end image training lost accuracy in bfloat16 on
    the CPU and saved little time)."""
    return requested and native_bfloat16(device) and (device.type == "cuda" or not images)


def _augmentation(augmentation: Callable | str, image_shape: tuple[int, ...] | None) -> Callable:
    if not isinstance(augmentation, str):
        return augmentation
    if image_shape is None:
        raise ValueError("The default augmentation needs the shape of the images.")
    return default_augmentation(*image_shape)


def _network(
    network: str | type[nn.Module], network_params: Mapping | None, images: bool
) -> tuple[type[nn.Module], Mapping[str, Any]]:
    """The network class and its keyword arguments, checked against its signature."""
    kwargs = {"instance_dim": DEFAULT_INSTANCE_DIM, **(network_params or {})}
    if network == "auto":
        network = ImageCDCNetwork if images else VectorCDCNetwork
    elif not (isinstance(network, type) and issubclass(network, nn.Module)):
        raise TypeError(
            f"network must be 'auto' or a torch.nn.Module subclass, got {network!r}."
        )
    accepted = inspect.signature(network).parameters
    given = {"n_clusters"} | ({"in_channels", "image_size"} if images else {"in_features"})
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    if not takes_any:
        missing = (given | {"instance_dim"}) - set(accepted)
        if missing:
            raise TypeError(
                f"network {network.__name__} must accept the keyword arguments "
                f"{sorted(given | {'instance_dim'})}; it is missing {sorted(missing)}."
            )
        unknown = set(kwargs) - set(accepted)
        if unknown:
            settable = sorted(set(accepted) - given - {"self"})
            raise ValueError(
                f"network_params has keys {sorted(unknown)} that {network.__name__} does not "
                f"take; it takes {settable}."
            )
    reserved = set(kwargs) & given
    if reserved:
        raise ValueError(
            f"network_params may not set {sorted(reserved)}: they are read from the data "
            "and n_clusters."
        )
    return network, MappingProxyType(kwargs)


def _refinement(
    plan: Plan, params: Mapping[str, Any], n_samples: int, steps_per_epoch: int, epochs: int
) -> Plan:
    """Image mode's second stage: the default vector network on the trained
    backbone's features, with neighbour positives, restarted and ending in
    self-labelling like a frozen-feature fit."""
    shared = {k: v for k, v in plan.network_params.items() if k in ("instance_dim", "n_heads")}
    features = {**params, "network": "auto", "network_params": shared}
    n_init = N_INIT_REFINEMENT if params["n_init"] == "auto" else params["n_init"]
    return replace(
        plan,
        images=False,
        network=VectorCDCNetwork,
        network_params=MappingProxyType(shared),
        augmentation=None,
        loss=_loss(features, images=False),
        n_init=n_init,
        epochs=epochs,
        self_labelling_epochs=_self_labelling_epochs(
            params["self_labelling_epochs"], n_samples, steps_per_epoch, images=False
        ),
        # The image network's precision carries over to its features' stage.
        mixed_precision=plan.mixed_precision,
        # The image network is one backbone followed by one run's heads.
        consensus=False,
        kmeans_floor=False,
        keep_outputs=_keeps_outputs(n_samples, shared, params["n_clusters"]),
        neighbour_share=0.0,
        refinement=None,
    )
