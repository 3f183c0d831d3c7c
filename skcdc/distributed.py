"""Data-parallel training under ``torchrun``: the process group and its collectives.

A script that calls ``CDCClustering(...).fit(X)`` runs unchanged under
``torchrun --nproc-per-node=G script.py``. ``fit`` reads the launcher's
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), joins the default
process group when the script has not (NCCL on CUDA, gloo on the CPU) and
trains on ``cuda:LOCAL_RANK``.

The mathematics stays that of one process training on the global batch:

- every step draws one global batch of ``batch_size`` samples from a
  permutation that every rank draws alike; rank ``r`` reads and forwards only
  its ``r``-th share of it;
- the logits and instance vectors of all shares are gathered
  (:meth:`World.gather`), so every rank evaluates the loss of the whole global
  batch: its negatives, its Sinkhorn assignment or marginal entropy, its
  balance window and each decision read from them are one process's, and the
  same on every rank;
- since every rank holds the same loss, each holds the same gradient with
  respect to the gathered batch and passes back only its own rows' part of
  it: the gather's backward needs no communication. One all-reduce sums the
  parameter gradients, which gives every rank the gradient of the global loss
  (:meth:`World.sum_gradients`);
- batch normalisation layers normalise by the statistics of the global
  batch (:meth:`World.use_global_batch_norm`);
- after each epoch the network is broadcast from rank 0, so a change made
  outside the optimiser (empty-cluster relocation, which cuts from the head
  inputs a rank has seen) is the same everywhere.

What each step sends, with ``B`` the global batch, ``K`` clusters, ``H``
heads, ``d`` the instance width and ``P`` the parameters: an all-gather of
``2 B (H K + d)`` float32 values (each rank receives them all), an
all-reduce of ``P`` float32 values, and per batch normalisation layer of
``C`` channels two all-reduces of ``2 C`` values per view (forward, backward).
"""

from __future__ import annotations

import atexit
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

# torch.distributed.nn binds the default process group as a default argument
# of its functions when it is imported. Imported after a group exists (the
# optimiser imports it on its first use), it holds that group past
# destroy_process_group, whose worker threads then live on to interpreter
# exit, where their teardown can abort the process. Imported here, before any
# group, it binds None.
import torch.distributed.nn
from torch.nn.modules.batchnorm import _BatchNorm

from .exceptions import LostRankError

__all__ = [
    "SINGLE",
    "TIMEOUT",
    "World",
    "current_world",
    "is_main_process",
    "join",
    "launched",
]

