"""Callbacks of the training engine: progress and checkpoints.

A callback reacts to the engine's events and may keep state of its own;
that state is part of :meth:`Engine.state_dict <skcdc.training.engine.Engine.state_dict>`,
so a run resumed from a checkpoint continues as an uninterrupted one.
Empty-cluster relocation is a callback too (:mod:`skcdc.training.relocation`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .. import files

if TYPE_CHECKING:  # only for annotations: the engine calls callbacks, not the reverse
    from .engine import Engine

__all__ = ["Callback", "Checkpoint", "ProgressBar"]


class Callback:
    """Base class of the engine's callbacks; every hook does nothing by default."""

    def on_train_begin(self, engine: Engine) -> None:
        """Called once before the first epoch (also when resuming)."""

    def on_step_end(self, engine: Engine) -> None:
        """Called after every optimiser step."""

    def on_epoch_end(self, engine: Engine, log: dict[str, Any]) -> None:
        """Called after every epoch with that epoch's log, which it may extend."""

    def on_epoch_saved(self, engine: Engine) -> None:
        """Called once the epoch's state is final (after every ``on_epoch_end``)."""

    def on_train_end(self, engine: Engine) -> None:
        """Called once after the last epoch, also when training stops early."""

    def state_dict(self) -> dict[str, Any]:
        """The callback's own state (tensors and plain values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""


class ProgressBar(Callback):
    """A tqdm bar over the optimiser steps of every epoch, showing the epoch
    and the last epoch's loss and balance (on stderr). Counted in steps, so
    that a long epoch of a large data set shows its progress and its rate."""

    def __init__(self, **tqdm_kwargs: Any) -> None:
        self.tqdm_kwargs = tqdm_kwargs
        self._bar: Any = None

    def on_train_begin(self, engine: Engine) -> None:
        from tqdm.auto import tqdm

        steps = engine.steps_per_epoch
        self._bar = tqdm(
            total=engine.epochs * steps, initial=engine.epoch * steps, unit="step",
            **self.tqdm_kwargs,
        )

    def on_step_end(self, engine: Engine) -> None:
        self._bar.update()

    def on_epoch_end(self, engine: Engine, log: dict[str, Any]) -> None:
        self._bar.set_postfix(
            epoch=f"{engine.epoch}/{engine.epochs}",
            loss=f"{log['loss']:.4f}",
            balance=f"{log['cluster_entropy']:.3f}",
        )

    def on_train_end(self, engine: Engine) -> None:
        if self._bar is not None:
            self._bar.close()


class Checkpoint(Callback):
    """Saves the engine's full state every ``every`` epochs and after the last.

    The file (:mod:`skcdc.files`) holds the network, the optimiser, the
    callbacks' state, every random generator and the history, so
    :meth:`Engine.load_state_dict` continues exactly where the run stopped.

    Parameters
    ----------
    path : path-like
        The file to write; replaced atomically each time.
    every : int, default=1
        Save period in epochs.
    metadata : dict, default=None
        Stored beside the state (what identifies the run).
    """

    def __init__(
        self, path: str | os.PathLike, every: int = 1, metadata: dict | None = None
    ) -> None:
        self.path = path
        self.every = every
        self.metadata = dict(metadata or {})

    def on_epoch_saved(self, engine: Engine) -> None:
        if engine.epoch % self.every == 0 or engine.epoch == engine.epochs:
            files.save({**self.metadata, "state": engine.state_dict()}, self.path, kind="checkpoint")
