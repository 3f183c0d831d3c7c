"""The scikit-learn estimator: a thin layer over views, networks, loss and engine."""

from __future__ import annotations

import copy
import inspect
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.metrics import mutual_info_score
from sklearn.preprocessing import normalize
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data
from torch import nn
from torch.utils.data import RandomSampler

from . import persistence
from .consensus import RestartConsensus, fit_consensus
from .engine import (
    INTERRUPTED,
    SCHEDULES,
    Checkpoint,
    Engine,
    Phase,
    ProgressBar,
    epoch_steps,
)
from .exceptions import CheckpointMismatchError, CollapseWarning, TrainingStoppedWarning
from .images import IMAGE_LAYOUTS, is_image_input, load_images
from .loss import EQUIPARTITIONS, NEGATIVE_WEIGHTINGS, CDCLoss, PseudoLabelLoss, SelfLabelLoss
from .networks import (
    BACKBONES,
    BackboneFeatures,
    ChannelNormalizer,
    ImageCDCNetwork,
    InputScaler,
    SelectHead,
    VectorCDCNetwork,
)
from .relocation import EmptyClusterRelocation
from .views import (
    METRICS,
    AugmentedViews,
    NeighbourViews,
    default_augmentation,
    knn_indices,
    to_float_images,
)

__all__ = ["CDCClustering"]

# Rows per forward pass at prediction time: large enough to keep a GPU busy,
# small enough that the activations of the default network stay in the tens of MB.
_PREDICT_BATCH = 4096
_PREDICT_BATCH_IMAGES = 512
# n_init="auto" restarts up to this many samples: 5 times on vectors, whose runs
# are short, 3 times on images, each of whose runs trains an encoder
# (docs/method.md, "Five restarts on small feature sets"). Above it 3 times on
# vectors, each run shortened from 50 CDC epochs to 20 by epochs="auto", so the
# three cost 1.3 times one long run and keep the 90 s budget at 10000 x 1280
# (docs/method.md, "Three short restarts on large feature sets"); on images 3
# times when the runs are compared early (n_init_epochs), else once.
_AUTO_N_INIT_MAX_SAMPLES = 5000
_AUTO_N_INIT_VECTORS = 5
_AUTO_N_INIT_IMAGES = 3
_AUTO_N_INIT_COMPARED_EARLY = 3
_AUTO_N_INIT_LARGE_VECTORS = 3
_AUTO_EPOCHS = 50
_AUTO_EPOCHS_SHORTENED = 20
# n_init="auto" in image mode's refinement stage, at any size: its runs cost a
# few percent of the end-to-end stage each, and on its features the label-free
# score ranks them well (docs/method.md, "Restarts in the refinement stage").
_AUTO_REFINEMENT_N_INIT = 3
# self_labelling_epochs="auto" on frozen features (frozen-feature mode and image
# mode's refinement stage): 10 epochs, lengthened on small data sets to this many
# optimiser steps, since the phase converges by updates, not by passes over the
# data (docs/method.md, "Self-labelling on vectors").
_AUTO_SELF_LABELLING_EPOCHS = 10
_AUTO_SELF_LABELLING_MIN_STEPS = 200


