"""One training run: a network built from one seed and trained through its phases.

A run is the unit that restarts repeat (:mod:`skcdc.training.stages`): it
draws everything random from its own seed, so it gives the same network
whether it trains alone, among restarts or after a resume from a checkpoint.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import RandomSampler

from .. import files
from .._inference import forward, predict_labels
from .._plan import Plan
from ..distributed import SINGLE, World
from ..exceptions import CheckpointMismatchError
from ..images import StreamedImages
from ..loss import SelfLabelLoss
from ..neighbours import neighbour_search
from ..networks import ChannelNormalizer, InputScaler, SelectHead
from ..scoring import neighbour_agreement, neighbour_graph
from ..sources import DatasetRows, float32_tensor, is_streamed, iter_blocks, row_range
from ..views import AugmentedViews, NeighbourViews, to_float_images
from .callbacks import Checkpoint, ProgressBar
from .engine import Engine, Phase
from .floor import HELD_OUT_FACTOR
from .relocation import EmptyClusterRelocation

__all__ = [
    "Run", "TrainingData", "build_network", "input_normalizer", "make_views", "train_run",
]

Views = NeighbourViews | AugmentedViews
# What a run trains on: vectors in memory or in a memmap, rows of a dataset,
# or images in memory or streamed from files.
TrainingData = np.ndarray | torch.Tensor | DatasetRows | StreamedImages


@dataclass
class Run:
    """What one training from one seed leaves: the network (ending in its
    kept head), its history, its labels of the training data and their
    label-free score; its logits and instance vectors of the training data
    when the plan keeps them (``Plan.keep_outputs``), else None."""

    network: nn.Module
    best_head: int
    history: pd.DataFrame
    labels: np.ndarray
    logits: np.ndarray | None
    z: np.ndarray | None
    score: float
    stop_reason: str | None

    def kept_logits(self) -> np.ndarray:
        """The logits of the training data, which a plan that reads them keeps."""
        if self.logits is None:
            raise RuntimeError("this run kept no logits of its training data (Plan.keep_outputs)")
        return self.logits

    def trunk(self) -> nn.Sequential:
        """The network of a run fresh from :func:`train_run` without its
        final :class:`~skcdc.networks.SelectHead`: every head's outputs."""
        network = self.network
        if not (isinstance(network, nn.Sequential) and isinstance(network[-1], SelectHead)):
            raise TypeError(f"{type(network).__name__} is not a trained run's network")
        return network[:-1]


def make_views(
    plan: Plan, X: Any, verbose: int = 0, world: World = SINGLE, held_out: bool = False
) -> Views:
    """What draws the two views of each sample: augmentations of an image
    (images move to the device once, as uint8, so batches never cross the
    bus) or a nearest neighbour of a vector (one search serves every run; its
    queries are shared out among the ranks of ``world``; with ``held_out``
    it also finds the neighbours that :mod:`.floor` reads). Vectors in memory
    move to the device once; streamed ones (:mod:`skcdc.sources`) are read a
    batch at a time."""
    if plan.images:
        # make_plan gives every image plan an augmentation.
        assert plan.augmentation is not None
        if isinstance(X, StreamedImages):
            if plan.neighbour_share > 0:
                raise ValueError(
                    "neighbour_share needs the images held in memory, to search their pixel "
                    "neighbours: pass them as an array, or set neighbour_share=0 for a "
                    "dataset or a folder."
                )
            return AugmentedViews(X, plan.augmentation, plan.device)
        images = X.to(plan.device)
        neighbors = None
        if plan.neighbour_share > 0:
            neighbors, _ = neighbour_search(
                to_float_images(images.flatten(1)), plan.n_neighbors, device=plan.device,
                verbose=verbose, world=world,
            )
        return AugmentedViews(
            images, plan.augmentation, plan.device, neighbors=neighbors,
            neighbour_share=plan.neighbour_share, world=world,
        )
    if is_streamed(X):
        data = X
    else:
        # A contiguous copy: torch cannot hold numpy's negative strides (X[::-1]).
        data = torch.tensor(np.ascontiguousarray(X), dtype=torch.float32, device=plan.device)
    return NeighbourViews(
        data, plan.n_neighbors, metric=plan.metric, device=plan.device, verbose=verbose,
        world=world, n_held_out=(HELD_OUT_FACTOR - 1) * plan.n_neighbors if held_out else 0,
    )


def input_normalizer(plan: Plan, X: Any, world: World = SINGLE) -> nn.Module:
    """Input scaling fitted on X, once per stage and shared by its runs:
    per-channel standardisation of images, centring and one global scale of
    vectors (each rank of ``world`` reading its block of streamed rows)."""
    if plan.images:
        return ChannelNormalizer.from_images(X)
    if is_streamed(X):
        rows = row_range(X, world.shard(len(X)))
        return InputScaler.from_blocks(iter_blocks(rows), X.shape[1], add_up=world.all_sum)
    return InputScaler.from_data(float32_tensor(X))


