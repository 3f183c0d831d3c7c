"""Empty-cluster relocation: a cluster that no sample has chosen for a long
time is moved to split another, as k-means relocates an empty centre.

The entropy form of the equipartition prior reads the mean *soft*
assignment, so a diffuse cluster that is nobody's argmax satisfies it almost
as well as a real one; such a cluster can stay empty for the rest of the run
while two true groups share one cluster. Relocation gives it a fresh start where one is most needed:
every live cluster is bisected as bisecting k-means would (top principal
direction of its members' head inputs, exact two-means threshold along it),
the cut that lowers the within-cluster sum of squares most is taken, and the
dead cluster's row of the categorical layer becomes the far side of it. The
other rows are left as they are, so nothing changes in a run in which every
cluster is in use.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..networks import CDCHeads
from .callbacks import Callback
from .engine import Engine

__all__ = ["Cut", "EmptyClusterRelocation", "bisect", "split_row", "two_means_split"]


@dataclass
class Cut:
    """A cut of a group of head inputs in two: along ``direction``, at
    ``threshold``; ``spread`` is the std of the projections and ``gain`` the
    drop in the within-group sum of squares along ``direction`` that the cut
    brings (the k-means objective a bisection lowers)."""

    direction: torch.Tensor
    threshold: torch.Tensor
    spread: torch.Tensor
    gain: float


def bisect(h: torch.Tensor) -> Cut | None:
    """Bisecting k-means' cut of ``h``: along its top principal direction, at
    the exact 1-D two-means threshold (:func:`two_means_split`), so unequal
    groups are not cut through the larger one. None when ``h`` has fewer than
    two rows or does not spread."""
    if h.shape[0] < 2:
        return None
    h = h.float()
    # The right singular vector of the largest singular value: the direction
    # along which the group spreads most.
    direction = torch.linalg.svd(h - h.mean(0), full_matrices=False).Vh[0]
    projection = h @ direction
    spread = projection.std()
    if not spread > 1e-6 * (1.0 + projection.abs().mean()):
        return None
    threshold, gain = two_means_split(projection)
    return Cut(direction, threshold, spread, gain)


def split_row(weight: torch.Tensor, bias: torch.Tensor, cut: Cut, source: int, target: int) -> None:
    """Rewrite row ``target`` of a linear layer, in place, so that it takes the
    far side of ``cut`` from row ``source``.

    The new row is row ``source`` plus a step along the cut's direction, with
    the bias set so that ``logit_target - logit_source = 2 (h . u -
    threshold) / spread``: steep enough to hold. The other rows are left as
    they are.
    """
    scale = 2.0 / cut.spread
    weight[target] = weight[source] + (scale * cut.direction).to(weight.dtype)
    bias[target] = bias[source] - (scale * cut.threshold).to(bias.dtype)


def two_means_split(values: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The cut of 1-D values into two groups of least within-group squared
    error (exact 1-D 2-means): the midpoint between the groups, and how much
    the cut lowers the sum of squares."""
    v = values.double().sort().values
    n = v.numel()
    left = torch.arange(1, n, dtype=v.dtype, device=v.device)
    cum, cum2 = v.cumsum(0)[:-1], (v * v).cumsum(0)[:-1]
    total, total2 = v.sum(), (v * v).sum()
    sse = (cum2 - cum**2 / left) + (total2 - cum2) - (total - cum) ** 2 / (n - left)
    i = int(sse.argmin())
    gain = float(total2 - total**2 / n - sse[i])
    return ((v[i] + v[i + 1]) / 2).float(), gain


