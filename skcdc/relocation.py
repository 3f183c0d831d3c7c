"""Empty-cluster relocation: a cluster that lost every sample is moved to split
the widest one, as k-means relocates an empty centre.

Under the equipartition prior a cluster that no sample chooses any more gets
almost no gradient back (the prior's pull on a cluster is proportional to its
share, which is zero), so a cluster that dies early stays dead and the
partition keeps two true groups merged. Relocation gives such a cluster a
fresh start where it is most likely needed: the cluster of largest inertia
(its members' summed squared distance to their mean, in the head's input
space) is cut in two along its top principal direction, bisecting k-means'
step, and the dead cluster's row of the categorical layer takes one side. The
other rows are left as they are, so nothing changes for a run in which every
cluster is used.
"""

from __future__ import annotations

from collections import deque

import torch
from torch import nn

from .engine import Callback, Engine
from .networks import CDCHeads

__all__ = ["EmptyClusterRelocation", "split_row", "two_means_threshold"]


def split_row(
    weight: torch.Tensor, bias: torch.Tensor, h: torch.Tensor, source: int, target: int
) -> None:
    """Rewrite row ``target`` of a linear layer so that it takes one side of
    the inputs ``h`` that row ``source`` wins, in place.

    The cut is bisecting k-means': the top principal direction ``u`` of ``h``,
    cut where two means along it fit best (:func:`two_means_threshold`, so
    unequal groups are not cut through the larger one). The new row is row
    ``source`` plus a step along ``u``, with the bias set so that
    ``logit_target - logit_source = 2 (h . u - threshold) / std(h . u)``: steep
    enough to hold, and the other rows are left as they are.

    Parameters
    ----------
    weight : Tensor of shape (K, F)
    bias : Tensor of shape (K,)
    h : Tensor of shape (n, F)
        Inputs of the layer that row ``source`` currently wins; ``n >= 2``.
    source, target : int
        The row to split and the row to overwrite.
    """
    h = h.float()
    # The right singular vector of the largest singular value: the direction
    # along which the source's members spread most.
    direction = torch.linalg.svd(h - h.mean(0), full_matrices=False).Vh[0]
    projection = h @ direction
    scale = 2.0 / projection.std().clamp_min(1e-6)
    threshold = two_means_threshold(projection)
    weight[target] = weight[source] + scale * direction.to(weight.dtype)
    bias[target] = bias[source] - (scale * threshold).to(bias.dtype)


def _largest_inertia(h: torch.Tensor, labels: torch.Tensor, n_clusters: int) -> int:
    """The cluster whose members lie farthest from their mean in total
    (bisecting k-means' "biggest_inertia"): a merged pair of groups, rather
    than merely the most populous group, which may be one true large cluster."""
    one_hot = torch.nn.functional.one_hot(labels, n_clusters).to(h.dtype)
    sizes = one_hot.sum(0)
    sums = one_hot.T @ h
    # sum ||h - mean||^2 = sum ||h||^2 - ||sum h||^2 / n, per cluster.
    inertia = one_hot.T @ (h * h).sum(1) - (sums * sums).sum(1) / sizes.clamp_min(1)
    return int(inertia.argmax())


def two_means_threshold(values: torch.Tensor) -> torch.Tensor:
    """The cut of 1-D values into two groups of least within-group squared
    error (exact 1-D 2-means), as the midpoint between the groups."""
    v = values.double().sort().values
    n = v.numel()
    left = torch.arange(1, n, dtype=v.dtype, device=v.device)
    cum, cum2 = v.cumsum(0)[:-1], (v * v).cumsum(0)[:-1]
    total, total2 = v.sum(), (v * v).sum()
    sse = (cum2 - cum**2 / left) + (total2 - cum2) - (total - cum) ** 2 / (n - left)
    i = int(sse.argmin())
    return ((v[i] + v[i + 1]) / 2).float()


class EmptyClusterRelocation(Callback):
    """Relocates every cluster that no training sample chose for ``patience``
    optimiser steps in a row (counted in whole epochs).

    Reads how long each cluster has been empty from the engine
    (``Engine.empty_epochs``, part of its saved state, so a resumed run
    relocates as an uninterrupted one) and, through a forward hook on the
    network's :class:`~skcdc.networks.CDCHeads`, the head inputs of the epoch's
    last batches; a network without ``CDCHeads`` (a user's own class) is left
    alone. Relocation stops ``stop_before`` epochs before the end so that the
    last cut is trained, not just made.

    Parameters
    ----------
    patience : int, default=300
        Optimiser steps a cluster must stay empty to count as dead. Clusters
        often empty early and come back by themselves, after up to about 80
        steps in the runs measured (digits: 11 epochs of 7 steps); moving
        them at once changed those runs for no gain (docs/method.md). Counted
        in steps, not epochs, because a revival takes a number of updates,
        and an epoch of a small data set has few.
    stop_before : int, default=5
        No relocation in the last ``stop_before`` epochs.
    buffer_size : int, default=8192
        Head inputs kept (the most recent ones) to estimate the cut.
    """

    def __init__(self, patience: int = 300, stop_before: int = 5, buffer_size: int = 8192) -> None:
        self.patience = patience
        self.stop_before = stop_before
        self.buffer_size = buffer_size
        self._heads: CDCHeads | None = None
        self._hook = None
        self._buffer: deque = deque()
        self._buffered = 0

    def on_train_begin(self, engine: Engine) -> None:
        self._heads = next((m for m in engine.network.modules() if isinstance(m, CDCHeads)), None)
        if self._heads is not None:
            self._hook = self._heads.register_forward_hook(self._record)

    def _record(self, module: nn.Module, inputs: tuple, output: tuple) -> None:
        if not module.training:
            return
        h = inputs[0].detach()
        self._buffer.append(h)
        self._buffered += h.shape[0]
        while self._buffered - self._buffer[0].shape[0] >= self.buffer_size:
            self._buffered -= self._buffer.popleft().shape[0]

    def on_epoch_end(self, engine: Engine, log: dict) -> None:
        if self._heads is None:
            return
        relocated = 0
        if engine.empty_epochs is not None:
            dead = engine.empty_epochs * engine.steps_per_epoch >= self.patience
            if engine.epoch <= engine.epochs - self.stop_before and dead.any() and self._buffer:
                h = torch.cat(list(self._buffer)).float()
                relocated = self._relocate(h, dead)
                # A relocated cluster starts its count afresh.
                engine.empty_epochs[dead] = 0
        self._clear()
        log["n_relocated"] = relocated

    def _relocate(self, h: torch.Tensor, dead: torch.Tensor) -> int:
        """Split the widest cluster for each dead one, head by head; the
        number of clusters relocated."""
        layer = self._heads.categorical
        n_clusters = self._heads.n_clusters
        relocated = 0
        with torch.no_grad():
            for head in range(dead.shape[0]):
                rows = slice(head * n_clusters, (head + 1) * n_clusters)
                weight, bias = layer.weight[rows], layer.bias[rows]
                for empty in torch.nonzero(dead[head]).flatten().tolist():
                    # Read the assignment from the layer as it is now, so that a
                    # second empty cluster sees the first one's cut.
                    labels = (h @ weight.T.float() + bias.float()).argmax(1)
                    widest = _largest_inertia(h, labels, n_clusters)
                    members = h[labels == widest]
                    if members.shape[0] < 2:
                        break
                    split_row(weight, bias, members, widest, empty)
                    relocated += 1
        return relocated

    def _clear(self) -> None:
        self._buffer.clear()
        self._buffered = 0

    def on_train_end(self, engine: Engine) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._clear()
