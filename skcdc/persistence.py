"""Saving a fitted :class:`~skcdc.CDCClustering` in skcdc's own safe format.

:func:`save_model` writes the parameters, the network's weights and the fitted
attributes as tensors and plain values (:mod:`skcdc.files`); :func:`load_model`
reads them back with ``torch.load(weights_only=True)``, so loading a model never
runs code from the file, unlike pickle or joblib.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from . import files
from ._plan import Plan, make_plan
from .distributed import current_world
from .estimator import CDCClustering
from .neighbours import NeighbourSearch
from .networks import ImageCDCNetwork, SelectHead
from .training.consensus import RestartConsensus
from .training.floor import NearestCentroid
from .training.runs import build_network, input_normalizer
from .training.stages import backbone_encoder

__all__ = ["load_model", "save_model"]

# Fitted attributes that are arrays (stored as tensors) and plain values.
_ARRAYS = (
    "labels_",
    "categorical_embedding_",
    "instance_embedding_",
    "cluster_centers_",
    "run_scores_",
    "refinement_run_scores_",
    "floor_scores_",
)
_VALUES = (
    "n_iter_",
    "best_head_",
    "stop_reason_",
    "refined_",
    "consensus_",
    "kmeans_floor_",
)


def save_model(model: CDCClustering, path: str | os.PathLike) -> None:
    """Save a fitted model; :func:`load_model` reads it without running code.

    Models with a user-supplied ``network`` class, a ``backbone`` class or an
    ``augmentation`` callable are refused: a class cannot be stored without
    code; pickle those instead (and load only files you trust).

    In a process group (under ``torchrun``) every process may call it alike:
    rank 0 writes the file and the others wait until it is written.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        The model has not been fitted.
    TypeError
        A parameter is code rather than a built-in name; nothing is written.
    """
    check_is_fitted(model)
    params = model.get_params()
    network_params = dict(params["network_params"] or {})
    for name, value in (
        ("network", params["network"]),
        ("augmentation", params["augmentation"]),
        ("network_params['backbone']", network_params.get("backbone", "auto")),
    ):
        if not isinstance(value, str):
            raise TypeError(
                f"save_model stores built-in networks only; {name}={value!r} is code. "
                "Use joblib.dump(model, path) for this model (load only files you trust)."
            )
    # The weights are in the network's state; a file name would be read again.
    network_params.pop("backbone_weights", None)
    params["network_params"] = network_params or None
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None
    for name in ("checkpoint_dir", "device"):
        if params[name] is not None and not isinstance(params[name], str):
            params[name] = str(params[name])
    values = {name: getattr(model, name) for name in _VALUES}
    search = model.neighbour_search_
    values["neighbour_search_"] = None if search is None else dataclasses.asdict(search)
    if hasattr(model, "image_shape_"):
        values["image_shape_"] = list(model.image_shape_)
    else:
        values["n_features_in_"] = model.n_features_in_
    if hasattr(model, "feature_names_in_"):
        values["feature_names_in_"] = [str(n) for n in model.feature_names_in_]
    # Under torchrun every rank calls this; rank 0 writes, the others wait
    # for the file, so that a load that follows finds it.
    world = current_world()
    if world.is_main:
        _write(model, params, values, path)
    world.barrier()


def _write(model: CDCClustering, params: dict, values: dict, path: str | os.PathLike) -> None:
    files.save(
        {
            "params": params,
            "network": {k: v.detach().cpu() for k, v in model.network_.state_dict().items()},
            # A training output too large to keep is None (see Plan.keep_outputs).
            "arrays": {
                name: torch.from_numpy(np.ascontiguousarray(getattr(model, name)))
                for name in _ARRAYS
                if getattr(model, name) is not None
            },
            "values": values,
            "history": model.history_.to_dict("list"),
        },
        path,
        kind="model",
    )


def load_model(path: str | os.PathLike) -> CDCClustering:
    """Load a model written by :func:`save_model`, on the CPU, without running code."""
    payload = files.load(path, kind="model")
    model = CDCClustering(**payload["params"])
    for name in _ARRAYS:
        tensor = payload["arrays"].get(name)
        setattr(model, name, None if tensor is None else tensor.numpy())
    for name, value in payload["values"].items():
        setattr(model, name, value)
    search = payload["values"]["neighbour_search_"]
    model.neighbour_search_ = None if search is None else NeighbourSearch(**search)
    if hasattr(model, "image_shape_"):
        model.image_shape_ = tuple(model.image_shape_)
    if hasattr(model, "feature_names_in_"):
        model.feature_names_in_ = np.asarray(model.feature_names_in_, dtype=object)
    model.history_ = pd.DataFrame(payload["history"])
    model.network_ = _skeleton(model)
    model.network_.load_state_dict(payload["network"])
    model.network_.eval()
    model._make_inference_copies()
    model.device_ = torch.device("cpu")
    return model


def _refined(network: nn.Sequential, refinement: Plan | None) -> nn.Sequential:
    """The image network's normalisation and backbone followed by the
    refinement stage's network of its features."""
    if refinement is None:
        raise ValueError(
            "The file says the model was refined, but its parameters plan no refinement "
            "stage: it was not written by save_model."
        )
    image_network = network[1]
    if not isinstance(image_network, ImageCDCNetwork):
        raise TypeError(f"{type(image_network).__name__} is not an image network of skcdc's")
    encoder = backbone_encoder(network)
    width = (image_network.heads.categorical.in_features,)
    features = np.zeros((2, *width), dtype=np.float32)
    heads = build_network(refinement, input_normalizer(refinement, features), width)
    return nn.Sequential(*encoder, *heads)


def _skeleton(model: CDCClustering) -> nn.Module:
    """The fitted network's architecture with blank weights, for its state dict."""
    images = hasattr(model, "image_shape_")
    shape = model.image_shape_ if images else (model.n_features_in_,)
    like: Any = torch.zeros(2, *shape) if images else np.zeros((2, *shape), dtype=np.float32)
    plan = make_plan(
        model.get_params(),
        n_samples=2,
        images=images,
        image_shape=shape if images else None,
        device=torch.device("cpu"),
    )
    normalizer = input_normalizer(plan, like)
    trunk = build_network(plan, normalizer, shape)
    if model.refined_:
        trunk = _refined(trunk, plan.refinement)
    network: nn.Module
    if model.consensus_:
        # The heads, centres and variance are buffers the state dict fills.
        runs = [trunk] + [build_network(plan, normalizer, shape) for _ in model.run_scores_[1:]]
        centers = torch.zeros(model.n_clusters, len(runs) * model.n_clusters)
        network = RestartConsensus(runs, [0] * len(runs), centers, 1.0, reference=0)
    else:
        network = trunk.append(SelectHead(model.best_head_))
    if model.kmeans_floor_:
        # The centres and variance are buffers the state dict fills.
        network = NearestCentroid(network, torch.zeros(model.n_clusters, shape[0]), 1.0)
    return network
