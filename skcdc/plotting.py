"""Plots of a fitted CDCClustering (matplotlib, the optional ``plot`` extra).

Every function draws into the ``ax`` (or figure) it is given, or a new one,
and returns what it drew in, so plots compose in notebooks and scripts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .metrics import matched_confusion_matrix

__all__ = ["plot_cluster_examples", "plot_confusion", "plot_embedding", "plot_history"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "skcdc.plotting needs matplotlib: pip install 'skcdc[plot]' (or matplotlib)."
        ) from exc
    return plt


def plot_history(history: Any, *, fig: Any = None) -> Any:
    """Training curves: loss and cluster balance per epoch, phases marked.

    Parameters
    ----------
    history : CDCClustering or pandas.DataFrame
        A fitted estimator or its ``history_``.
    fig : matplotlib Figure, default=None
        Drawn into (two axes are added); a new figure when None.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    frame = history if isinstance(history, pd.DataFrame) else history.history_
    fig = fig or plt.figure(figsize=(9, 3.5))
    loss_ax, balance_ax = fig.subplots(1, 2)
    loss_ax.plot(frame["epoch"], frame["loss"], label="loss")
    loss_ax.plot(frame["epoch"], frame["contrastive"], label="contrastive part", alpha=0.7)
    loss_ax.set(xlabel="epoch", ylabel="training loss")
    balance_ax.plot(frame["epoch"], frame["cluster_entropy"], label="size entropy / log K")
    balance_ax.plot(frame["epoch"], frame["largest_cluster"], label="largest cluster share")
    balance_ax.set(xlabel="epoch", ylim=(0, 1.05), title="cluster balance")
    # Phase boundaries (warm start, CDC, self-labelling) as vertical lines.
    changes = frame["epoch"][frame["phase"] != frame["phase"].shift()].iloc[1:]
    for ax in (loss_ax, balance_ax):
        for epoch in changes:
            ax.axvline(epoch - 0.5, color="grey", linestyle=":")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_embedding(
    model: Any,
    X: Any = None,
    *,
    part: str = "instance",
    method: str = "pca",
    labels_true: Any = None,
    random_state: int | None = 0,
    fig: Any = None,
) -> Any:
    """A 2-D map of the instance or categorical embedding, coloured by cluster.

    Parameters
    ----------
    model : CDCClustering
        Fitted.
    X : array-like, default=None
        Samples to embed; None uses the training embeddings and ``labels_``.
    part : {"instance", "categorical"}, default="instance"
    method : {"pca", "tsne"}, default="pca"
        scikit-learn's PCA or TSNE to two dimensions.
    labels_true : array-like, default=None
        When given, a second panel colours the same map by these labels.
    random_state : int or None, default=0
        Seed of the projection.
    fig : matplotlib Figure, default=None

    Returns
    -------
    matplotlib.figure.Figure
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if part not in ("instance", "categorical"):
        raise ValueError(f"part must be 'instance' or 'categorical', got {part!r}.")
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}.")
    if X is None:
        labels = model.labels_
        data = model.instance_embedding_ if part == "instance" else model.categorical_embedding_
    else:
        out = model.transform(X)
        labels = out[:, : model.n_clusters].argmax(axis=1)
        data = out[:, model.n_clusters :] if part == "instance" else out[:, : model.n_clusters]
    projector = (
        PCA(2, random_state=random_state)
        if method == "pca"
        else TSNE(2, init="pca", perplexity=min(30.0, (len(data) - 1) / 3), random_state=random_state)
    )
    points = projector.fit_transform(np.asarray(data, dtype=np.float64))
    plt = _pyplot()
    panels = [("cluster", labels)] + ([("truth", np.asarray(labels_true))] if labels_true is not None else [])
    fig = fig or plt.figure(figsize=(4.5 * len(panels), 4))
    for ax, (title, colour) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        ax.scatter(points[:, 0], points[:, 1], c=colour, cmap="tab10", s=6)
        ax.set(title=f"{part} part, {method.upper()}, coloured by {title}", xticks=[], yticks=[])
    fig.tight_layout()
    return fig


def plot_confusion(labels_true: Any, labels_pred: Any, *, ax: Any = None) -> Any:
    """The matched confusion matrix: clusters reordered to face their class.

    Returns
    -------
    matplotlib.axes.Axes
    """
    plt = _pyplot()
    table = matched_confusion_matrix(labels_true, labels_pred)
    ax = ax or plt.figure(figsize=(5, 4.5)).gca()
    image = ax.imshow(table, cmap="Blues")
    ax.figure.colorbar(image, ax=ax)
    for (row, col), count in np.ndenumerate(table):
        if count:
            ax.text(col, row, str(count), ha="center", va="center", fontsize=7)
    ax.set(xlabel="cluster (matched order)", ylabel="class", title="matched confusion matrix")
    return ax


def plot_cluster_examples(
    model: Any, images: Any = None, *, n_per_cluster: int = 8, fig: Any = None
) -> Any:
    """A grid of example images per cluster (image mode), most confident first.

    Parameters
    ----------
    model : CDCClustering
        Fitted in image mode.
    images : images, default=None
        Any input image mode accepts; None is not allowed (the estimator keeps
        no copy of its training images), so pass the training images.
    n_per_cluster : int, default=8
    fig : matplotlib Figure, default=None

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .images import load_images
    from .views import to_float_images

    if not hasattr(model, "image_shape_"):
        raise ValueError("plot_cluster_examples needs a model fitted on images (image mode).")
    if images is None:
        raise ValueError("Pass the images to show: the estimator does not keep them.")
    # A dataset or a folder is streamed: only the images shown are decoded.
    source = load_images(images, layout=model.image_layout, num_workers=model.num_workers)
    proba = model.predict_proba(images)
    labels = proba.argmax(axis=1)
    plt = _pyplot()
    fig = fig or plt.figure(figsize=(n_per_cluster * 0.9, model.n_clusters * 0.9))
    axes = np.asarray(fig.subplots(model.n_clusters, n_per_cluster, squeeze=False))
    for cluster in range(model.n_clusters):
        members = np.flatnonzero(labels == cluster)
        members = members[np.argsort(-proba[members, cluster])][:n_per_cluster]
        for column, ax in enumerate(axes[cluster]):
            ax.set_axis_off()
            if column < len(members):
                pixels = to_float_images(source[members[column : column + 1]])[0]
                image = pixels.permute(1, 2, 0).numpy()
                ax.imshow(image[..., 0] if image.shape[2] == 1 else image, cmap="gray", vmin=0, vmax=1)
        axes[cluster, 0].set_title(f"{cluster}", fontsize=7, loc="left")
    return fig
