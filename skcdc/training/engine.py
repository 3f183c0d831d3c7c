"""The training engine: the loop, kept apart from the model and the estimator.

Batches are drawn through a ``torch.utils.data.Sampler`` of sample indices.
Under ``torchrun`` (:mod:`skcdc.distributed`) every rank draws the same global
batches, forwards its own share of each and hands the loss the gathered
outputs of all shares, so that the loss, the network and the views are the
same code in one process and in many.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import BatchSampler

from .._plan import epoch_steps
from ..distributed import SINGLE, World
from ..exceptions import DivergenceError
from ..loss import LossOutput

__all__ = ["DIVERGED", "INTERRUPTED", "Engine", "Phase"]

# Why an engine stopped before its last epoch (``Engine.stop_reason``).
INTERRUPTED = "interrupted"
DIVERGED = "diverged"


# ``views(index, generator) -> (view_a, view_b)``: the two views of a batch
# (views may also load a whole epoch's batches themselves: ``views.epoch``).
Views = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


class SizedSampler(Protocol):
    """What the engine draws its global batches from: sample indices, as
    many as ``len`` says (a torch ``RandomSampler``, for instance)."""

    def __iter__(self) -> Iterator[int]: ...

    def __len__(self) -> int: ...


@dataclass
class Phase:
    """A stretch of training with one loss: ``epochs`` epochs of ``criterion``.

    ``criterion(logits_a, z_a, logits_b, z_b, index=index) -> LossOutput``, e.g.
    :class:`~skcdc.loss.CDCLoss`; ``index`` holds the batch's sample indices
    for losses with per-sample targets. ``views``, when set, replaces the
    engine's views for this phase.
    """

    name: str
    criterion: Callable[..., LossOutput]
    epochs: int
    views: Views | None = None


def cluster_size_entropy(counts: torch.Tensor) -> float:
    """Entropy of the cluster sizes divided by ``log K``: 1 is perfectly balanced."""
    n_clusters = counts.numel()
    if n_clusters < 2:
        return 1.0
    p = counts.double() / counts.sum().clamp_min(1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum().item()
    return entropy / math.log(n_clusters)


class Engine:
    """Runs the CDC training loop.

    Parameters
    ----------
    network : nn.Module
        Maps a batch of inputs to ``(logits, z)``.
    phases : sequence of Phase
        Run in order with one optimiser: the CDC phase, then self-labelling,
        each with its own loss.
    views : callable
        ``views(index, generator) -> (view_a, view_b)`` for a batch of indices.
    optimizer : torch.optim.Optimizer
    sampler : SizedSampler
        Yields the sample indices of an epoch; ``len`` gives their number.
    batch_size : int
    device : torch.device
    generator : torch.Generator
        Source of all the randomness the views draw.
    n_clusters : int
    mixed_precision : bool
        Autocast the network to bfloat16 (the loss stays in float32). The
        caller decides where that pays: the training plan asks for it only
        where the device computes bfloat16 natively.
    callbacks : sequence of :class:`~skcdc.training.callbacks.Callback`
        Called around every epoch; their own state is part of
        :meth:`state_dict`, so a resumed run continues as an uninterrupted one.
    world : World
        The processes training together (:mod:`skcdc.distributed`):
        ``batch_size`` is the global batch, of which this process forwards
        its share; one process by default.

    Attributes
    ----------
    epoch : int
        Epochs completed, all phases together.
    cluster_counts : LongTensor of shape (n_heads, n_clusters)
        How many training samples each head put in each cluster (by the
        argmax that prediction uses) in the last epoch.
    head_losses : list of float
        Each categorical head's mean loss in the last epoch.
    logs : list of dict
        One record per completed epoch.
    stop_reason : str or None
        ``"interrupted"`` or ``"diverged"`` when training stopped early.
    """

    def __init__(
        self,
        network: nn.Module,
        phases: Sequence[Phase],
        views: Views,
        optimizer: torch.optim.Optimizer,
        *,
        sampler: SizedSampler,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator,
        n_clusters: int,
        mixed_precision: bool = False,
        callbacks: Sequence[Any] = (),
        world: World = SINGLE,
    ) -> None:
        self.network = network
        self.phases = list(phases)
        self.epochs = sum(phase.epochs for phase in self.phases)
        self.views = views
        self.optimizer = optimizer
        self.sampler = sampler
        self.batch_size = batch_size
        self.device = device
        self.generator = generator
        self.n_clusters = n_clusters
        self.mixed_precision = mixed_precision
        self.callbacks = list(callbacks)
        self.world = world
        self.epoch = 0
        self.head_losses: list[float] = []
        self.cluster_counts: torch.Tensor | None = None
        self.logs: list[dict[str, Any]] = []
        self.stop_reason: str | None = None

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch (the last partial batch is dropped)."""
        return epoch_steps(len(self.sampler), self.batch_size)

    def _autocast(self):
        if self.mixed_precision:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _run_epoch(self, phase: Phase) -> dict[str, float]:
        criterion = phase.criterion
        views = phase.views if phase.views is not None else self.views
        self.network.train()
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self.epoch)
        world = self.world
        # Every rank draws the same global batches and forwards its share;
        # the global batches wait here, in order, for their gathered outputs
        # (streamed images load batches ahead).
        global_batches: deque[list[int]] = deque()
        batches = _shares(
            BatchSampler(self.sampler, self.batch_size, drop_last=True), world, global_batches
        )
        counts: torch.Tensor | None = None
        head_losses: torch.Tensor | None = None
        # Summed on the device and read once per epoch: a .item() per batch
        # would make every CUDA step wait for the GPU.
        totals = {
            "loss": torch.zeros((), device=self.device),
            "contrastive": torch.zeros((), device=self.device),
        }
        n_batches = 0
        start = time.perf_counter()
        for index, view_a, view_b in _epoch(views, batches, self.generator, self.device):
            with self._autocast():
                outputs = (*self.network(view_a), *self.network(view_b))
            if world.distributed:
                # The global batch, the same on every rank (in float32, which
                # every backend gathers).
                outputs = tuple(world.gather(t.float()) for t in outputs)
                shared = global_batches.popleft()[: len(index) * world.size]
                index = torch.as_tensor(shared, device=index.device)
            logits_a, z_a, logits_b, z_b = outputs
            out = criterion(logits_a, z_a, logits_b, z_b, index=index)
            # A batch that gives the loss nothing to learn from (no confident
            # sample to self-label) makes no step.
            if out.loss.requires_grad:
                self.optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                world.sum_gradients(self.network.parameters())
                self.optimizer.step()
            # Cluster sizes per head, (H, K), from the argmax that prediction uses.
            batch_counts = _cluster_counts(logits_a.detach(), self.n_clusters)
            counts = batch_counts if counts is None else counts + batch_counts
            head_losses = out.per_head if head_losses is None else head_losses + out.per_head
            totals["loss"] += out.loss.detach()
            totals["contrastive"] += out.contrastive.detach()
            n_batches += 1
            for callback in self.callbacks:
                callback.on_step_end(self)
        if counts is None or head_losses is None:
            raise RuntimeError(
                f"An epoch of {phase.name} drew no batch of {self.batch_size} samples."
            )
        self.head_losses = (head_losses / n_batches).tolist()
        self.cluster_counts = counts
        best = int(torch.as_tensor(self.head_losses).argmin())
        return {
            "loss": totals["loss"].item() / n_batches,
            "contrastive": totals["contrastive"].item() / n_batches,
            "best_head": best,
            "cluster_entropy": cluster_size_entropy(counts[best]),
            "n_empty_clusters": int((counts[best] == 0).sum().item()),
            "largest_cluster": counts[best].max().item() / max(counts[best].sum().item(), 1),
            "time": time.perf_counter() - start,
        }

    # --------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly: weights, optimiser,
        callbacks, random generators, epoch, logs. Tensors are copied to the CPU."""
        state = self._weights_and_logs(_to_cpu)
        state["view_generator"] = self.generator.get_state()
        state["torch_rng"] = torch.get_rng_state()
        sampler_generator = getattr(self.sampler, "generator", None)
        if sampler_generator is not None:
            state["sampler_generator"] = sampler_generator.get_state()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any], *, rng: bool = True) -> None:
        """Restore a :meth:`state_dict`; ``rng=False`` keeps the generators as they are."""
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.head_losses = list(state["head_losses"])
        self.logs = [dict(log) for log in state["logs"]]
        for callback in self.callbacks:
            saved = state["callbacks"].get(type(callback).__name__)
            if saved is not None:
                callback.load_state_dict(_to_device(saved, self.device))
        for phase in self.phases:
            saved = state["criteria"].get(phase.name)
            if saved is not None and hasattr(phase.criterion, "load_state_dict"):
                phase.criterion.load_state_dict(_to_device(saved, self.device))
        if not rng:
            return
        self.generator.set_state(state["view_generator"])
        torch.set_rng_state(state["torch_rng"])
        sampler_generator = getattr(self.sampler, "generator", None)
        if sampler_generator is not None and "sampler_generator" in state:
            sampler_generator.set_state(state["sampler_generator"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    # ---------------------------------------------------------------- loop

    def fit(self) -> Engine:
        """Run the phases in order from ``self.epoch``, calling the callbacks.

        A NaN or infinite epoch loss, or a ``KeyboardInterrupt``, restores the
        weights of the last completed epoch and sets :attr:`stop_reason`
        (``"diverged"``, ``"interrupted"``) instead of leaving the network
        half-updated; when no epoch completed there is nothing to keep and the
        error propagates. CUDA running out of memory is re-raised with the
        batch size named.
        """
        # The same starting weights everywhere, whatever each rank built.
        self.world.broadcast_module(self.network)
        restore_batch_norm = self.world.use_global_batch_norm(self.network)
        last_good = self._snapshot()
        for callback in self.callbacks:
            callback.on_train_begin(self)
        try:
            for phase in self._remaining_phases():
                log: dict[str, Any] = {
                    "epoch": self.epoch + 1, "phase": phase.name, **self._run_epoch(phase)
                }
                if not math.isfinite(log["loss"]):
                    self.stop_reason = DIVERGED
                    break
                self.epoch += 1
                self.logs.append(log)
                for callback in self.callbacks:
                    callback.on_epoch_end(self, log)
                # A callback may change the weights from what its rank saw
                # (relocation cuts from its own head inputs): rank 0's stand.
                self.world.broadcast_module(self.network)
                # After the callbacks, which may change the weights (relocation),
                # and before the checkpoint hook, so that an interrupt while a
                # file is written still finds this epoch kept.
                last_good = self._snapshot()
                for callback in self.callbacks:
                    callback.on_epoch_saved(self)
        except KeyboardInterrupt:
            if self.epoch == 0:
                raise
            self.stop_reason = INTERRUPTED
        except torch.cuda.OutOfMemoryError as exc:
            raise torch.cuda.OutOfMemoryError(
                f"CUDA ran out of memory training with batch_size={self.batch_size}: lower "
                "batch_size (each sample is two views), use a smaller network, or train on "
                f"the CPU with device='cpu'. ({exc})"
            ) from exc
        finally:
            restore_batch_norm()
            for callback in self.callbacks:
                callback.on_train_end(self)
        if self.stop_reason is not None:
            self.load_state_dict(last_good, rng=False)
            if self.epoch == 0:
                raise DivergenceError(
                    "the training loss became NaN or infinite in the first epoch, so no weights "
                    "are worth keeping. Likely causes: a learning rate too high, temperatures "
                    "too low, or reduced precision; lower the learning rate first."
                )
        self.network.eval()
        return self

    def _remaining_phases(self) -> Iterable[Phase]:
        """The phase of each remaining epoch, skipping the epochs already run."""
        done = 0
        for phase in self.phases:
            for _ in range(phase.epochs):
                done += 1
                if done > self.epoch:
                    yield phase

    def _snapshot(self) -> dict[str, Any]:
        """The last good state kept in memory (on the training device) for a rollback."""
        return self._weights_and_logs(_clone)

    def _weights_and_logs(self, copy_tensors: Callable[[Any], Any]) -> dict[str, Any]:
        """What a rollback and a checkpoint share: weights, optimiser, callbacks,
        epoch, logs."""
        return {
            "epoch": self.epoch,
            "network": copy_tensors(self.network.state_dict()),
            "optimizer": copy_tensors(self.optimizer.state_dict()),
            # By class: a progress bar or a checkpoint writer, which keep no
            # state, may be attached to the resumed run and not the first.
            "callbacks": {
                type(callback).__name__: copy_tensors(state)
                for callback in self.callbacks
                if (state := callback.state_dict())
            },
            # A loss's own state, such as its balance window.
            "criteria": {
                phase.name: copy_tensors(phase.criterion.state_dict())
                for phase in self.phases
                if hasattr(phase.criterion, "state_dict")
            },
            "head_losses": list(self.head_losses),
            "logs": [dict(log) for log in self.logs],
        }


def _shares(batches: Iterable[list[int]], world: World, pending: deque) -> Iterator[list[int]]:
    """This rank's share of each global batch; with several ranks, each global
    batch is also put on ``pending``."""
    for batch in batches:
        if world.distributed:
            pending.append(batch)
        yield world.share(batch)


def _epoch(views: Any, batches: Iterable, generator: torch.Generator, device: torch.device):
    """``(index, view_a, view_b)`` per batch: the views' own ``epoch`` where
    they have one (streamed images load batches ahead), else one call per batch."""
    if hasattr(views, "epoch"):
        yield from views.epoch(batches, generator)
        return
    for batch in batches:
        index = torch.as_tensor(batch, device=device)
        yield (index, *views(index, generator))


def _cluster_counts(logits: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """How many samples each head's argmax puts in each cluster, (H, K), from
    logits (B, K) or (B, H, K): one bincount, with no (B, K) one-hot in between."""
    labels = logits.argmax(-1).reshape(logits.shape[0], -1)
    n_heads = labels.shape[1]
    offsets = torch.arange(n_heads, device=labels.device) * n_clusters
    counts = torch.bincount((labels + offsets).flatten(), minlength=n_heads * n_clusters)
    return counts.reshape(n_heads, n_clusters)


def _map_tensors(value: Any, function: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """A copy of nested dicts/lists/tuples with ``function`` applied to every tensor."""
    if isinstance(value, torch.Tensor):
        return function(value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, function) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, function) for v in value)
    return value


def _clone(value: Any) -> Any:
    # Tensor by tensor: copy.deepcopy of an optimiser's state costs several
    # times more and would show in every epoch of a small data set.
    return _map_tensors(value, lambda t: t.detach().clone())


def _to_cpu(value: Any) -> Any:
    return _map_tensors(value, lambda t: t.detach().cpu().clone())


def _to_device(value: Any, device: torch.device) -> Any:
    return _map_tensors(value, lambda t: t.to(device))