# How long a collective waits for a rank before it fails: a rank that died
# or hangs ends the others' fit with an error instead of a hang.
TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one fit.

    ``rank`` and ``size`` are the global rank and world size; ``local_rank``
    the rank on this machine (the GPU it trains on); ``device`` where the
    tensors of its collectives live (the GPU under NCCL, the CPU under gloo).
    A world of size 1 is one process: every collective is then the identity.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0, the one that writes files and shows progress."""
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """The training device of this rank: CUDA without an index means the
        GPU of the local rank."""
        if self.distributed and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def share(self, batch: list[int]) -> list[int]:
        """This rank's share of a global batch: its ``rank``-th of ``size``
        equal parts (a remainder of fewer than ``size`` samples is dropped)."""
        if not self.distributed:
            return batch
        part = len(batch) // self.size
        return batch[self.rank * part : (self.rank + 1) * part]

    def shard(self, n: int) -> slice:
        """This rank's contiguous block of ``n`` rows (sizes differ by at most one)."""
        bounds = np.linspace(0, n, self.size + 1).round().astype(int)
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's equal-sized ``tensor`` stacked along the first axis, in
        rank order; gradients flow back to this rank's own rows."""
        if not self.distributed:
            return tensor
        if tensor.requires_grad:
            return _GatherBatch.apply(tensor, self.rank, self.size)
        return _all_gather(tensor, self.size)

    def sum_gradients(self, parameters: Any) -> None:
        """Sum the parameters' gradients over the ranks, in one all-reduce."""
        if not self.distributed:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if grads:
            _all_reduce_flat(grads)

    def broadcast(self, tensors: Any) -> None:
        """Overwrite ``tensors`` in place with rank 0's (one broadcast per dtype)."""
        if not self.distributed:
            return
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for tensor in tensors:
            by_dtype.setdefault(tensor.dtype, []).append(tensor)
        for group in by_dtype.values():
            flat = torch.cat([t.detach().reshape(-1) for t in group]).to(self.device)
            with _collective():
                dist.broadcast(flat, src=0)
            _unflatten_into(flat, group)

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's weights and buffers into ``module`` on every rank."""
        self.broadcast([*module.parameters(), *module.buffers()])

    def gather_rows(self, rows: np.ndarray) -> np.ndarray:
        """Every rank's ``rows`` (blocks of any length) concatenated in rank
        order, on every rank."""
        if not self.distributed:
            return rows
        local = torch.from_numpy(np.ascontiguousarray(rows)).to(self.device)
        lengths = _all_gather(torch.tensor([local.shape[0]], device=self.device), self.size)
        longest = int(lengths.max())
        padded = local.new_zeros((longest, *local.shape[1:]))
        padded[: local.shape[0]] = local
        parts = _all_gather(padded, self.size).reshape(self.size, longest, *local.shape[1:])
        return torch.cat([parts[r, : int(n)] for r, n in enumerate(lengths)]).cpu().numpy()

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of every rank's ``tensor`` (same shape), on every rank."""
        if not self.distributed:
            return tensor
        total = tensor.detach().to(self.device, copy=True)
        _all_reduce(total)
        return total.to(tensor.device)

    def use_global_batch_norm(self, module: torch.nn.Module) -> Callable[[], None]:
        """Have every batch normalisation layer of ``module`` normalise in
        training by the statistics of the global batch (its sums all-reduced,
        gradients included), as one process would, instead of those of this
        process's share; in evaluation the layers are unchanged. Returns the
        function that gives the layers their own forward back."""
        if not self.distributed:
            return _nothing
        layers = [m for m in module.modules() if isinstance(m, _BatchNorm)]
        for layer in layers:
            # An instance attribute shadows the class's forward until restore
            # deletes it; the layer's parameters and state dict stay its own.
            # mypy rejects assigning to a method, which is the point here.
            layer.forward = functools.partial(  # type: ignore[method-assign]
                _global_batch_norm, layer, self.size
            )

        def restore() -> None:
            for layer in layers:
                del layer.forward

        return restore

    def barrier(self) -> None:
        """Wait until every rank is here (a one-value all-reduce, which every
        backend runs on its own device)."""
        if self.distributed:
            _all_reduce(torch.zeros(1, device=self.device))

    def reduce_max(self, value: float) -> float:
        """The largest of every rank's ``value``."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        _all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())


SINGLE = World()


def _nothing() -> None:
    pass


class _GatherBatch(torch.autograd.Function):
    """All-gather whose backward returns this rank's rows of the incoming
    gradient. That is the whole gradient when every rank evaluates the same
    function of the gathered batch (the global loss), which is how the
    engine uses it; summing the parameter gradients over ranks then completes
    the chain rule."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, rank: int, size: int) -> torch.Tensor:
        ctx.rank = rank
        ctx.rows = tensor.shape[0]
        return _all_gather(tensor, size)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows], None, None


@contextmanager
def _collective() -> Iterator[None]:
    """One clear error when a collective fails because a rank is gone (gloo
    sees the closed connection at once; NCCL waits for :data:`TIMEOUT`)."""
    try:
        yield
    except RuntimeError as exc:
        raise LostRankError(
            f"rank {dist.get_rank()} of {dist.get_world_size()}: another process of this "
            "distributed fit stopped or cannot be reached, so this one stops too. Look "
            f"for the first error in the other processes' logs. ({exc})"
        ) from exc


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward sums the gradients over ranks too: each
    rank's outputs depend on every rank's inputs through the sum."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.detach().clone()
        _all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.detach().clone()
        _all_reduce(total)
        return total


