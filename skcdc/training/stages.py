"""A fit's training: restarts of one stage, their selection, image mode's refinement.

:func:`train` runs a :class:`~skcdc._plan.Plan`: ``n_init`` runs from seeds
drawn from one random state, kept by the label-free score (or replaced by their
consensus when it scores at least as well), then, in image mode, the
refinement stage: the same training, by a plan of its own, over the features
of the backbone the first stage trained.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import torch
from torch import nn

from .._inference import module_device, output_blocks, softmax
from .._plan import LARGE_DATA, Plan
from ..distributed import SINGLE, World
from ..images import StreamedImages
from ..neighbours import NeighbourSearch
from ..networks import BackboneFeatures, ImageCDCNetwork, SelectHead
from ..scoring import neighbour_agreement
from ..sources import fingerprint, is_streamed
from ..views import NeighbourViews
from .consensus import RestartConsensus, fit_consensus
from .engine import INTERRUPTED
from .floor import kmeans_floor
from .runs import Run, TrainingData, input_normalizer, make_views, train_run

__all__ = ["Result", "train"]


@dataclass
class Result:
    """What a fit's training leaves.

    ``run`` is the kept run (its network predicts); ``run_scores`` the
    label-free score of every run of the first stage, ``refinement_scores``
    those of the refinement stage's runs (empty when it did not run);
    ``consensus`` whether ``run.network`` is the consensus of the runs;
    ``floor`` whether it is k-means' partition (:mod:`.floor`), and
    ``floor_scores`` the held-out neighbour agreement of the trained
    partition and of k-means' (empty when k-means did not run);
    ``planned_epochs`` how many epochs the plan had, all stages together;
    ``neighbour_search`` the report of the neighbour search of vector input
    (of the refinement stage in image mode), None where there was none.
    """

    run: Run
    run_scores: list[float]
    planned_epochs: int
    stop_reason: str | None = None
    consensus: bool = False
    floor: bool = False
    floor_scores: tuple[float, ...] = ()
    refinement_scores: list[float] = field(default_factory=list)
    neighbour_search: NeighbourSearch | None = None


def train(
    plan: Plan,
    X: TrainingData,
    random_state: np.random.RandomState,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    verbose: int = 0,
    world: World = SINGLE,
) -> Result:
    """Train ``plan`` on validated X (a float table or a uint8/float image
    tensor), in this process or, data-parallel, in every process of ``world``
    (each rank calls it alike and gets the same result)."""
    floor = plan.kmeans_floor and not is_streamed(X)
    views = make_views(plan, X, verbose, world, held_out=floor)
    seeds = [_draw_seed(random_state) for _ in range(plan.n_init)]
    runs, stop_reason = _train_runs(plan, X, views, seeds, checkpoint_dir, verbose, world)
    result = Result(
        run=max(runs, key=lambda run: run.score),
        run_scores=[run.score for run in runs],
        planned_epochs=plan.epochs_per_run,
        stop_reason=stop_reason,
        neighbour_search=getattr(views, "search", None),
    )
    # The plan asks for the consensus and the floor on vectors only (their
    # views are neighbours), and refines images only.
    if stop_reason is not None:
        return result
    if plan.consensus and len(runs) > 1 and isinstance(views, NeighbourViews):
        result = _consensus_or_best(result, runs, views, _draw_seed(random_state))
    if floor and isinstance(X, np.ndarray) and isinstance(views, NeighbourViews):
        result = kmeans_floor(
            result, X, views, plan.n_clusters, _draw_seed(random_state), world
        )
    if plan.refinement is not None and isinstance(X, (torch.Tensor, StreamedImages)):
        subfolder = None if checkpoint_dir is None else Path(checkpoint_dir) / "refine"
        result = _refine(
            plan.refinement, result, X, _draw_seed(random_state), subfolder, verbose, world
        )
    return result


def _draw_seed(random_state: np.random.RandomState) -> int:
    return int(random_state.randint(np.iinfo(np.int32).max))


def _train_runs(
    plan: Plan,
    X: TrainingData,
    views,
    seeds: list[int],
    checkpoint_dir: str | os.PathLike | None,
    verbose: int,
    world: World,
) -> tuple[list[Run], str | None]:
    """Train one run per seed, stopping at the first run that stops early."""
    normalizer = input_normalizer(plan, X, world)
    # What identifies a run in a checkpoint: the data, the seed and the plan.
    data_hash = None
    if checkpoint_dir is not None:
        # joblib hashes a tensor by its pickle, which differs between equal
        # tensors; the pixels' bytes do not.
        if isinstance(X, np.ndarray) and not is_streamed(X):
            data_hash = joblib.hash(X)
        elif isinstance(X, torch.Tensor):
            data_hash = joblib.hash(X.cpu().numpy())
        else:
            data_hash = fingerprint(X)
    runs: list[Run] = []
    for index, seed in enumerate(seeds):
        checkpoint = None
        if checkpoint_dir is not None:
            identity = {"data": data_hash, "seed": seed, "plan": plan.identity()}
            checkpoint = (Path(checkpoint_dir) / f"run-{index}.pt", identity)
        try:
            run = train_run(
                plan, X, views, normalizer, seed, checkpoint=checkpoint, verbose=verbose,
                world=world,
            )
        except KeyboardInterrupt:
            # Interrupted before this run finished an epoch: keep the earlier runs.
            if not runs:
                raise
            return runs, INTERRUPTED
        runs.append(run)
        if run.stop_reason is not None:
            return runs, run.stop_reason
    return runs, None


def _consensus_or_best(
    result: Result, runs: list[Run], views: NeighbourViews, seed: int
) -> Result:
    """The consensus of every run when its label-free score is at least the
    best run's, else the best run: where runs disagree, the consensus keeps
    what most of them found, but now and then the majority shares an error
    that the best-scored run avoided, and the score catches that."""
    best = result.run
    centers, variance, _ = fit_consensus(
        [softmax(run.kept_logits()) for run in runs], seed, reference=runs.index(best)
    )
    network = RestartConsensus(
        [run.trunk() for run in runs],
        [run.best_head for run in runs],
        torch.from_numpy(centers),
        variance,
        reference=runs.index(best),
    ).to(module_device(best.network))
    # From the runs' training logits: no second pass of every run over X.
    with torch.inference_mode():
        combined = network.combine(
            [torch.from_numpy(run.kept_logits()).to(network.centers.device) for run in runs]
        )
    logits = combined.cpu().numpy()
    labels = logits.argmax(axis=1).astype(np.int32)
    score = neighbour_agreement(labels, views.neighbors.cpu().numpy())
    if score < best.score:
        return result
    consensus = replace(best, network=network, labels=labels, logits=logits, score=score)
    return replace(result, run=consensus, consensus=True)


def _features(encoder: nn.Module, X: Any, scratch: Path, world: World) -> np.ndarray:
    """The encoder's features of X: in memory for images held in memory, up
    to ``LARGE_DATA`` of them (each rank of ``world`` computing those of its
    block, all getting all); for more, or for streamed images, whose memory
    must not grow with their number, written block by block to a ``.npy``
    file in ``scratch`` and read back as a memmap, which the stage then
    streams."""
    if X.shape[0] <= LARGE_DATA and not isinstance(X, StreamedImages):
        rows = world.shard(len(X))
        return world.gather_rows(np.concatenate(list(output_blocks(encoder, X, rows=rows))))
    blocks = output_blocks(encoder, X)
    first = next(blocks)
    shape = (X.shape[0], first.shape[1])
    out = np.lib.format.open_memmap(scratch / "features.npy", "w+", np.float32, shape)
    start = 0
    for block in itertools.chain([first], blocks):
        out[start : start + len(block)] = block
        start += len(block)
    out.flush()
    del out
    return np.load(scratch / "features.npy", mmap_mode="r")


def backbone_encoder(network: nn.Module) -> nn.Sequential:
    """Image mode's input normalisation and backbone, without the heads."""
    if not (isinstance(network, nn.Sequential) and isinstance(network[1], ImageCDCNetwork)):
        raise TypeError(f"{type(network).__name__} is not an image network of skcdc's")
    return nn.Sequential(network[0], BackboneFeatures(network[1].backbone))