class CDCClustering(ClusterMixin, TransformerMixin, BaseEstimator):
    """Clustering by Contrastive representation Disentanglement (CDC).

    A network maps each sample to a representation with two parts: a
    *categorical* part, trained under an equipartition constraint, whose
    argmax is the cluster label, and an L2-normalised *instance* part. One
    contrastive loss over both parts trains it. On vector input (frozen-feature
    mode: precomputed embeddings or any numeric table) the positive of a sample
    is one of its nearest neighbours. See ``docs/method.md`` for which parts of
    the method are the paper's and which are this library's choices.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters, the width of the categorical part.
    mode : {"auto", "features", "images"}, default="auto"
        ``"features"``: X is a table (n_samples, n_features), e.g. precomputed
        embeddings; positives are nearest neighbours and only the network on
        top of the features is trained. ``"images"``: X holds images (see
        ``image_layout``), a ``torch.utils.data.Dataset`` of images or
        ``(image, label)`` pairs, or the path of an ``ImageFolder`` folder;
        positives are two augmentations of each image and the whole encoder
        is trained. ``"auto"`` picks images for 3-D/4-D arrays, datasets and
        paths, features for 2-D tables.
    image_layout : {"auto", "channels_first", "channels_last"}, default="auto"
        Channel axis of 4-D image arrays: (N, C, H, W) or (N, H, W, C), with C
        of 1 or 3. ``"auto"`` tells it from the shape and asks for this
        parameter when both axes 1 and 3 could be channels. (N, H, W) arrays
        are grey images. uint8 images are read as 0-255, float ones must lie
        in [0, 1].
    augmentation : "auto" or callable, default="auto"
        Image mode: maps one float image (C, H, W) in [0, 1] to an augmented
        one of the same size, e.g. a ``torchvision.transforms.v2.Compose``.
        ``"auto"`` chooses by resolution
        (:func:`skcdc.views.default_augmentation`): gentle crops and affine
        moves under 32 px, SimCLR's CIFAR recipe from 32 px, the full SimCLR
        recipe from 96 px.
    backbone : str or nn.Module class, default="auto"
        Image mode encoder: ``"small_cnn"``, ``"resnet18"``, ``"resnet34"``,
        ``"resnet50"`` (torchvision, random weights, small-image stem up to
        32 px), ``"auto"`` (the small CNN up to 32 px, ResNet-18 above) or a
        module class mapping (B, C, H, W) to (B, F), built with
        ``network_kwargs["backbone_kwargs"]``.
    backbone_weights : dict, str, path-like or None, default=None
        Image mode: a state dict for the backbone (pretrained weights you
        supply; nothing is downloaded), or a file of one, read with
        ``torch.load(weights_only=True)``.
    neighbour_positives : float, default=0.0
        Image mode: probability that a sample's positive is an augmentation
        of one of its ``n_neighbors`` nearest neighbours in pixel space
        rather than of the sample itself (0: the paper's two views of one
        image).
    freeze_backbone : bool, default=False
        Image mode: keep the backbone fixed and train the heads only.
    refine_epochs : int or "auto", default="auto"
        Image mode, default network: epochs of a second stage (this
        library's extra, after SCAN's clustering step) that freezes the
        backbone trained end to end and clusters its features of the
        training images in frozen-feature mode: new heads, positives among
        the ``n_neighbors`` nearest neighbours in that feature space, the
        other parameters as given. Its network then predicts. ``"auto"``:
        ``epochs``; 0 skips it (the paper's single stage). It raised ACC from
        0.899 to 0.940 on digits as images and, on the two Fashion-MNIST
        image seeds measured both ways, from 0.583 to 0.673
        (``docs/method.md``).
    num_workers : int, default=0
        DataLoader workers that decode a dataset or an image folder.
    tau_c : float, default=0.2
        Temperature of the categorical part of the joint similarity. A negative
        in the anchor's cluster has its weight multiplied (``"hard"``) or
        divided (``"debiased"``) by up to ``exp(1 / tau_c)``.
    tau_z : float, default=0.2
        Temperature of the instance part of the joint similarity.
    negative_weighting : {"debiased", "hard"}, default="debiased"
        How the categorical part weights negatives. ``"hard"`` is the literal
        reading of the paper's abstract (same-cluster negatives weigh more);
        ``"debiased"`` treats them as likely false negatives and weighs them
        less, which groups similar samples; it is the default because it
        clusters better on every data set we measured (``docs/method.md``).
    equipartition : {"auto", "entropy", "sinkhorn", "none"}, default="auto"
        How the equal-cluster-size constraint enters. ``"auto"``:
        ``"entropy"`` in frozen-feature mode, ``"sinkhorn"`` in image mode,
        where an encoder trained end to end can buy a lower contrastive loss
        by putting every sample in one cluster (with debiased weighting all
        negatives then weigh less) and only the hard constraint holds it back
        (``docs/method.md``). ``"sinkhorn"``: the
        categorical part is the log-domain Sinkhorn assignment of each batch
        (hard constraint). ``"entropy"``: it is ``softmax(logits)`` and the
        entropy of the batch's mean assignment is rewarded (soft constraint,
        relax it with a smaller ``entropy_weight`` for imbalanced data).
        ``"none"``: no constraint; clusters may collapse.
    entropy_weight : float, default=1.0
        Strength of the marginal-entropy reward.
    sinkhorn_epsilon : float, default=0.5
        Entropic regularisation of Sinkhorn; smaller gives harder assignments.
    sinkhorn_iterations : int, default=3
        Sinkhorn iterations per batch.
    anchor_weight : float or "auto", default="auto"
        With ``equipartition="sinkhorn"``: weight of the cross-entropy that
        pulls ``softmax(logits)`` towards the other view's balanced
        assignment, so that prediction (``argmax(logits)``, no Sinkhorn)
        inherits the balance. ``"auto"``: 3 in image mode, where a weaker tie
        let the argmax collapse clusters that the training assignments kept
        (Fashion-MNIST, ``docs/method.md``), 1 in frozen-feature mode.
    instance_dim : int, default=128
        Width of the instance part.
    hidden_dim : int, default=512
        Width of the default network's hidden layers.
    n_init : "auto" or int, default="auto"
        Number of trainings from different seeds; the one whose clusters
        agree best with the neighbour structure of the training data (the
        label-free :meth:`score`) is kept, as ``KMeans`` keeps its lowest
        inertia, or their consensus when it scores as well
        (``combine_restarts``). Costs ``n_init`` times the fit time, unless
        ``n_init_epochs`` compares the runs early. ``"auto"``: on up to 5000
        samples, where seeds disagree most and a fit is short, 5 on features
        and 3 on images (each image run trains an encoder). Above that 3 on
        features, each run then shortened to 20 CDC epochs by
        ``epochs="auto"``, so that the three cost about 1.3 times one run of
        50 epochs; on images 3 when
        ``n_init_epochs`` compares the runs early, else 1
        (``docs/method.md``). Image mode's refinement stage restarts 3 times
        at any size, its runs being short next to the end-to-end stage; an
        int applies to both stages.
    n_init_epochs : int or None, default=None
        With ``n_init > 1``: the epoch (counted over all phases) after which
        the runs are compared by the label-free score; only the best trains
        on to the end, the others are dropped, so ``n_init`` runs cost about
        ``1 + (n_init - 1) * n_init_epochs / epochs`` single runs. None: every
        run trains to the end and is compared there (``n_init`` times the
        cost). Not a default: on Fashion-MNIST images the score after 5
        epochs ranked four seeds right but picked, for another seed, a run
        that ended below the one a single run gives (``docs/method.md``).
    combine_restarts : {"best_or_consensus", "best", "consensus"}, \
            default="best_or_consensus"
        What the ``n_init`` runs leave. ``"best"``: the run with the best
        label-free score. ``"consensus"``: every run is kept, and k-means on
        their concatenated cluster probabilities gives the clusters
        (:mod:`skcdc.consensus`); prediction runs all of them, ``n_init``
        times the prediction time and memory of one run.
        ``"best_or_consensus"``: the consensus when its label-free score is at
        least the best run's, else the best run (``consensus_`` says which).
        In pools of 20-25 runs on five benchmark sets the consensus narrowed
        the spread of ACC over seeds on four, but now and then the runs'
        majority shares an error the best-scored run avoided (on BBC, one
        seed in five: 0.877 against 0.957); the score keeps such a run, so
        the gated choice was never worse than the best run in mean or spread
        (``docs/method.md``). The consensus needs several runs trained to the
        end in frozen-feature mode: in image mode, with ``n_init_epochs``, or
        when training stopped early, ``"best_or_consensus"`` keeps the best
        run and ``"consensus"`` is refused before training (image mode,
        ``n_init_epochs``).
    relocate_empty_clusters : bool, default=True
        When no training sample has chosen a cluster for 300 optimiser steps
        in a row, move that cluster onto the far side of the bisecting-k-means
        cut that lowers the within-cluster sum of squares most, usually a
        merged pair (as k-means relocates an empty centre;
        :mod:`skcdc.relocation`), so that a cluster lost early is not lost for
        good. Clusters that come back by themselves do so sooner and are left
        alone, so nothing changes in a run where they do; not done in the last
        5 epochs; ``history_["n_relocated"]`` counts it per epoch. Networks
        without :class:`skcdc.networks.CDCHeads` are left alone.
    n_heads : int, default=1
        Independent categorical heads trained side by side on one encoder;
        the head with the lowest loss in the last epoch is kept
        (``best_head_``). More heads make the result depend less on the
        initialisation, at a small cost.
    network : "auto" or nn.Module subclass, default="auto"
        ``"auto"`` is an MLP encoder with the two heads
        (:class:`skcdc.networks.VectorCDCNetwork`). A class is instantiated at
        fit with ``in_features``, ``n_clusters``, ``instance_dim`` and
        ``network_kwargs``; its ``forward`` must return ``(logits, z)``. Pass a
        class, not an instance, so that ``clone`` and refits start afresh.
    network_kwargs : dict, default=None
        Extra keyword arguments of ``network``. With ``"auto"``, ``hidden_dim``
        and ``n_heads`` are taken from the parameters of those names. A user
        network may return logits of shape (B, H, K) to have H heads.
    n_neighbors : int, default=10
        The positive of a sample is one of its ``n_neighbors`` nearest
        neighbours (exact search, in blocks, on the training device).
    mutual_neighbors : bool, default=False
        Draw a vector's positive only from its *mutual* neighbours, those
        that also count it among their ``n_neighbors`` nearest (a sample with
        none keeps its nearest neighbour). Fewer positives cross a class
        border (with 10 neighbours, 0.76 to 0.79 of them share the sample's
        class on Fashion-MNIST's EfficientNet embeddings). In pools of 40
        runs on two sets of EfficientNet image embeddings it gained about
        1.5 points, within twice the pools' error, and on digits' embeddings
        halved the spread; on small tables, raw pixels and BBC News it lost
        (``docs/method.md``). Worth a try on image embeddings whose restarts
        disagree. The restart score still reads the whole graph. In image
        mode it applies to the refinement stage's features.
    metric : {"euclidean", "cosine"}, default="euclidean"
        Distance of the neighbour search.
    feature_noise : float, default=0.0
        Standard deviation of Gaussian noise added to both views, in units of
        each feature's standard deviation.
    epochs : int or "auto", default="auto"
        Passes over the training set in the CDC phase, per run. ``"auto"``:
        50, or 20 where ``n_init="auto"`` restarts three times on more than
        5000 vectors (on Fashion-MNIST pixels three runs of 20 epochs reached
        0.646 ± 0.016 in 63 s where one run of 50 reached 0.592 ± 0.060 in
        44 s; ``docs/method.md``).
    init : {"random", "kmeans"}, default="random"
        How the categorical head starts. ``"kmeans"``: ``init_epochs`` of
        cross-entropy to the labels of ``KMeans(n_clusters, n_init=3)`` on the
        input (row-normalised when ``metric="cosine"``) before the CDC phase,
        so that training refines a stable partition.
    init_epochs : int, default=5
        Length of that warm start.
    self_labelling_epochs : int or "auto", default="auto"
        Epochs of a phase after the CDC phase (SCAN's self-labelling, this
        library's extra): each confident sample's prediction becomes the
        target of another view of the same sample (an augmentation of the
        image; on vectors the vector itself, never a neighbour), classes
        weighted by inverse frequency. "auto": on vectors (frozen-feature
        mode and image mode's refinement stage) 10 epochs, lengthened to 200
        optimiser steps on small data sets (at most ``epochs``: 25 epochs at
        2225 samples, 10 from 5120 samples up), 0 while the encoder is trained
        end to end on images.
    self_labelling_threshold : float, default=0.95
        Confidence (max probability) above which a sample is a target.
    batch_size : int, default=256
        Samples per batch (each gives two views). Shrunk to ``n_samples`` when
        larger.
    learning_rate : float, default=1e-3
        AdamW learning rate.
    learning_rate_schedule : {"constant", "cosine"}, default="constant"
        ``"cosine"``: within each phase (warm start, CDC, self-labelling) the
        learning rate decays from ``learning_rate`` to zero along a half
        cosine, step by step. Not a default: on the benchmark sets it acted
        like a smaller constant rate, narrower on some and lower on others
        (``docs/method.md``, "Ablation").
    weight_decay : float, default=1e-4
        AdamW weight decay.
    device : str or torch.device, default="auto"
        ``"auto"`` trains on CUDA when available and on the CPU otherwise.
    mixed_precision : bool, default=True
        Autocast the network to bfloat16 where the hardware computes it
        natively (the loss stays in float32): on CUDA, and in frozen-feature
        mode on CPUs with AVX512-BF16 or AMX, where it fits 10000 x 1280
        embeddings about 1.5 times faster at the same accuracy. Image mode
        trains in float32 on the CPU: there bfloat16 cost accuracy and saved
        little time. A CPU with bfloat16 and one without give different
        labels for the same ``random_state``; ``False`` trains in float32
        everywhere.
    checkpoint_dir : str, path-like or None, default=None
        A folder where the full training state (network, optimiser, random
        generators, history) is saved every ``checkpoint_every`` epochs, one
        file per run (``run-<i>.pt``, skcdc's own format, read with
        ``torch.load(weights_only=True)``). A later ``fit`` with the same
        data and parameters resumes from it and ends with the same result as
        an uninterrupted run; a checkpoint of other data or other parameters
        is refused. Files are kept after training, so refitting is instant.
    checkpoint_every : int, default=1
        Save period, in epochs.
    random_state : int, RandomState instance or None, default=None
        Seeds the network's initialisation and every random draw of training.
        On the CPU the same value gives the same labels.
    verbose : int, default=0
        Above 0, a tqdm progress bar per epoch with the loss, on stderr.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample.
    categorical_embedding_ : ndarray of shape (n_samples, n_clusters)
        Cluster probabilities (``softmax(logits)``) of the training samples.
    instance_embedding_ : ndarray of shape (n_samples, instance_dim)
        L2-normalised instance part of the training samples.
    cluster_centers_ : ndarray of shape (n_clusters, n_features) or (n_clusters, C, H, W)
        Mean of the training samples of each cluster, in input space (an
        empty cluster gets the probability-weighted mean); in image mode the
        mean image, pixels in [0, 1].
    image_shape_ : tuple of int
        Image mode only: (C, H, W) of the training images; ``predict`` asks
        for the same.
    refined_ : bool
        Whether the refinement stage (``refine_epochs``) ran, so that its
        network predicts from the frozen backbone's features.
    consensus_ : bool
        Whether ``network_`` is the consensus of the runs
        (:class:`skcdc.consensus.RestartConsensus`, see ``combine_restarts``)
        rather than one run.
    history_ : pandas.DataFrame
        One row per epoch: ``phase`` (``"init"``, ``"cdc"`` or ``"self-labelling"``;
        the refinement stage's follow, ``"refine"`` for its CDC phase),
        ``loss``, ``contrastive``, ``best_head``, ``cluster_entropy``
        (entropy of the training-time cluster sizes over ``log K``: 1 is
        balanced), ``n_empty_clusters``, ``largest_cluster`` (its share of
        the samples), ``time`` (seconds), ``n_relocated`` (clusters relocated
        after the epoch, see ``relocate_empty_clusters``; absent when off).
    run_scores_ : ndarray of shape (n_runs,)
        The label-free score (:meth:`score` on the training data) of each of
        the ``n_init`` runs, at the end or, when ``n_init_epochs`` compares
        them early, at that epoch; the kept run has the highest (with
        ``consensus_``, all are kept and :meth:`score` is the consensus's
        own). In image
        mode these are the end-to-end stage's runs, whose backbone the
        refinement stage then keeps.
    refinement_run_scores_ : ndarray of shape (n_refinement_runs,)
        Image mode: the same score for each run of the refinement stage (three
        with ``n_init="auto"``), on the frozen backbone's features; the kept
        run has the highest. Empty when no refinement stage ran.
    stop_reason_ : str or None
        None when every epoch ran; ``"interrupted"`` (KeyboardInterrupt) or
        ``"diverged"`` (NaN or infinite loss) when training stopped early
        and the weights of the last completed epoch were kept. A
        :class:`~skcdc.exceptions.TrainingStoppedWarning` says so.
    n_iter_ : int
        Epochs run, both phases together.
    best_head_ : int
        The categorical head kept for prediction (0 with a single head).
    network_ : torch.nn.Module
        The trained network, input scaling included; with a consensus of
        restarts a :class:`skcdc.consensus.RestartConsensus` holding every run,
        whose instance vectors are the best-scored run's.
    device_ : torch.device
        Where it was trained.
    n_features_in_ : int
        Number of features seen during fit.
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
    >>> model = CDCClustering(n_clusters=10, epochs=5, random_state=0).fit(X)
    >>> model.labels_.shape
    (1797,)
    >>> model.transform(X[:2]).shape  # 10 categorical + 128 instance columns
    (2, 138)
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "mode": [StrOptions({"auto", "features", "images"})],
        "image_layout": [StrOptions(set(IMAGE_LAYOUTS))],
        "augmentation": [StrOptions({"auto"}), callable],
        "backbone": [StrOptions(set(BACKBONES)), type],
        "backbone_weights": [dict, str, os.PathLike, None],
        "freeze_backbone": ["boolean"],
        "refine_epochs": [StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")],
        "neighbour_positives": [Interval(Real, 0, 1, closed="both")],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "tau_c": [Interval(Real, 0, None, closed="neither")],
        "tau_z": [Interval(Real, 0, None, closed="neither")],
        "negative_weighting": [StrOptions(set(NEGATIVE_WEIGHTINGS))],
        "equipartition": [StrOptions({"auto", *EQUIPARTITIONS})],
        "entropy_weight": [Interval(Real, 0, None, closed="left")],
        "sinkhorn_epsilon": [Interval(Real, 0, None, closed="neither")],
        "sinkhorn_iterations": [Interval(Integral, 1, None, closed="left")],
        "anchor_weight": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
        "instance_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden_dim": [Interval(Integral, 1, None, closed="left")],
        "n_init": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "n_init_epochs": [Interval(Integral, 1, None, closed="left"), None],
        "combine_restarts": [StrOptions({"best_or_consensus", "best", "consensus"})],
        "relocate_empty_clusters": ["boolean"],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "network": [StrOptions({"auto"}), type],
        "network_kwargs": [dict, None],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "mutual_neighbors": ["boolean"],
        "metric": [StrOptions(set(METRICS))],
        "feature_noise": [Interval(Real, 0, None, closed="left")],
        "epochs": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"kmeans", "random"})],
        "init_epochs": [Interval(Integral, 1, None, closed="left")],
        "self_labelling_epochs": [
            StrOptions({"auto"}),
            Interval(Integral, 0, None, closed="left"),
        ],
        "self_labelling_threshold": [Interval(Real, 0, 1, closed="right")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "learning_rate_schedule": [StrOptions(set(SCHEDULES))],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "device": [str, torch.device],
        "mixed_precision": ["boolean"],
        "checkpoint_dir": [str, os.PathLike, None],
        "checkpoint_every": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        mode: str = "auto",
        image_layout: str = "auto",
        augmentation: str | Callable[[torch.Tensor], torch.Tensor] = "auto",
        backbone: str | type[nn.Module] = "auto",
        backbone_weights: dict | str | os.PathLike | None = None,
        freeze_backbone: bool = False,
        refine_epochs: int | str = "auto",
        neighbour_positives: float = 0.0,
        num_workers: int = 0,
        tau_c: float = 0.2,
        tau_z: float = 0.2,
        negative_weighting: str = "debiased",
        equipartition: str = "auto",
        entropy_weight: float = 1.0,
        sinkhorn_epsilon: float = 0.5,
        sinkhorn_iterations: int = 3,
        anchor_weight: float | str = "auto",
        instance_dim: int = 128,
        hidden_dim: int = 512,
        n_init: str | int = "auto",
        n_init_epochs: int | None = None,
        combine_restarts: str = "best_or_consensus",
        relocate_empty_clusters: bool = True,
        n_heads: int = 1,
        network: str | type[nn.Module] = "auto",
        network_kwargs: dict | None = None,
        n_neighbors: int = 10,
        mutual_neighbors: bool = False,
        metric: str = "euclidean",
        feature_noise: float = 0.0,
        epochs: int | str = "auto",
        init: str = "random",
        init_epochs: int = 5,
        self_labelling_epochs: int | str = "auto",
        self_labelling_threshold: float = 0.95,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        learning_rate_schedule: str = "constant",
        weight_decay: float = 1e-4,
        device: str | torch.device = "auto",
        mixed_precision: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.mode = mode
        self.image_layout = image_layout
        self.augmentation = augmentation
        self.backbone = backbone
        self.backbone_weights = backbone_weights
        self.freeze_backbone = freeze_backbone
        self.refine_epochs = refine_epochs
        self.neighbour_positives = neighbour_positives
        self.num_workers = num_workers
        self.tau_c = tau_c
        self.tau_z = tau_z
        self.negative_weighting = negative_weighting
        self.equipartition = equipartition
        self.entropy_weight = entropy_weight
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.anchor_weight = anchor_weight
        self.instance_dim = instance_dim
        self.hidden_dim = hidden_dim
        self.n_init = n_init
        self.n_init_epochs = n_init_epochs
        self.combine_restarts = combine_restarts
        self.relocate_empty_clusters = relocate_empty_clusters
        self.n_heads = n_heads
        self.network = network
        self.network_kwargs = network_kwargs
        self.n_neighbors = n_neighbors
        self.mutual_neighbors = mutual_neighbors
        self.metric = metric
        self.feature_noise = feature_noise
        self.epochs = epochs
        self.init = init
        self.init_epochs = init_epochs
        self.self_labelling_epochs = self_labelling_epochs
        self.self_labelling_threshold = self_labelling_threshold
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.weight_decay = weight_decay
        self.device = device
        self.mixed_precision = mixed_precision
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit

    def fit(self, X: Any, y: None = None) -> CDCClustering:
        """Train the network on X and label the training samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data: precomputed embeddings or any numeric table. Sparse
            matrices are refused (densify with ``X.toarray()``, or reduce them
            first with ``TruncatedSVD``).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : CDCClustering
            The fitted estimator.
        """
        self._validate_params()
        device = _resolve_device(self.device)
        random_state = check_random_state(self.random_state)
        if self._image_mode(X):
            X = load_images(X, layout=self.image_layout, num_workers=self.num_workers)
            self._check_n_clusters(X.shape[0])
            for attribute in ("n_features_in_", "feature_names_in_"):
                self.__dict__.pop(attribute, None)
            self.image_shape_ = tuple(X.shape[1:])
        else:
            X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
            _check_float32_range(X)
            self._check_n_clusters(X.shape[0])
            self.__dict__.pop("image_shape_", None)
        self._check_combine_restarts(images=isinstance(X, torch.Tensor))
        views = self._views(X, device)
        n_init, until = self._restart_plan(X)
        seeds = [int(random_state.randint(np.iinfo(np.int32).max)) for _ in range(n_init)]
        if until is None:
            runs, stop_reason = self._full_runs(X, views, device, seeds)
            scores = [run.score for run in runs]
            best = self._combine_runs(runs, X, views, stop_reason, random_state)
        else:
            best, stop_reason, scores = self._selected_run(X, views, device, seeds, until)
        refinement_scores = []
        if stop_reason is None and self._refinement_epochs(X) > 0:
            seed = int(random_state.randint(np.iinfo(np.int32).max))
            best, refinement_scores = self._refine(best, X, seed)
            stop_reason = best.stop_reason

        self.network_ = best.network
        self.device_ = device
        self.best_head_ = best.best_head
        self.history_ = best.history
        self.n_iter_ = int(best.history["epoch"].iloc[-1])
        self.stop_reason_ = stop_reason
        self.run_scores_ = np.asarray(scores)
        self.refinement_run_scores_ = np.asarray(refinement_scores, dtype=float)
        # One fact, two views: a refinement ran exactly when it scored its runs.
        self.refined_ = bool(self.refinement_run_scores_.size)
        self.consensus_ = isinstance(best.network, RestartConsensus)
        self.categorical_embedding_ = _softmax(best.logits)
        self.instance_embedding_ = best.z
        self.labels_ = best.logits.argmax(axis=1)
        self.cluster_centers_ = _cluster_centers(
            _flat(X), self.labels_, self.categorical_embedding_
        ).reshape(-1, *X.shape[1:])
        self._warn_stopped(stop_reason, best.planned_epochs)
        self._warn_collapse()
        return self

    def _image_mode(self, X: Any) -> bool:
        if self.mode == "auto":
            return is_image_input(X)
        return self.mode == "images"

    def _restart_plan(self, X: np.ndarray | torch.Tensor) -> tuple[int, int | None]:
        """How many runs to train, and the epoch after which they are compared
        (None: each trains to the end)."""
        until = self.n_init_epochs
        if until is not None and until >= self._planned_epochs(X):
            until = None
        n_init = self.n_init
        if n_init == "auto":
            if self._shortened_restarts(X):
                n_init = _AUTO_N_INIT_LARGE_VECTORS
            elif X.shape[0] > _AUTO_N_INIT_MAX_SAMPLES:
                # Full restarts of an encoder trained end to end on many images
                # would overrun any time budget; compared early (n_init_epochs,
                # images or vectors), they cost little.
                n_init = 1 if until is None else _AUTO_N_INIT_COMPARED_EARLY
            elif isinstance(X, torch.Tensor):
                n_init = _AUTO_N_INIT_IMAGES
            else:
                n_init = _AUTO_N_INIT_VECTORS
        return n_init, (until if n_init > 1 else None)

    def _shortened_restarts(self, X: np.ndarray | torch.Tensor) -> bool:
        """Whether ``n_init="auto"`` restarts a large vector set with shorter
        runs: above 5000 samples a single run's seed decides too much (on the
        Fashion-MNIST pixels two seeds in five merge classes), and three runs
        of 50 epochs would triple the fit time."""
        return (
            self.n_init == "auto"
            and self.n_init_epochs is None
            and not isinstance(X, torch.Tensor)
            and X.shape[0] > _AUTO_N_INIT_MAX_SAMPLES
        )

    def _epochs(self, X: np.ndarray | torch.Tensor) -> int:
        """``epochs`` with "auto" resolved (see :meth:`_shortened_restarts`)."""
        if self.epochs != "auto":
            return self.epochs
        return _AUTO_EPOCHS_SHORTENED if self._shortened_restarts(X) else _AUTO_EPOCHS

    def _planned_epochs(self, X: np.ndarray | torch.Tensor) -> int:
        """Epochs of one run on X, images (end to end) or vectors, all its
        phases together."""
        warm_start = self.init_epochs if self.init == "kmeans" else 0
        return warm_start + self._epochs(X) + self._self_labelling_epochs(X)

    def _self_labelling_epochs(self, X: np.ndarray | torch.Tensor) -> int:
        """``self_labelling_epochs`` with "auto" resolved: on vectors
        (frozen-feature mode and image mode's refinement stage) 10 epochs,
        lengthened to 200 optimiser steps but not beyond the CDC phase's
        epochs; 0 when the encoder is trained end to end on images."""
        if self.self_labelling_epochs != "auto":
            return self.self_labelling_epochs
        if isinstance(X, torch.Tensor):
            return 0
        steps = epoch_steps(X.shape[0], self._batch_size(X.shape[0]))
        # The cap keeps a tiny data set (one batch per epoch) from self-labelling
        # for 200 epochs after a CDC phase of 50.
        lengthened = min(-(-_AUTO_SELF_LABELLING_MIN_STEPS // steps), self._epochs(X))
        return max(_AUTO_SELF_LABELLING_EPOCHS, lengthened)

    def _batch_size(self, n_samples: int) -> int:
        """``batch_size``, shrunk to ``n_samples`` when larger."""
        return min(self.batch_size, n_samples)

    def _refinement_epochs(self, X: np.ndarray | torch.Tensor) -> int:
        """Epochs of the refinement stage: image mode, built-in network only
        (a user's network need not have a backbone to freeze)."""
        if not isinstance(X, torch.Tensor) or not isinstance(self.network, str):
            return 0
        return self._epochs(X) if self.refine_epochs == "auto" else self.refine_epochs

    def _refinement_stage(self, X: np.ndarray | torch.Tensor, seed: int | None) -> CDCClustering:
        """The frozen-feature estimator of the refinement stage: this one's
        parameters, on features, with the default network."""
        params = self.get_params()
        params.update(
            mode="features",
            network="auto",
            network_kwargs=None,
            epochs=self._refinement_epochs(X),
            n_init=_AUTO_REFINEMENT_N_INIT if self.n_init == "auto" else self.n_init,
            refine_epochs=0,
            # The image network ends in one run's heads (see _skeleton_network).
            combine_restarts="best",
            random_state=seed,
            # Image mode keeps float32 on the CPU through to its last stage.
            mixed_precision=_use_bfloat16(
                self.mixed_precision, _resolve_device(self.device), images=True
            ),
        )
        if self.checkpoint_dir is not None:
            params["checkpoint_dir"] = Path(self.checkpoint_dir) / "refine"
        return type(self)(**params)

    def _refine(self, run: _Run, X: torch.Tensor, seed: int) -> tuple[_Run, list[float]]:
        """SCAN's clustering step with CDC's loss: freeze the backbone the
        end-to-end stage trained and cluster its features of the training
        images in frozen-feature mode. Contrastive training on augmentations
        leaves features whose neighbours share a class more often than the
        head's argmax does; neighbour positives exploit that. Returns the
        run that predicts and the scores of the refinement's runs (none when
        it was interrupted before its first epoch and the given run stands)."""
        encoder = _backbone_encoder(run.network)
        features = np.concatenate(_map_blocks(encoder, X))
        stage = self._refinement_stage(X, seed)
        try:
            with warnings.catch_warnings():
                # This fit checks the final labels and reports a stop, once.
                warnings.simplefilter("ignore", CollapseWarning)
                warnings.simplefilter("ignore", TrainingStoppedWarning)
                stage.fit(features)
        except KeyboardInterrupt:
            # Interrupted before the refinement finished an epoch: the first stage stands.
            run.stop_reason = INTERRUPTED
            run.planned_epochs += stage._planned_epochs(features)
            return run, []
        history = stage.history_.assign(
            epoch=stage.history_["epoch"] + run.history["epoch"].iloc[-1],
            phase=stage.history_["phase"].map(_refinement_phase),
        )
        logits, z = _forward(stage.network_, features)
        refined = _Run(
            network=nn.Sequential(*encoder, *stage.network_),
            best_head=stage.best_head_,
            history=pd.concat([run.history, history], ignore_index=True),
            logits=logits,
            z=z,
            score=run.score,
            stop_reason=stage.stop_reason_,
            planned_epochs=run.planned_epochs + stage._planned_epochs(features),
        )
        return refined, list(stage.run_scores_)

    def _check_combine_restarts(self, images: bool) -> None:
        if self.combine_restarts != "consensus":
            return
        if images:
            raise ValueError(
                "combine_restarts='consensus' combines frozen-feature runs; image mode "
                "keeps the best-scored run. Use combine_restarts='best' with images."
            )
        if self.n_init_epochs is not None:
            raise ValueError(
                "combine_restarts='consensus' needs every run trained to the end, but "
                f"n_init_epochs={self.n_init_epochs} drops all runs but one early; set "
                "n_init_epochs=None or combine_restarts='best'."
            )

    def _check_n_clusters(self, n_samples: int) -> None:
        if self.n_clusters > n_samples:
            raise ValueError(
                f"n_samples={n_samples} should be >= n_clusters={self.n_clusters}: "
                "lower n_clusters or pass more samples."
            )

    def _skeleton_network(self) -> nn.Module:
        """The fitted network's architecture with fresh weights, ready for a state dict."""
        if hasattr(self, "image_shape_"):
            like = torch.zeros(2, *self.image_shape_)
        else:
            like = np.zeros((2, self.n_features_in_), dtype=np.float32)
        network = self._build_network(like, pretrained=False)
        if getattr(self, "refined_", False):
            # The image network's heads already know the backbone's width.
            width = network[1].heads.categorical.in_features
            stage = self._refinement_stage(like, None)
            network = nn.Sequential(
                *_backbone_encoder(network),
                *stage._build_network(np.zeros((2, width), dtype=np.float32)),
            )
        if self._consensus_fitted():
            # The heads, centres and variance are buffers the state dict fills.
            runs = [network] + [
                self._build_network(like, pretrained=False) for _ in self.run_scores_[1:]
            ]
            centers = torch.zeros(self.n_clusters, len(runs) * self.n_clusters)
            return RestartConsensus(runs, [0] * len(runs), centers, 1.0, reference=0)
        network.append(SelectHead(self.best_head_))
        return network

    def _consensus_fitted(self) -> bool:
        """Whether the fitted network is a consensus of runs."""
        if hasattr(self, "consensus_"):
            return self.consensus_
        # Saved before consensus_ existed, when "consensus" always kept what it built.
        return _builds_consensus(
            self.combine_restarts,
            self.run_scores_.size,
            self.stop_reason_,
            images=hasattr(self, "image_shape_"),
        )

    def _build_network(self, X: np.ndarray | torch.Tensor, pretrained: bool = True) -> nn.Module:
        """Input normalisation followed by the (default or user's) network."""
        network_cls, network_kwargs = self._network_spec(image=isinstance(X, torch.Tensor))
        if not pretrained and "backbone_weights" in network_kwargs:
            network_kwargs["backbone_weights"] = None
        if isinstance(X, torch.Tensor):
            return nn.Sequential(
                ChannelNormalizer.from_images(X),
                network_cls(
                    in_channels=X.shape[1],
                    image_size=tuple(X.shape[2:]),
                    n_clusters=self.n_clusters,
                    instance_dim=self.instance_dim,
                    **network_kwargs,
                ),
            )
        return nn.Sequential(
            InputScaler.from_data(torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float32)),
            network_cls(
                in_features=X.shape[1],
                n_clusters=self.n_clusters,
                instance_dim=self.instance_dim,
                **network_kwargs,
            ),
        )

    def _views(
        self, X: np.ndarray | torch.Tensor, device: torch.device
    ) -> NeighbourViews | AugmentedViews:
        """What draws the two views of each sample: augmentations of an image
        (images are moved to the device once, as uint8, so batches never cross
        the bus) or a nearest neighbour of a vector."""
        if isinstance(X, torch.Tensor):
            augmentation = (
                default_augmentation(*X.shape[1:])
                if isinstance(self.augmentation, str)
                else self.augmentation
            )
            neighbors = None
            if self.neighbour_positives > 0:
                pixels = torch.as_tensor(_flat(X), device=device)
                neighbors = knn_indices(
                    pixels, pixels, min(self.n_neighbors, X.shape[0] - 1), exclude_self=True
                )
            return AugmentedViews(
                X.to(device),
                augmentation,
                device,
                neighbors=neighbors,
                neighbour_rate=self.neighbour_positives,
            )
        # A contiguous copy: torch cannot hold numpy's negative strides (X[::-1]).
        data = torch.tensor(np.ascontiguousarray(X), dtype=torch.float32, device=device)
        # The neighbour graph is deterministic: one search serves every run.
        return NeighbourViews(
            data,
            self.n_neighbors,
            metric=self.metric,
            noise=self.feature_noise,
            mutual=self.mutual_neighbors,
        )

    def _full_runs(
        self,
        X: np.ndarray | torch.Tensor,
        views: NeighbourViews | AugmentedViews,
        device: torch.device,
        seeds: list[int],
    ) -> tuple[list[_Run], str | None]:
        """Train one run per seed to the end (or until training stops)."""
        runs, stop_reason = [], None
        for run_index, seed in enumerate(seeds):
            try:
                engine, _ = self._start_run(X, views, device, seed, run_index)
            except KeyboardInterrupt:
                # Interrupted before this run finished an epoch: keep the earlier runs.
                if not runs:
                    raise
                stop_reason = INTERRUPTED
                break
            runs.append(self._finish_run(engine, X, views))
            if runs[-1].stop_reason is not None:
                stop_reason = runs[-1].stop_reason
                break
        return runs, stop_reason

    def _combine_runs(
        self,
        runs: list[_Run],
        X: np.ndarray | torch.Tensor,
        views: NeighbourViews | AugmentedViews,
        stop_reason: str | None,
        random_state: np.random.RandomState,
    ) -> _Run:
        """The best-scored run or, when every run finished, the consensus of
        all of them (see ``combine_restarts``)."""
        best = max(runs, key=lambda run: run.score)
        images = isinstance(X, torch.Tensor)
        if not _builds_consensus(self.combine_restarts, len(runs), stop_reason, images):
            return best
        seed = int(random_state.randint(np.iinfo(np.int32).max))
        centers, variance, _ = fit_consensus([_softmax(run.logits) for run in runs], seed)
        network = RestartConsensus(
            [run.network[:-1] for run in runs],
            [run.best_head for run in runs],
            torch.from_numpy(centers),
            variance,
            reference=runs.index(best),
        ).to(_module_device(best.network))
        # From the runs' training logits: no second pass of every run over X.
        with torch.inference_mode():
            logits = network.combine(
                [torch.from_numpy(run.logits).to(network.centers.device) for run in runs]
            )
        logits = logits.cpu().numpy()
        score = _run_score(logits, best.z, views, self.n_neighbors)
        if self.combine_restarts == "best_or_consensus" and score < best.score:
            return best
        return replace(best, network=network, logits=logits, score=score)

    def _selected_run(
        self,
        X: np.ndarray | torch.Tensor,
        views: NeighbourViews | AugmentedViews,
        device: torch.device,
        seeds: list[int],
        until: int,
    ) -> tuple[_Run, str | None, list[float]]:
        """Train every seed for ``until`` epochs, then only the best-scoring one
        to the end: restarts for about the cost of one run plus the trials."""
        trials, scores, stopped = [], [], None
        for run_index, seed in enumerate(seeds):
            try:
                engine, paused = self._start_run(X, views, device, seed, run_index, until)
            except KeyboardInterrupt:
                if not trials:
                    raise
                stopped = INTERRUPTED
                break
            trials.append((engine, paused))
            scores.append(self._score_engine(engine, X, views))
            if engine.stop_reason is not None:
                stopped = engine.stop_reason
                break
        engine, paused = trials[int(np.argmax(scores))]
        if stopped is None:
            with self._forked_rng(device):
                engine.load_state_dict(paused)
                engine.fit()
        run = self._finish_run(engine, X, views)
        return run, run.stop_reason or stopped, scores

    @staticmethod
    def _forked_rng(device: torch.device):
        """A fork of torch's global generators: training draws from its own seed
        while the user's random state stays untouched."""
        return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])

    def _start_run(
        self,
        X: np.ndarray | torch.Tensor,
        views: NeighbourViews | AugmentedViews,
        device: torch.device,
        seed: int,
        run_index: int = 0,
        until: int | None = None,
    ) -> tuple[Engine, dict | None]:
        """A network trained from ``seed`` up to epoch ``until`` (the end when None),
        and, when paused, the state to resume it from."""
        with self._forked_rng(device):
            torch.manual_seed(seed)
            network = self._build_network(X).to(device)
            if device.type == "cuda" and isinstance(X, torch.Tensor):
                network = network.to(memory_format=torch.channels_last)
            engine = self._make_engine(network, X, views, device, seed)
            self._attach_checkpoint(engine, X, seed, run_index)
            engine.fit(until)
            # A paused run keeps its state, generators included, to resume exactly.
            paused = engine.state_dict() if until is not None else None
        return engine, paused

    def _score_engine(
        self, engine: Engine, X: np.ndarray | torch.Tensor, views: NeighbourViews | AugmentedViews
    ) -> float:
        """The label-free score of a run as it stands, read from its current best head."""
        head = SelectHead(_best_head(engine))
        logits, z = _forward(nn.Sequential(*engine.network, head), X)
        return _run_score(logits, z, views, self.n_neighbors)

    def _finish_run(
        self, engine: Engine, X: np.ndarray | torch.Tensor, views: NeighbourViews | AugmentedViews
    ) -> _Run:
        """What a trained run leaves: its network, history, labels and score;
        prediction then reads the best head alone."""
        network = engine.network
        best_head = _best_head(engine)
        network.append(SelectHead(best_head))
        logits, z = _forward(network, X)
        score = _run_score(logits, z, views, self.n_neighbors)
        history = pd.DataFrame(engine.logs)
        return _Run(
            network, best_head, history, logits, z, score, engine.stop_reason, engine.epochs
        )

    def _attach_checkpoint(
        self, engine: Engine, X: np.ndarray | torch.Tensor, seed: int, run_index: int
    ) -> None:
        """Resume ``engine`` from ``checkpoint_dir`` when a checkpoint exists,
        and have it save there as it trains."""
        if self.checkpoint_dir is None:
            return
        path = Path(self.checkpoint_dir) / f"run-{run_index}.pt"
        # What makes a run: the data, the seed, every parameter that changes training.
        ignored = {"verbose", "checkpoint_dir", "checkpoint_every", "device"}
        params = {k: repr(v) for k, v in self.get_params().items() if k not in ignored}
        # joblib hashes a torch tensor by its pickle, which differs between
        # equal tensors; the pixels' bytes do not.
        data = X.cpu().numpy() if isinstance(X, torch.Tensor) else X
        run = {"data_and_seed": joblib.hash((data, seed)), "params": params}
        if path.exists():
            payload = persistence.load(path, kind="checkpoint")
            if not _same_run(payload, run, _default_params(type(self))):
                raise CheckpointMismatchError(
                    f"{path} holds a run of other data or other parameters; point "
                    "checkpoint_dir at an empty folder, or delete the file to start afresh."
                )
            engine.load_state_dict(payload["state"])
        engine.callbacks.append(Checkpoint(path, self.checkpoint_every, metadata=run))

    def _warn_stopped(self, stop_reason: str | None, planned: int) -> None:
        if stop_reason is None:
            return
        if stop_reason == INTERRUPTED:
            message = (
                f"Training was interrupted after {self.n_iter_} of {planned} epochs. The "
                "estimator keeps the weights of the last completed epoch and can predict; "
                "fit again for the full run (with checkpoint_dir set it resumes)."
            )
        else:
            message = (
                f"The training loss became NaN or infinite in epoch {self.n_iter_ + 1}; the "
                f"weights of epoch {self.n_iter_} were kept. Likely causes: "
                f"learning_rate={self.learning_rate} too high, tau_c={self.tau_c} or "
                f"tau_z={self.tau_z} too low, or reduced precision "
                f"(mixed_precision={self.mixed_precision})."
            )
        warnings.warn(message, TrainingStoppedWarning, stacklevel=3)

    def _warn_collapse(self) -> None:
        """Warn when clusters are empty or one cluster took most samples."""
        if self.n_clusters < 2:
            return
        sizes = np.bincount(self.labels_, minlength=self.n_clusters)
        n_empty = int((sizes == 0).sum())
        largest = sizes.max() / sizes.sum()
        if n_empty == 0 and largest <= _dominant_share(self.n_clusters):
            return
        found = (
            f"{n_empty} of {self.n_clusters} clusters are empty"
            if n_empty
            else f"one cluster holds {largest:.0%} of the samples"
        )
        # Refined labels come from the frozen-feature stage, so its settings apply.
        image = hasattr(self, "image_shape_") and not self.refined_
        if self._equipartition(image) == "sinkhorn":
            # Training already split every batch equally: what drifted is the argmax.
            stronger = (
                f"tie predictions to the balanced training assignments (raise anchor_weight, "
                f"now {self._anchor_weight(image)})"
            )
        else:
            stronger = (
                f"strengthen the equal-size prior (raise entropy_weight, now "
                f"{self.entropy_weight}, or use equipartition='sinkhorn')"
            )
            if self.init != "kmeans":
                stronger += ", start from k-means' partition (init='kmeans')"
            if not self.relocate_empty_clusters:
                stronger += ", relocate_empty_clusters=True"
        warnings.warn(
            f"Cluster collapse: {found}. If the data has that many distinct groups, "
            f"{stronger}, lower learning_rate, or restart more (n_init); if the groups "
            "really are this unequal, ignore this warning or lower n_clusters.",
            CollapseWarning,
            stacklevel=3,
        )

    def _network_spec(self, image: bool = False) -> tuple[type[nn.Module], dict]:
        kwargs = dict(self.network_kwargs or {})
        if isinstance(self.network, str):
            kwargs.setdefault("n_heads", self.n_heads)
            if image:
                kwargs.setdefault("backbone", self.backbone)
                kwargs.setdefault("backbone_weights", self.backbone_weights)
                kwargs.setdefault("freeze_backbone", self.freeze_backbone)
                return ImageCDCNetwork, kwargs
            kwargs.setdefault("hidden_dim", self.hidden_dim)
            return VectorCDCNetwork, kwargs
        if not issubclass(self.network, nn.Module):
            raise TypeError(
                f"network must be 'auto' or a torch.nn.Module subclass, got {self.network!r}."
            )
        accepted = inspect.signature(self.network).parameters
        needed = {"n_clusters", "instance_dim"}
        needed |= {"in_channels", "image_size"} if image else {"in_features"}
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        if not takes_kwargs and not needed <= set(accepted):
            raise TypeError(
                f"network {self.network.__name__} must accept the keyword arguments "
                f"{sorted(needed)}; it is missing {sorted(needed - set(accepted))}."
            )
        return self.network, kwargs

    def _equipartition(self, image: bool) -> str:
        """``equipartition`` with "auto" resolved: Sinkhorn on images, entropy on features."""
        if self.equipartition == "auto":
            return "sinkhorn" if image else "entropy"
        return self.equipartition

    def _anchor_weight(self, image: bool) -> float:
        """``anchor_weight`` with "auto" resolved: 3 on images, 1 on features."""
        if self.anchor_weight == "auto":
            return 3.0 if image else 1.0
        return self.anchor_weight

    def _criterion(self, image: bool) -> CDCLoss:
        return CDCLoss(
            tau_c=self.tau_c,
            tau_z=self.tau_z,
            equipartition=self._equipartition(image),
            sinkhorn_epsilon=self.sinkhorn_epsilon,
            sinkhorn_iterations=self.sinkhorn_iterations,
            entropy_weight=self.entropy_weight,
            negative_weighting=self.negative_weighting,
            anchor_weight=self._anchor_weight(image),
        )

    def _phases(
        self,
        X: np.ndarray | torch.Tensor,
        views: NeighbourViews | AugmentedViews,
        seed: int,
        device: torch.device,
    ) -> list[Phase]:
        """The losses trained in turn: warm start, CDC, self-labelling."""
        phases = []
        if self.init == "kmeans":
            # Start the categorical head from k-means' partition of the input:
            # CDC then refines a stable solution instead of settling in
            # whichever local optimum a random head falls into.
            targets = _kmeans_targets(X, self.n_clusters, self.metric, seed, device)
            phases.append(Phase("init", PseudoLabelLoss(targets), self.init_epochs))
        image = isinstance(X, torch.Tensor)
        phases.append(Phase("cdc", self._criterion(image), self._epochs(X)))
        self_labelling_epochs = self._self_labelling_epochs(X)
        if self_labelling_epochs > 0:
            # A confident prediction becomes the target of the same sample's
            # other view, never of a neighbour's: a neighbour of another class
            # would learn the wrong label (on the refinement stage's Fashion-MNIST
            # features, neighbour targets cost up to 12 points; own ones gained
            # 0.2 to 3.3).
            phases.append(
                Phase(
                    "self-labelling",
                    SelfLabelLoss(self.self_labelling_threshold),
                    self_labelling_epochs,
                    views=views.of_itself(),
                )
            )
        return phases

    def _make_engine(
        self,
        network: nn.Module,
        X: np.ndarray | torch.Tensor,
        views: NeighbourViews | AugmentedViews,
        device: torch.device,
        seed: int,
    ) -> Engine:
        n_samples = X.shape[0]
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        sampler_generator = torch.Generator().manual_seed(seed)
        view_generator = torch.Generator(device=device).manual_seed(seed + 1)
        callbacks: list = []
        if self.relocate_empty_clusters:
            callbacks.append(EmptyClusterRelocation())
        if self.verbose:
            callbacks.append(ProgressBar(desc="CDCClustering"))
        return Engine(
            network,
            self._phases(X, views, seed, device),
            views,
            optimizer,
            sampler=RandomSampler(range(n_samples), generator=sampler_generator),
            batch_size=self._batch_size(n_samples),
            device=device,
            generator=view_generator,
            n_clusters=self.n_clusters,
            mixed_precision=_use_bfloat16(
                self.mixed_precision, device, images=isinstance(X, torch.Tensor)
            ),
            callbacks=callbacks,
            schedule=SCHEDULES[self.learning_rate_schedule],
        )

    # ------------------------------------------------------------ inference

    def _validated_forward(self, X: Any) -> tuple[np.ndarray, np.ndarray, Any]:
        """Logits, instance vectors and the validated X itself."""
        check_is_fitted(self)
        if hasattr(self, "image_shape_"):
            if not self._image_mode(X) and getattr(X, "ndim", None) == 2:
                raise ValueError(
                    f"This CDCClustering was fitted on images of shape {self.image_shape_} "
                    "(C, H, W); pass images, not a 2-D table."
                )
            X = load_images(X, layout=self.image_layout, num_workers=self.num_workers)
            if tuple(X.shape[1:]) != self.image_shape_:
                raise ValueError(
                    f"Images have shape {tuple(X.shape[1:])} (C, H, W) but CDCClustering was "
                    f"fitted on {self.image_shape_}; resize them to the training size."
                )
        else:
            X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
            _check_float32_range(X)
        logits, z = _forward(self.network_, X)
        return logits, z, X

    def predict(self, X: Any) -> np.ndarray:
        """Cluster of each sample: the argmax of its categorical logits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        logits, _, _ = self._validated_forward(X)
        return logits.argmax(axis=1)

    def fit_predict(self, X: Any, y: None = None) -> np.ndarray:
        """Fit on X and return the training labels (``labels_``)."""
        return self.fit(X).labels_

    def predict_proba(self, X: Any) -> np.ndarray:
        """Cluster probabilities, ``softmax`` of the categorical logits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_clusters)
            Rows sum to 1.
        """
        logits, _, X = self._validated_forward(X)
        return _softmax(logits).astype(_output_dtype(X), copy=False)

    def transform(self, X: Any) -> np.ndarray:
        """The disentangled representation of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_clusters + instance_dim)
            Columns ``0 .. n_clusters - 1`` are the categorical part (the
            cluster probabilities, as :meth:`predict_proba`); the remaining
            ``instance_dim`` columns are the L2-normalised instance part.
            ``get_feature_names_out`` names them ``categorical<k>`` and
            ``instance<j>``.
        """
        logits, z, X = self._validated_forward(X)
        return np.hstack([_softmax(logits), z]).astype(_output_dtype(X), copy=False)

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
        names += [f"instance{j}" for j in range(self.instance_embedding_.shape[1])]
        return np.asarray(names, dtype=object)

    def score(self, X: Any, y: None = None) -> float:
        """Label-free score: neighbour agreement of the predicted clusters.

        The mutual information (nats) between the cluster of each sample of X
        and the clusters of its ``n_neighbors`` nearest neighbours in X. It is
        0 when every sample is in one cluster or when the clusters ignore the
        neighbourhood structure, and at most ``log(n_clusters)``, reached by
        balanced clusters that no neighbour crosses. Higher is better, so
        ``GridSearchCV(CDCClustering(), params)`` can tune without labels;
        compare it between settings with the same ``n_clusters``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        logits, z, X = self._validated_forward(X)
        if isinstance(X, torch.Tensor):
            neighbors = _embedding_neighbors(z, self.n_neighbors)
        else:
            n_neighbors = min(self.n_neighbors, X.shape[0] - 1)
            if n_neighbors < 1:
                return 0.0
            data = torch.tensor(np.ascontiguousarray(X), dtype=torch.float32)
            neighbors = knn_indices(data, data, n_neighbors, metric=self.metric, exclude_self=True)
            neighbors = neighbors.numpy()
        if neighbors.shape[1] < 1:
            return 0.0
        return _neighbour_agreement(logits.argmax(axis=1), neighbors)

    # -------------------------------------------------------------- plumbing

    def __getstate__(self) -> dict:
        # Pickle the network on the CPU so that a model fitted on a GPU loads on
        # a machine without one.
        state = super().__getstate__()
        if "network_" in state:
            state["network_"] = copy.deepcopy(state["network_"]).cpu()
        state["_skcdc_version"] = _version()
        return state

    def __setstate__(self, state: dict) -> None:
        # Pickled before combine_restarts existed: the model holds its best run.
        state.setdefault("combine_restarts", "best")
        # Pickled before consensus_ existed: the network itself says.
        if "network_" in state and "consensus_" not in state:
            state["consensus_"] = isinstance(state["network_"], RestartConsensus)
        saved = state.pop("_skcdc_version", None)
        if saved is not None and saved != _version():
            warnings.warn(
                f"This CDCClustering was pickled by skcdc {saved} and is loaded by skcdc "
                f"{_version()}; predictions may differ or fail. Refit it, or install "
                f"skcdc=={saved}.",
                UserWarning,
                stacklevel=2,
            )
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _builds_consensus(
    combine_restarts: str, n_runs: int, stop_reason: str | None, images: bool
) -> bool:
    """Whether a fit combines its runs into a consensus (kept, with
    ``"best_or_consensus"``, only when it scores at least the best run's)."""
    return combine_restarts != "best" and n_runs > 1 and stop_reason is None and not images


