"""The scikit-learn estimator: validate, plan, train, store."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted
from torch import nn

from . import _validation, distributed
from ._centers import cluster_centers
from ._diagnostics import warn_collapse, warn_stopped
from ._inference import forward, is_images, predict_labels, predict_outputs, softmax
from ._inference_network import inference_network, logits_only
from ._plan import Plan, make_plan
from ._version import __version__
from .devices import resolve_device
from .images import IMAGE_LAYOUTS, StreamedImages
from .loss import EQUIPARTITIONS, NEGATIVE_WEIGHTINGS
from .scoring import neighbour_agreement, neighbour_graph
from .training import Result, train
from .views import METRICS

__all__ = ["CDCClustering"]


class CDCClustering(ClusterMixin, TransformerMixin, BaseEstimator):
    """Clustering by Contrastive representation Disentanglement (CDC).

    A network maps each sample to a representation with two parts: a
    *categorical* part under an equipartition constraint, whose argmax is the
    cluster, and an L2-normalised *instance* part. One contrastive loss over
    both parts trains it. On vectors (frozen-feature mode: embeddings or any
    numeric table) the positive of a sample is one of its nearest neighbours;
    on images (image mode) it is another augmentation of the same image and
    the encoder is trained end to end. ``docs/method.md`` says which parts
    are the paper's and which are this library's.

    Launched by ``torchrun``, ``fit`` trains data-parallel on every process
    of the launch, each on its own GPU, with the mathematics of one process
    on the global batch, and every process ends with the same fitted
    estimator (``docs/distributed.md``).

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters, the width of the categorical part.
    mode : {"auto", "features", "images"}, default="auto"
        ``"features"``: X is a table (n_samples, n_features). ``"images"``: X
        holds images (see ``image_layout``), a map-style
        ``torch.utils.data.Dataset`` of images or ``(image, label)`` pairs,
        or an ``ImageFolder`` folder. ``"auto"``: images for 3-D/4-D arrays,
        datasets and paths, features for 2-D tables.
    network : "auto" or nn.Module subclass, default="auto"
        ``"auto"``: an MLP encoder with the two heads on vectors
        (:class:`~skcdc.networks.VectorCDCNetwork`), a CNN or ResNet with
        them on images (:class:`~skcdc.networks.ImageCDCNetwork`). A class is
        built for every run with ``n_clusters``, ``in_features`` (or
        ``in_channels`` and ``image_size``) and ``network_params``; its
        ``forward`` returns ``(logits, z)``. Pass a class, not an instance,
        so that ``clone`` and refits start afresh.
    network_params : dict, default=None
        Keyword arguments of the network, e.g. ``hidden_dim``, ``n_layers``,
        ``instance_dim`` (default 128, the width of the instance part),
        ``n_heads`` (categorical heads trained side by side; the lowest-loss
        one predicts); in image mode ``backbone`` (``"small_cnn"``,
        ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or a class),
        ``backbone_weights`` (a state dict or a file of one: pretrained
        weights you supply) and ``freeze_backbone``. Unknown keys are refused
        before training.
    augmentation : "auto" or callable, default="auto"
        Image mode: maps one float image (C, H, W) in [0, 1] to an augmented
        one of the same size, e.g. a ``torchvision.transforms.v2.Compose``.
        ``"auto"`` picks a recipe by resolution
        (:func:`skcdc.views.default_augmentation`).
    image_layout : {"auto", "channels_first", "channels_last"}, default="auto"
        Channel axis of 4-D image arrays; ``"auto"`` tells it from the shape
        and asks for this parameter when it cannot.
    neighbour_share : float or "auto", default="auto"
        Image mode, images held in memory: how often the second view of an
        image is an augmentation of one of its ``n_neighbors`` nearest
        neighbours in pixel space instead of the image itself. 0 keeps the
        paper's two augmentations of one image; 0.5 also teaches the encoder
        what pixel neighbours share, which helps small grey images whose
        pixel neighbours mostly share a class. ``"auto"``: 0.5 for arrays of
        images 16 to 31 px on a side (MNIST-like), 0 for smaller and larger
        images, whose nearest pixels share less than their class, and for a
        dataset or a folder, which is not held in memory
        (``docs/image-mode.md``).
    refine_epochs : int or "auto", default="auto"
        Image mode, default network: epochs of a second stage that freezes
        the backbone trained end to end and clusters its features with
        neighbour positives (new heads, then self-labelling). ``"auto"``:
        ``epochs``; 0 keeps the single end-to-end stage of the paper.
    tau_c : float, default=0.2
        Temperature of the categorical part of the joint similarity: a
        negative in the anchor's cluster has its weight multiplied
        (``"hard"``) or divided (``"debiased"``) by up to ``exp(1 / tau_c)``.
    tau_z : float, default=0.2
        Temperature of the instance part.
    negative_weighting : {"debiased", "hard"}, default="debiased"
        ``"hard"`` is the literal reading of the paper's abstract (negatives
        of the anchor's cluster weigh more); ``"debiased"`` treats them as
        likely false negatives and weighs them less, which groups similar
        samples (``docs/method.md``).
    equipartition : {"auto", "entropy", "sinkhorn", "none"}, default="auto"
        How the equal-size constraint enters. ``"entropy"``: the categorical
        part is ``softmax(logits)`` and the entropy of the batch's mean
        assignment is rewarded (soft: clusters may end unequal).
        ``"sinkhorn"``: it is the batch's balanced Sinkhorn
        assignment (hard). ``"auto"``: entropy on vectors, Sinkhorn in image
        mode, where an encoder trained end to end can otherwise collapse
        into one cluster. ``"none"``: no constraint.
    entropy_weight : float, default=1.0
        Strength of the marginal-entropy reward. Lower values let clusters
        of unequal sizes form but also let similar groups share a cluster
        (``docs/user-guide.md``); raise it when clusters end empty.
    n_neighbors : int, default=10
        On vectors the positive of a sample is one of its ``n_neighbors``
        nearest neighbours; :meth:`score` reads as many. In image mode,
        the neighbours of ``neighbour_share``.
    metric : {"euclidean", "cosine"}, default="euclidean"
        Distance of the neighbour search; ``"cosine"`` suits text embeddings
        whose norm carries no meaning.
    n_init : int or "auto", default="auto"
        Trainings from different seeds. The one whose clusters agree best
        with the neighbour graph (the label-free :meth:`score`) is kept, as
        ``KMeans`` keeps its lowest inertia; on vectors the runs' consensus
        replaces it when it scores at least as well. ``"auto"``: up to 5000
        samples 4 on vectors and 3 on images; above, 3 on vectors and 1 on
        images. Each restart costs one more run.
    kmeans_floor : bool, default=True
        On vectors held in memory (up to 100000 rows), also run ``KMeans``
        on X and keep its partition unless the trained one agrees clearly
        better with each sample's next ``2 * n_neighbors`` neighbours, those
        beyond the positive pairs (``docs/method.md``).
    epochs : int or "auto", default="auto"
        Passes over the data in the CDC phase of each run. ``"auto"``: on
        vectors 30 up to 5000 samples and 20 above (at least 100 optimiser
        steps); on images 50, or 30 with neighbour positives
        (``neighbour_share`` above 0), which reach as much in fewer epochs.
    self_labelling_epochs : int or "auto", default="auto"
        Epochs of a last phase (SCAN's self-labelling) in which each
        confident prediction becomes the target of another view of the same
        sample. ``"auto"``: on vectors 10 (at least 50 optimiser steps);
        none while an image encoder is trained end to end (the refinement
        stage has it).
    batch_size : int, default=256
        Samples per optimiser step (each gives two views); shrunk to the
        number of samples when larger. Under ``torchrun`` it is the global
        batch, shared out among the processes.
    learning_rate : float, default=1e-3
        AdamW learning rate.
    device : str or torch.device, default="auto"
        ``"auto"``: CUDA when available, else the CPU. Under ``torchrun``,
        CUDA means the GPU of the process's local rank.
    mixed_precision : bool, default=True
        Autocast the network to bfloat16 where the hardware computes it
        natively (the loss stays in float32): CUDA devices that support it,
        and CPUs with AVX512-BF16 or AMX for vectors. Such a CPU and one
        without give different labels for one ``random_state``; ``False``
        computes in float32 everywhere.
    num_workers : int, default=0
        DataLoader workers that decode a dataset or an image folder.
    checkpoint_dir : str, path-like or None, default=None
        A folder where each run's full training state is saved after every
        epoch (``run-<i>.pt``). A later ``fit`` of the same data and
        parameters resumes from it and ends as an uninterrupted one would; a
        checkpoint of other data or parameters is refused.
    random_state : int, RandomState instance or None, default=None
        Seeds every random draw of training. On the CPU the same value gives
        the same labels.
    verbose : int, default=0
        Above 0, a tqdm progress bar per run on stderr.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,), int32
        Cluster of each training sample.
    categorical_embedding_ : ndarray of shape (n_samples, n_clusters) or None
        Cluster probabilities (``softmax(logits)``) of the training samples.
        Kept when ``n_samples * (n_clusters + instance_dim)`` is at most 50
        million values (200 MB); None above, where :meth:`transform` of the
        training data gives them block by block.
    instance_embedding_ : ndarray of shape (n_samples, instance_dim) or None
        L2-normalised instance part of the training samples, kept by the same
        rule.
    cluster_centers_ : ndarray of shape (n_clusters, n_features) or (n_clusters, C, H, W)
        Mean training sample of each cluster, in input space (an empty
        cluster gets the probability-weighted mean; images in [0, 1]).
    history_ : pandas.DataFrame
        One row per epoch of the kept run: ``phase``, ``loss``,
        ``contrastive``, ``best_head``, ``cluster_entropy`` (entropy of the
        cluster sizes over ``log K``: 1 is balanced), ``n_empty_clusters``,
        ``largest_cluster``, ``time`` (seconds), ``n_relocated`` (clusters
        relocated after the epoch: a cluster left empty for 300 optimiser
        steps is moved to split the cluster whose split helps most).
    run_scores_ : ndarray of shape (n_runs,)
        The label-free score of each run; in image mode of the end-to-end
        stage's runs.
    refinement_run_scores_ : ndarray of shape (n_refinement_runs,)
        The same for the refinement stage's runs (empty without one).
    consensus_ : bool
        Whether ``network_`` is the consensus of the runs.
    kmeans_floor_ : bool
        Whether the partition is k-means' (``kmeans_floor``): ``network_``
        then labels by the nearest k-means centre and its instance part is
        the trained network's.
    floor_scores_ : ndarray of shape (2,) or (0,)
        Held-out neighbour agreement (nats) of the trained partition and of
        k-means'; empty when k-means did not run.
    neighbour_search_ : NeighbourSearch or None
        Which neighbour search found the positives of vector input
        (``"exact"`` or ``"hnsw"``), its seconds and its recall measured on a
        sample of rows; None in image mode without a refinement stage.
    refined_ : bool
        Whether the refinement stage ran.
    stop_reason_ : str or None
        ``"interrupted"`` or ``"diverged"`` when training stopped early and
        the weights of the last completed epoch were kept, else None.
    n_iter_ : int
        Epochs run by the kept run, all phases and stages together.
    best_head_ : int
        The categorical head kept for prediction.
    network_ : torch.nn.Module
        The trained network, input scaling included.
    device_ : torch.device
        Where it was trained.
    image_shape_ : tuple of int
        Image mode: (C, H, W) of the training images.
    n_features_in_ : int
        Number of features seen during fit (vectors).
    feature_names_in_ : ndarray of shape (n_features,)
        Names of the features seen during fit, when X has string column names.

    See Also
    --------
    sklearn.cluster.KMeans : The baseline on identical features.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skcdc import CDCClustering
    >>> X, _ = load_digits(return_X_y=True)
    >>> model = CDCClustering(n_clusters=10, n_init=1, epochs=5, random_state=0).fit(X)
    >>> model.labels_.shape
    (1797,)
    >>> model.transform(X[:2]).shape  # 10 categorical + 128 instance columns
    (2, 138)
    """

    # Set by fit, on vectors and on images: annotated only (no class
    # attribute), so that hasattr still tells which input a model saw.
    n_features_in_: int
    image_shape_: tuple[int, ...]

    _parameter_constraints: ClassVar[dict] = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "mode": [StrOptions({"auto", "features", "images"})],
        "network": [StrOptions({"auto"}), type],
        "network_params": [dict, None],
        "augmentation": [StrOptions({"auto"}), callable],
        "image_layout": [StrOptions(set(IMAGE_LAYOUTS))],
        "neighbour_share": [StrOptions({"auto"}), Interval(Real, 0, 1, closed="both")],
        "refine_epochs": [StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")],
        "tau_c": [Interval(Real, 0, None, closed="neither")],
        "tau_z": [Interval(Real, 0, None, closed="neither")],
        "negative_weighting": [StrOptions(set(NEGATIVE_WEIGHTINGS))],
        "equipartition": [StrOptions({"auto", *EQUIPARTITIONS})],
        "entropy_weight": [Interval(Real, 0, None, closed="left")],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "metric": [StrOptions(set(METRICS))],
        "n_init": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "kmeans_floor": ["boolean"],
        "epochs": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "self_labelling_epochs": [StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "device": [str, torch.device],
        "mixed_precision": ["boolean"],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "checkpoint_dir": [str, os.PathLike, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        mode: str = "auto",
        network: str | type[nn.Module] = "auto",
        network_params: dict | None = None,
        augmentation: str | Callable[[torch.Tensor], torch.Tensor] = "auto",
        image_layout: str = "auto",
        neighbour_share: float | str = "auto",
        refine_epochs: int | str = "auto",
        tau_c: float = 0.2,
        tau_z: float = 0.2,
        negative_weighting: str = "debiased",
        equipartition: str = "auto",
        entropy_weight: float = 1.0,
        n_neighbors: int = 10,
        metric: str = "euclidean",
        n_init: int | str = "auto",
        kmeans_floor: bool = True,
        epochs: int | str = "auto",
        self_labelling_epochs: int | str = "auto",
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        device: str | torch.device = "auto",
        mixed_precision: bool = True,
        num_workers: int = 0,
        checkpoint_dir: str | os.PathLike | None = None,
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.mode = mode
        self.network = network
        self.network_params = network_params
        self.augmentation = augmentation
        self.image_layout = image_layout
        self.neighbour_share = neighbour_share
        self.refine_epochs = refine_epochs
        self.tau_c = tau_c
        self.tau_z = tau_z
        self.negative_weighting = negative_weighting
        self.equipartition = equipartition
        self.entropy_weight = entropy_weight
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.n_init = n_init
        self.kmeans_floor = kmeans_floor
        self.epochs = epochs
        self.self_labelling_epochs = self_labelling_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.device = device
        self.mixed_precision = mixed_precision
        self.num_workers = num_workers
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X: Any, y: None = None) -> CDCClustering:
        """Train the network on X and label the training samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), images, Dataset or path
            Vectors (dense; reduce sparse matrices first, e.g. with
            ``TruncatedSVD``) or images (see ``mode``).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : CDCClustering
            The fitted estimator.
        """
        self._validate_params()
        device = resolve_device(self.device)
        # Under torchrun: join the process group first, so that every rank
        # checks its share of streamed input.
        world = distributed.join(device)
        X = _validation.validate_input(self, X, reset=True)
        _validation.check_n_clusters(self.n_clusters, X.shape[0])
        plan = self._plan(X, world.place(device))
        _validation.check_batch_shares(plan.batch_size, world.size)
        result = train(
            plan,
            X,
            check_random_state(self.random_state),
            checkpoint_dir=self.checkpoint_dir,
            verbose=self.verbose,
            world=world,
        )
        self._store(result, X, plan, world)
        warn_stopped(result.stop_reason, self.n_iter_, result.planned_epochs, self.learning_rate)
        final = plan.refinement or plan
        warn_collapse(self.labels_, self.n_clusters, final.loss.equipartition)
        return self

    def _plan(self, X: Any, device: torch.device) -> Plan:
        images = is_images(X)
        return make_plan(
            self.get_params(),
            n_samples=X.shape[0],
            images=images,
            image_shape=tuple(X.shape[1:]) if images else None,
            streamed=isinstance(X, StreamedImages),
            device=device,
        )

    def _store(
        self, result: Result, X: np.ndarray | torch.Tensor, plan: Plan, world: distributed.World
    ) -> None:
        run = result.run
        self.network_ = run.network
        self._make_inference_copies()
        self.device_ = plan.device
        self.best_head_ = run.best_head
        self.history_ = run.history
        self.n_iter_ = int(run.history["epoch"].iloc[-1])
        self.stop_reason_ = result.stop_reason
        self.run_scores_ = np.asarray(result.run_scores, dtype=float)
        self.refinement_run_scores_ = np.asarray(result.refinement_scores, dtype=float)
        self.refined_ = bool(self.refinement_run_scores_.size)
        self.consensus_ = result.consensus
        self.kmeans_floor_ = result.floor
        self.floor_scores_ = np.asarray(result.floor_scores, dtype=float)
        self.neighbour_search_ = result.neighbour_search
        self.labels_ = run.labels
        # Kept only where they are small (Plan.keep_outputs); transform gives
        # them block by block otherwise.
        self.categorical_embedding_ = None if run.logits is None else softmax(run.logits)
        self.instance_embedding_ = run.z
        self.cluster_centers_ = cluster_centers(
            X, self.labels_, self.n_clusters, self.network_, world
        ).reshape(-1, *X.shape[1:])

    def _make_inference_copies(self) -> None:
        """What prediction runs (:mod:`skcdc._inference_network`): made once
        per fitted or loaded network, never pickled."""
        full = inference_network(self.network_, with_instance=True)
        self._inference_copies = {True: full, False: logits_only(full)}

    def predict(self, X: Any) -> np.ndarray:
        """Cluster of each sample: the argmax of its categorical logits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            int32. In a process group (under ``torchrun``), every process
            labels its block of rows and all of them get every label.
        """
        check_is_fitted(self)
        X = _validation.validate_input(self, X, reset=False)
        # Under torchrun, every rank labels its block of rows.
        return predict_labels(self._inference_copies[False], X, distributed.current_world())

    def fit_predict(self, X: Any, y: None = None) -> np.ndarray:
        """Fit on X and return the training labels (``labels_``)."""
        return self.fit(X).labels_

    def predict_proba(self, X: Any) -> np.ndarray:
        """Cluster probabilities, ``softmax`` of the categorical logits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images

        Returns
        -------
        proba : ndarray of shape (n_samples, n_clusters)
            Rows sum to 1.
        """
        check_is_fitted(self)
        X = _validation.validate_input(self, X, reset=False)
        return predict_outputs(self._inference_copies[False], X, distributed.current_world())

    def transform(self, X: Any) -> np.ndarray:
        """The disentangled representation of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_clusters + instance_dim)
            The categorical part (the cluster probabilities, as
            :meth:`predict_proba`), then the L2-normalised instance part;
            ``get_feature_names_out`` names them ``categorical<k>`` and
            ``instance<j>``.
        """
        check_is_fitted(self)
        X = _validation.validate_input(self, X, reset=False)
        return predict_outputs(self._inference_copies[True], X, distributed.current_world())

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the columns of :meth:`transform`.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Only checked against the names seen in fit.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features, generate_names=False)
        names = [f"categorical{k}" for k in range(self.n_clusters)]
        names += [f"instance{j}" for j in range(self._instance_dim())]
        return np.asarray(names, dtype=object)

    def _instance_dim(self) -> int:
        """Width of the instance part, read off the network by one sample."""
        shape = self.image_shape_ if hasattr(self, "image_shape_") else (self.n_features_in_,)
        _, z = forward(self._inference_copies[True], np.zeros((1, *shape), dtype=np.float32))
        return z.shape[1]

    def score(self, X: Any, y: None = None) -> float:
        """Label-free score: neighbour agreement of the predicted clusters.

        The mutual information (nats) between the cluster of each sample of
        X and the clusters of its ``n_neighbors`` nearest neighbours in X (in
        the instance space for images). 0 when every sample is in one cluster
        or the clusters ignore the neighbourhood; at most
        ``log(n_clusters)``. Higher is better, so
        ``GridSearchCV(CDCClustering(), params)`` can tune without labels;
        compare it between settings with the same ``n_clusters``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        X = _validation.validate_input(self, X, reset=False)
        if is_images(X):
            logits, z = forward(self._inference_copies[True], X)
            labels = logits.argmax(axis=1)
            neighbors = neighbour_graph(z, self.n_neighbors)
        else:
            labels = predict_labels(self._inference_copies[False], X)
            neighbors = neighbour_graph(X, self.n_neighbors, self.metric)
        return neighbour_agreement(labels, neighbors)

    def __getstate__(self) -> dict:
        # The network is pickled on the CPU, so that a model fitted on a GPU
        # loads on a machine without one.
        # A copy: object.__getstate__ returns the instance's own __dict__.
        state = dict(super().__getstate__())
        if "network_" in state:
            state["network_"] = copy.deepcopy(state["network_"]).cpu()
        # Made again from network_ on loading.
        state.pop("_inference_copies", None)
        state["_skcdc_version"] = __version__
        return state

    def __setstate__(self, state: dict) -> None:
        saved = state.pop("_skcdc_version", None)
        if saved is not None and saved != __version__:
            warnings.warn(
                f"This CDCClustering was pickled by skcdc {saved} and is loaded by skcdc "
                f"{__version__}; predictions may differ or fail. Refit it, or install "
                f"skcdc=={saved}.",
                UserWarning,
                stacklevel=2,
            )
        super().__setstate__(state)
        if "network_" in state:
            self._make_inference_copies()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