def build_network(
    plan: Plan, normalizer: nn.Module, input_shape: tuple[int, ...]
) -> nn.Sequential:
    """A copy of ``normalizer`` followed by a freshly initialised network of the
    plan for inputs of ``input_shape`` (one sample's)."""
    if plan.images:
        shape = {"in_channels": input_shape[0], "image_size": tuple(input_shape[1:])}
    else:
        shape = {"in_features": input_shape[0]}
    return nn.Sequential(
        copy.deepcopy(normalizer),
        plan.network(**shape, n_clusters=plan.n_clusters, **plan.network_params),
    )


def train_run(
    plan: Plan,
    X: TrainingData,
    views: Views,
    normalizer: nn.Module,
    seed: int,
    *,
    checkpoint: tuple[str | os.PathLike, dict] | None = None,
    verbose: int = 0,
    world: World = SINGLE,
) -> Run:
    """Train one run from ``seed`` to the end (or until training stops), its
    network starting with a copy of ``normalizer`` (:func:`input_normalizer`).

    ``checkpoint`` is ``(path, identity)``: the run resumes from the file when
    it holds a run of the same identity, refuses one of another, and saves
    there after every epoch (rank 0 writes it). Every rank of ``world`` ends
    with the same network and labels.
    """
    device = plan.device
    # A fork of torch's global generators: training draws from its own seed
    # while the user's random state stays untouched.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        network = build_network(plan, normalizer, tuple(X.shape[1:])).to(device)
        if device.type == "cuda" and plan.images:
            network = network.to(memory_format=torch.channels_last)
        if world.distributed:
            # The same weights on every rank, but each rank its own draws of
            # augmentations (image mode's global generator).
            torch.manual_seed(seed + 7919 * (world.rank + 1))
        engine = _engine(plan, network, views, len(X), seed, verbose, world)
        if checkpoint is not None:
            _attach_checkpoint(engine, *checkpoint, write=world.is_main)
        engine.fit()
    best_head = int(np.argmin(engine.head_losses))
    network.append(SelectHead(best_head))
    logits = z = None
    if plan.keep_outputs:
        logits, z = forward(network, X, world)
        labels = logits.argmax(axis=1).astype(np.int32)
    else:
        labels = predict_labels(network, X, world)
    return Run(
        network=network,
        best_head=best_head,
        history=pd.DataFrame(engine.logs),
        labels=labels,
        logits=logits,
        z=z,
        score=run_score(plan, labels, z, views),
        stop_reason=engine.stop_reason,
    )


def run_score(plan: Plan, labels: np.ndarray, z: np.ndarray | None, views: Views) -> float:
    """The label-free score of training predictions: agreement with the
    input's neighbour graph (vectors) or with neighbours in the instance
    space (images, whose pixels make a poor graph)."""
    if isinstance(views, NeighbourViews):
        neighbors = views.neighbors.cpu().numpy()
    else:
        neighbors = neighbour_graph(z, plan.n_neighbors)
    return neighbour_agreement(labels, neighbors)


def _engine(
    plan: Plan,
    network: nn.Module,
    views: Views,
    n_samples: int,
    seed: int,
    verbose: int,
    world: World,
) -> Engine:
    # foreach: one kernel per operation over all parameters, where torch's CPU
    # default loops over them in Python, a tenth of a small network's step.
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=plan.learning_rate, weight_decay=plan.weight_decay, foreach=True
    )
    callbacks: list = [EmptyClusterRelocation()]
    if verbose and world.is_main:
        callbacks.append(ProgressBar(desc="CDCClustering"))
    return Engine(
        network,
        _phases(plan, views),
        views,
        optimizer,
        # One permutation, the same on every rank: the global batches.
        sampler=RandomSampler(range(n_samples), generator=torch.Generator().manual_seed(seed)),
        batch_size=plan.batch_size,
        device=plan.device,
        # The same on every rank: each draws the global batch's neighbours
        # and keeps those of its share.
        generator=torch.Generator(device=plan.device).manual_seed(seed + 1),
        n_clusters=plan.n_clusters,
        mixed_precision=plan.mixed_precision,
        callbacks=callbacks,
        world=world,
    )


def _phases(plan: Plan, views: Views) -> list[Phase]:
    """The CDC phase, then self-labelling when the plan has it."""
    phases = [Phase("cdc", plan.loss.criterion(), plan.epochs)]
    if plan.self_labelling_epochs > 0:
        # A confident prediction becomes the target of the same sample's
        # other view, never of a neighbour's: a neighbour of another class
        # would learn the wrong label.
        phases.append(
            Phase(
                "self-labelling",
                SelfLabelLoss(plan.self_labelling_threshold),
                plan.self_labelling_epochs,
                views=views.of_itself(),
            )
        )
    return phases


def _attach_checkpoint(
    engine: Engine, path: str | os.PathLike, identity: dict, write: bool = True
) -> None:
    """Resume ``engine`` from ``path`` when it holds this run, and have it
    save there as it trains when ``write``."""
    if os.path.exists(path):
        payload = files.load(path, kind="checkpoint")
        if payload.get("run") != identity:
            raise CheckpointMismatchError(
                f"{path} holds a run of other data or other parameters; point "
                "checkpoint_dir at an empty folder, or delete the file to start afresh."
            )
        engine.load_state_dict(payload["state"])
    if write:
        engine.callbacks.append(Checkpoint(path, metadata={"run": identity}))
