"""skcdc's own file format: tensors and plain Python values, never code.

Every file is a ``torch.save`` of a dict and is read back with
``torch.load(weights_only=True)``, which refuses to execute anything stored in
it. Each file carries the skcdc version and a format number; a file of another
format number is refused with :class:`~skcdc.exceptions.IncompatibleFileError`.
Writes go to a temporary file that replaces the target at the end, so a run
killed while saving leaves the previous file intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .exceptions import IncompatibleFileError

__all__ = ["FORMAT_VERSION", "load", "load_model", "save", "save_model"]

# Bumped whenever the layout of a file changes in a way an older reader cannot follow.
FORMAT_VERSION = 1


def save(content: dict[str, Any], path: str | os.PathLike, *, kind: str) -> None:
    """Atomically write ``content`` (tensors, numbers, strings, lists, dicts) to ``path``."""
    from . import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "skcdc_version": __version__,
        **content,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike, *, kind: str) -> dict[str, Any]:
    """Read a file written by :func:`save`, on the CPU, without executing code."""
    from . import __version__

    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pickle errors of many kinds: name the file, not the internals
        raise IncompatibleFileError(
            f"{path} is not a readable skcdc {kind} file ({type(exc).__name__}: {exc})."
        ) from exc
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        found = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise IncompatibleFileError(f"{path} is not an skcdc {kind} file (it holds {found!r}).")
    if payload.get("format_version") != FORMAT_VERSION:
        raise IncompatibleFileError(
            f"{path} was written by skcdc {payload.get('skcdc_version')} in file format "
            f"{payload.get('format_version')}; skcdc {__version__} reads format {FORMAT_VERSION}. "
            f"Install skcdc=={payload.get('skcdc_version')} to read it, or train again."
        )
    return payload


# Fitted attributes that are arrays (stored as tensors) and plain values.
_ARRAYS = (
    "labels_",
    "categorical_embedding_",
    "instance_embedding_",
    "cluster_centers_",
    "run_scores_",
    "refinement_run_scores_",
)
_VALUES = (
    "n_iter_",
    "best_head_",
    "stop_reason_",
    "n_features_in_",
    "image_shape_",
    "refined_",
    "consensus_",
)


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Save a fitted :class:`~skcdc.CDCClustering` in skcdc's own safe format.

    The file holds the parameters, the network's weights and the fitted
    attributes as tensors and plain values; :func:`load_model` reads it with
    ``torch.load(weights_only=True)``, so loading never runs code from the file
    (unlike pickle or joblib). Models with a user-supplied ``network``,
    ``backbone`` class or ``augmentation`` callable are refused: a class cannot
    be stored without code; pickle those instead.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        The model has not been fitted.
    TypeError
        ``network``, ``backbone`` or ``augmentation`` is code rather than a
        built-in name; nothing is written.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    params = model.get_params()
    for name in ("network", "backbone", "augmentation"):
        if not isinstance(params[name], str):
            raise TypeError(
                f"save_model stores built-in networks only; {name}={params[name]!r} is code. "
                "Use joblib.dump(model, path) for this model (load only files you trust)."
            )
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None
    if not isinstance(params["backbone_weights"], (str, type(None))):
        params["backbone_weights"] = None  # the weights are in the network's state anyway
    if not isinstance(params["checkpoint_dir"], (str, type(None))):
        params["checkpoint_dir"] = str(params["checkpoint_dir"])
    if not isinstance(params["device"], str):
        params["device"] = str(params["device"])
    # A model loaded from an older file may lack an attribute added since.
    fitted = {
        name: torch.from_numpy(np.ascontiguousarray(getattr(model, name)))
        for name in _ARRAYS
        if hasattr(model, name)
    }
    values = {name: getattr(model, name) for name in _VALUES if hasattr(model, name)}
    if "image_shape_" in values:
        values["image_shape_"] = list(values["image_shape_"])
    if hasattr(model, "feature_names_in_"):
        values["feature_names_in_"] = [str(n) for n in model.feature_names_in_]
    history = model.history_.to_dict("list")
    network = {k: v.detach().cpu() for k, v in model.network_.state_dict().items()}
    save(
        {
            "params": params,
            "network": network,
            "arrays": fitted,
            "values": values,
            "history": history,
        },
        path,
        kind="model",
    )


def load_model(path: str | os.PathLike) -> Any:
    """Load a model written by :func:`save_model`, on the CPU, without running code."""
    from .estimator import CDCClustering

    payload = load(path, kind="model")
    model = CDCClustering(**payload["params"])
    for name, tensor in payload["arrays"].items():
        setattr(model, name, tensor.numpy())
    for name, value in payload["values"].items():
        setattr(model, name, value)
    if "image_shape_" in payload["values"]:
        model.image_shape_ = tuple(model.image_shape_)
    if "feature_names_in_" in payload["values"]:
        model.feature_names_in_ = np.asarray(model.feature_names_in_, dtype=object)
    model.history_ = pd.DataFrame(payload["history"])
    model.network_ = model._skeleton_network()
    model.network_.load_state_dict(payload["network"])
    model.network_.eval()
    model.device_ = torch.device("cpu")
    return model