class EmptyClusterRelocation(Callback):
    """Relocates every cluster that no training sample chose for ``patience``
    optimiser steps in a row (counted in whole epochs).

    Counts, from the engine's per-epoch cluster sizes
    (``Engine.cluster_counts``), how many epochs in a row each cluster has
    been empty (its state, saved with the engine's, so a resumed run
    relocates as an uninterrupted one) and reads, through a forward hook on the
    network's :class:`~skcdc.networks.CDCHeads`, the head inputs of the epoch's
    last batches; a network without ``CDCHeads`` (a user's own class) is left
    alone. Relocation stops ``stop_before`` epochs before the end so that the
    last cut is trained, not just made.

    Parameters
    ----------
    patience : int, default=300
        Optimiser steps a cluster must stay empty to count as dead. Clusters
        often empty early and come back by themselves, after up to about 80
        steps; moving them at once would disturb runs that recover. Counted
        in steps, not epochs, because a revival takes a number of updates,
        and an epoch of a small data set has few.
    stop_before : int, default=5
        No relocation in the last ``stop_before`` epochs...
    stop_before_steps : int, default=1000
        ...or in the last ``stop_before_steps`` optimiser steps, when those
        are fewer: the last cut needs training, not whole epochs of it.
    buffer_size : int, default=8192
        Head inputs kept (the most recent ones) to estimate the cut.
    """

    def __init__(
        self,
        patience: int = 300,
        stop_before: int = 5,
        stop_before_steps: int = 1000,
        buffer_size: int = 8192,
    ) -> None:
        self.patience = patience
        self.stop_before = stop_before
        self.stop_before_steps = stop_before_steps
        self.buffer_size = buffer_size
        self._heads: CDCHeads | None = None
        self._hook: RemovableHandle | None = None
        self._recording = False
        self._buffer: deque = deque()
        self._buffered = 0
        # Per head and cluster, (H, K): epochs in a row without a sample
        # (None before the first epoch).
        self.empty_epochs: torch.Tensor | None = None

    def state_dict(self) -> dict:
        return {"empty_epochs": self.empty_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.empty_epochs = state["empty_epochs"]

    def on_train_begin(self, engine: Engine) -> None:
        self._heads = next((m for m in engine.network.modules() if isinstance(m, CDCHeads)), None)
        if self._heads is not None:
            self._hook = self._heads.register_forward_hook(self._record)
            # Nothing counted yet (a fresh run): keep the first epoch's inputs.
            self._recording = self.empty_epochs is None or self._may_die(engine)

    def _may_relocate(self, engine: Engine) -> bool:
        """Not in the last ``stop_before`` epochs, nor in the last
        ``stop_before_steps`` steps when those are fewer (an epoch of a
        large data set is thousands of steps)."""
        remaining = (engine.epochs - engine.epoch) * engine.steps_per_epoch
        quiet = min(self.stop_before * engine.steps_per_epoch, self.stop_before_steps)
        return remaining >= quiet

    def _dead(self, engine: Engine, epochs_ahead: int = 0) -> torch.Tensor:
        """Which clusters are dead now, or will be after ``epochs_ahead`` more
        empty epochs."""
        if self.empty_epochs is None:  # before the first epoch: none
            return torch.zeros(0, dtype=torch.bool)
        return (self.empty_epochs + epochs_ahead) * engine.steps_per_epoch >= self.patience

    def _may_die(self, engine: Engine) -> bool:
        """Whether the coming epoch can end with a dead cluster: only then are
        head inputs kept, so the training step is left alone otherwise."""
        return bool(self._dead(engine, epochs_ahead=1).any())

    def _record(self, module: nn.Module, inputs: tuple, output: tuple) -> None:
        if not (self._recording and module.training):
            return
        h = inputs[0].detach()
        self._buffer.append(h)
        self._buffered += h.shape[0]
        while self._buffered - self._buffer[0].shape[0] >= self.buffer_size:
            self._buffered -= self._buffer.popleft().shape[0]

    def on_epoch_end(self, engine: Engine, log: dict) -> None:
        heads, counts = self._heads, engine.cluster_counts
        if heads is None or counts is None:
            return
        empty = (counts == 0).long()
        previous = self.empty_epochs if self.empty_epochs is not None else 0
        empty_epochs = (previous + empty) * empty
        self.empty_epochs = empty_epochs
        relocated = 0
        dead = self._dead(engine)
        if self._may_relocate(engine) and dead.any() and self._buffer:
            h = torch.cat(list(self._buffer)).float()
            relocated = _relocate(heads, h, dead)
            # A relocated cluster starts its count afresh.
            empty_epochs[dead] = 0
        self._clear()
        self._recording = self._may_die(engine)
        log["n_relocated"] = relocated

    def _clear(self) -> None:
        self._buffer.clear()
        self._buffered = 0

    def on_train_end(self, engine: Engine) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._clear()


def _relocate(heads: CDCHeads, h: torch.Tensor, dead: torch.Tensor) -> int:
    """Bisect, for each dead cluster, the cluster whose cut gains most,
    head by head; the number of clusters relocated."""
    layer = heads.categorical
    n_clusters = heads.n_clusters
    relocated = 0
    with torch.no_grad():
        for head in range(dead.shape[0]):
            rows = slice(head * n_clusters, (head + 1) * n_clusters)
            weight, bias = layer.weight[rows], layer.bias[rows]
            dead_rows = torch.nonzero(dead[head]).flatten().tolist()
            logits = h @ weight.T.float() + bias.float()
            best, labels = logits.max(1)
            live = set(labels.unique().tolist()) - set(dead_rows)
            # Clusters too small to cut have none.
            cuts = {c: cut for c in live if (cut := bisect(h[labels == c])) is not None}
            for empty in dead_rows:
                if not cuts:
                    break
                # The cut that lowers the k-means objective most: a merged
                # pair of groups, not merely the largest or widest group.
                source = max(cuts, key=lambda c: cuts[c].gain)
                split_row(weight, bias, cuts[source], source, empty)
                relocated += 1
                # Only row ``empty`` changed: recompute its logits alone
                # (one column, not an N x K product per dead cluster),
                # re-cut the clusters whose members moved, so that a
                # second dead cluster sees the first one's cut, and leave
                # the other cuts as they are.
                column = h @ weight[empty].float() + bias[empty].float()
                logits[:, empty] = column
                gains = column > best
                new_labels = torch.where(gains, empty, labels)
                # The dead row's own members (if any) whose logit fell.
                lost = (labels == empty) & ~gains
                if lost.any():
                    new_labels[lost] = logits[lost].argmax(1)
                best = logits.gather(1, new_labels[:, None]).squeeze(1)
                moved = labels != new_labels
                changed = set(labels[moved].tolist()) | set(new_labels[moved].tolist())
                changed = (changed | {source}) - set(dead_rows)
                labels = new_labels
                for c in changed:
                    members = labels == c
                    cut = bisect(h[members]) if members.any() else None
                    if cut is None:
                        cuts.pop(c, None)
                    else:
                        cuts[c] = cut
    return relocated