def _global_batch_norm(layer: _BatchNorm, size: int, x: torch.Tensor) -> torch.Tensor:
    """``layer``'s forward with the mean and variance of the global batch of
    ``size`` equal shares; in evaluation, the layer's own forward."""
    if not layer.training:
        return type(layer).forward(layer, x)
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    count = x.numel() // x.shape[1] * size
    wide = x.float()
    sums = _AllReduceSum.apply(torch.stack([wide.sum(dims), (wide * wide).sum(dims)]))
    mean = sums[0] / count
    variance = (sums[1] / count - mean * mean).clamp_min(0)
    y = (wide - mean.reshape(shape)) * torch.rsqrt(variance.reshape(shape) + layer.eps)
    if layer.affine:
        y = y * layer.weight.reshape(shape) + layer.bias.reshape(shape)
    # Layers that track no running statistics hold None in their place.
    running_mean, running_var = layer.running_mean, layer.running_var
    tracked = layer.num_batches_tracked
    if running_mean is not None and running_var is not None and tracked is not None:
        with torch.no_grad():
            tracked += 1
            momentum = layer.momentum
            if momentum is None:  # a cumulative average, as torch's
                momentum = 1.0 / float(tracked)
            unbiased = variance * count / max(count - 1, 1)
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
            running_var.lerp_(unbiased.to(running_var.dtype), momentum)
    return y.to(x.dtype)


def _all_gather(tensor: torch.Tensor, size: int) -> torch.Tensor:
    tensor = tensor.detach().contiguous()
    parts = [torch.empty_like(tensor) for _ in range(size)]
    with _collective():
        dist.all_gather(parts, tensor)
    return torch.cat(parts)


def _all_reduce(tensor: torch.Tensor, op: Any = None) -> None:
    with _collective():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op is None else op)


def _all_reduce_flat(tensors: list[torch.Tensor]) -> None:
    flat = torch.cat([t.reshape(-1) for t in tensors])
    _all_reduce(flat)
    _unflatten_into(flat, tensors)


def _unflatten_into(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    offset = 0
    with torch.no_grad():
        for tensor in tensors:
            n = tensor.numel()
            tensor.copy_(flat[offset : offset + n].view_as(tensor))
            offset += n


# ------------------------------------------------------------------ joining


def launched() -> bool:
    """Whether this process was started by a launcher for several processes
    (``torchrun`` sets ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current_world() -> World:
    """The world of the default process group (one process when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    nccl = dist.get_backend() == "nccl"
    return World(
        rank=dist.get_rank(),
        size=dist.get_world_size(),
        local_rank=local_rank,
        device=torch.device("cuda", local_rank) if nccl else torch.device("cpu"),
    )


def is_main_process() -> bool:
    """Whether this process writes files: rank 0 of the process group, or of
    the launch before a group is made, or a process on its own."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def join(device: torch.device) -> World:
    """The world this fit runs in: the script's process group when it made
    one, else the one a launcher asked for (joined here: NCCL when training on
    CUDA, gloo otherwise), else one process.

    ``device`` is the training device asked for; under a launcher CUDA
    training takes the GPU of the local rank.
    """
    if dist.is_available() and dist.is_initialized():
        return current_world()
    if not launched():
        return SINGLE
    if not dist.is_available():
        raise RuntimeError(
            "WORLD_SIZE is set above 1 (a distributed launch), but this build of torch "
            "has no torch.distributed; install a build with it, or run one process."
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=TIMEOUT)
    # Joined here, so left here too: at exit, not after fit, because the
    # fitted estimator's predict may still use the group.
    atexit.register(_leave)
    return current_world()


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