def _best_head(engine: Engine) -> int:
    """Of several categorical heads, the one with the lowest loss in the last
    epoch, as SCAN keeps it."""
    return int(np.argmin(engine.head_losses))


def _run_score(
    logits: np.ndarray, z: np.ndarray, views: NeighbourViews | AugmentedViews, n_neighbors: int
) -> float:
    """The label-free score of training predictions: agreement with the input's
    neighbour graph (features) or with neighbours in the instance space (images)."""
    neighbors = (
        views.neighbors.cpu().numpy()
        if isinstance(views, NeighbourViews)
        else _embedding_neighbors(z, n_neighbors)
    )
    return _neighbour_agreement(logits.argmax(axis=1), neighbors)


@dataclass
class _Run:
    """What one training from one seed leaves behind."""

    network: nn.Module
    best_head: int
    history: pd.DataFrame
    logits: np.ndarray
    z: np.ndarray
    score: float
    stop_reason: str | None
    planned_epochs: int


def _version() -> str:
    from . import __version__

    return __version__


def _dominant_share(n_clusters: int) -> float:
    """Share of the samples above which one cluster counts as having collapsed
    the others: a majority, but 90% for two clusters, where 60/40 is normal."""
    return 0.9 if n_clusters == 2 else 0.5


def _forward(network: nn.Module, X: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Logits and instance vectors of validated X (a table or images), in evaluation mode."""
    outputs = _map_blocks(network, X)
    return np.concatenate([l for l, _ in outputs]), np.concatenate([z for _, z in outputs])


def _map_blocks(module: nn.Module, X: np.ndarray | torch.Tensor) -> list[Any]:
    """``module``'s outputs on validated X, block by block, in evaluation mode,
    as float32 numpy arrays (a tensor, or a tuple of them, per block)."""
    device = _module_device(module)
    step = _PREDICT_BATCH_IMAGES if isinstance(X, torch.Tensor) else _PREDICT_BATCH
    outputs = []
    module.eval()
    with torch.inference_mode():
        for start in range(0, X.shape[0], step):
            if isinstance(X, torch.Tensor):
                block = to_float_images(X[start : start + step].to(device))
            else:
                block = np.ascontiguousarray(X[start : start + step])
                block = torch.tensor(block, dtype=torch.float32, device=device)
            out = module(block)
            # Off the device block by block: the device holds one block's outputs.
            if isinstance(out, tuple):
                outputs.append(tuple(t.float().cpu().numpy() for t in out))
            else:
                outputs.append(out.float().cpu().numpy())
    return outputs


def _backbone_encoder(network: nn.Sequential) -> nn.Sequential:
    """Image mode's input normalisation and backbone, without the heads."""
    return nn.Sequential(network[0], BackboneFeatures(network[1].backbone))


def _refinement_phase(phase: str) -> str:
    """The refinement stage's phases in the history: ``"refine"`` for its CDC phase."""
    return "refine" if phase == "cdc" else f"refine-{phase}"


def _check_float32_range(X: np.ndarray) -> None:
    """The network computes in float32: refuse values that would become infinite."""
    largest = float(np.abs(X).max()) if X.size else 0.0
    limit = float(np.finfo(np.float32).max)
    if largest > limit:
        raise ValueError(
            f"X has values up to {largest:.3g}, beyond the float32 range ({limit:.3g}) the "
            "network computes in; rescale it first, e.g. with sklearn's StandardScaler."
        )


def _default_params(cls: type) -> dict[str, str]:
    """The ``repr`` of each parameter's default value."""
    signature = inspect.signature(cls.__init__).parameters.values()
    return {p.name: repr(p.default) for p in signature if p.default is not p.empty}


def _same_run(saved: dict, run: dict, defaults: dict[str, str]) -> bool:
    """Whether a checkpoint holds this run: the same data and seed and the same
    parameters, where a parameter the checkpoint predates must be at its
    default (it did not exist, so the saved run trained as its default does).
    Checkpoints written before this rule hold only a hash and never match."""
    old = saved.get("params")
    if saved.get("data_and_seed") != run["data_and_seed"] or old is None:
        return False
    new = run["params"]
    return set(old) <= set(new) and all(old.get(k, defaults.get(k)) == v for k, v in new.items())


def _embedding_neighbors(z: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Nearest neighbours among L2-normalised instance vectors (image mode's graph)."""
    n_neighbors = min(n_neighbors, z.shape[0] - 1)
    data = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
    return knn_indices(data, data, n_neighbors, exclude_self=True).numpy()


def _flat(X: np.ndarray | torch.Tensor) -> np.ndarray:
    """Samples as rows: images flattened to float32 pixels in [0, 1]."""
    if isinstance(X, torch.Tensor):
        return to_float_images(X).flatten(1).numpy()
    return X


def _output_dtype(X: np.ndarray | torch.Tensor) -> np.dtype:
    return np.dtype(np.float32) if isinstance(X, torch.Tensor) else X.dtype


def _neighbour_agreement(labels: np.ndarray, neighbors: np.ndarray) -> float:
    """Mutual information between each sample's cluster and its neighbours'."""
    n_neighbors = neighbors.shape[1]
    return float(mutual_info_score(np.repeat(labels, n_neighbors), labels[neighbors.ravel()]))


def _use_bfloat16(requested: bool, device: torch.device, images: bool) -> bool:
    """Whether a fit autocasts to bfloat16, where the device supports it
    natively (the engine checks that). On the CPU only vectors do: on digits'
    8x8 images, end-to-end training in bfloat16 lost 4 ACC points over three
    seeds and saved a fifth of the fit time (docs/method.md)."""
    return requested and (device.type == "cuda" or not images)


def _resolve_device(device: str | torch.device) -> torch.device:
    """The torch device to train on, with a clear error when it is unusable."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'."
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this machine; "
            "use device='auto' or device='cpu'."
        )
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'.")
    return resolved


def _kmeans_targets(
    X: np.ndarray, n_clusters: int, metric: str, seed: int, device: torch.device
) -> torch.Tensor:
    """k-means labels of X under the neighbour metric, as warm-start targets."""
    X = _flat(X)
    data = normalize(X) if metric == "cosine" else X
    labels = KMeans(n_clusters, n_init=3, random_state=seed).fit_predict(data)
    return torch.as_tensor(labels, dtype=torch.long, device=device)


def _module_device(module: nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _cluster_centers(X: np.ndarray, labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per-cluster means in input space; an empty cluster gets its soft mean,
    or the mean of all samples when no sample gives it any probability."""
    n_clusters = proba.shape[1]
    one_hot = np.eye(n_clusters)[labels]
    sizes = one_hot.sum(axis=0)
    weights = np.where(sizes > 0, one_hot, proba)
    weights[:, weights.sum(axis=0) <= 0] = 1.0
    return (weights.T @ X) / weights.sum(axis=0)[:, None]