def _refine(
    plan: Plan,
    result: Result,
    X: torch.Tensor | StreamedImages,
    seed: int,
    checkpoint_dir: Path | None,
    verbose: int,
    world: World,
) -> Result:
    """SCAN's clustering step with CDC's loss: freeze the backbone the
    end-to-end stage trained and cluster its features of the training images
    with neighbour positives. Contrastive training on augmentations leaves
    features whose neighbours share a class more often than the head's argmax
    does."""
    run = result.run
    encoder = backbone_encoder(run.network)
    planned = result.planned_epochs + plan.epochs_per_run
    with tempfile.TemporaryDirectory(prefix="skcdc-features-") as scratch:
        features = _features(encoder, X, Path(scratch), world)
        try:
            stage = train(
                plan, features, np.random.RandomState(seed), checkpoint_dir=checkpoint_dir,
                verbose=verbose, world=world,
            )
        except KeyboardInterrupt:
            # Interrupted before the refinement finished an epoch: the first stage stands.
            return replace(result, planned_epochs=planned, stop_reason=INTERRUPTED)
        finally:
            del features
    offset = run.history["epoch"].iloc[-1]
    history = stage.run.history.assign(
        epoch=stage.run.history["epoch"] + offset,
        phase=stage.run.history["phase"].map(lambda p: "refine" if p == "cdc" else f"refine-{p}"),
    )
    refined = replace(
        stage.run,
        network=nn.Sequential(*encoder, *stage.run.trunk(), SelectHead(stage.run.best_head)),
        history=pd.concat([run.history, history], ignore_index=True),
        score=run.score,
    )
    return replace(
        result,
        run=refined,
        planned_epochs=planned,
        stop_reason=stage.stop_reason,
        refinement_scores=stage.run_scores,
        neighbour_search=stage.neighbour_search,
    )
