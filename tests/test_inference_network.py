"""Inference copies: folded batch normalisation and one head predict as the
trained network does."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris, load_wine
from torch import nn

from skcdc import CDCClustering
from skcdc._inference import forward, softmax
from skcdc._inference_network import LogitsOnly, inference_network
from skcdc.networks import ImageCDCNetwork, InputScaler, SelectHead, VectorCDCNetwork

SHORT = {"epochs": 5, "self_labelling_epochs": 2, "batch_size": 64, "random_state": 0}


def _assert_predicts_as_trained(model, X):
    logits, z = forward(model.network_, X)
    np.testing.assert_array_equal(model.predict(X), logits.argmax(1))
    np.testing.assert_allclose(model.predict_proba(X), softmax(logits), atol=1e-5)
    np.testing.assert_allclose(model.transform(X)[:, model.n_clusters :], z, atol=1e-5)


@pytest.mark.parametrize(
    ("load", "params"),
    [
        # Suite sets, each with another structure of network_: restarts and
        # their consensus, a kept k-means partition, several heads.
        (load_digits, {"n_init": 2}),
        (load_iris, {"n_init": 1}),
        (load_wine, {"n_init": 1, "network_params": {"n_heads": 3}}),
    ],
)
def test_folded_copies_label_the_suite_sets_as_the_trained_network(load, params):
    X, y = load(return_X_y=True)
    model = CDCClustering(len(np.unique(y)), **SHORT, **params).fit(X)
    _assert_predicts_as_trained(model, X)


def test_the_kept_kmeans_partition_labels_from_the_input_alone(monkeypatch):
    from skcdc.training import floor

    # k-means' partition is kept whatever the scores.
    monkeypatch.setattr(floor, "Z_MARGIN", np.inf)
    X, _ = load_iris(return_X_y=True)
    model = CDCClustering(3, n_init=1, kmeans_floor=True, **SHORT).fit(X)
    assert model.kmeans_floor_
    _assert_predicts_as_trained(model, X)

    # No part of the trained network runs for a label.
    def fail(*args):
        raise AssertionError("the network ran")

    monkeypatch.setattr(model.network_.network, "forward", fail)
    assert (model.predict(X) == model.labels_).all()


def test_batch_norm_and_input_scaling_are_folded_away():
    torch.manual_seed(0)
    X = torch.randn(300, 6) * 4 + 2
    network = nn.Sequential(InputScaler.from_data(X), VectorCDCNetwork(6, 4, n_heads=2))
    # Running statistics far from the initial ones, as after training.
    network.train()
    with torch.no_grad():
        for _ in range(20):
            network(X * 3 + 1)
    network.append(SelectHead(1)).eval()
    copy = inference_network(network)
    kinds = {type(m) for m in copy.modules()}
    assert not kinds & {nn.BatchNorm1d, InputScaler}
    with torch.no_grad():
        logits, _ = network(X)
        torch.testing.assert_close(copy(X), logits, atol=1e-5, rtol=1e-5)
    # The trained network is left as it was.
    assert any(isinstance(m, nn.BatchNorm1d) for m in network.modules())


def test_convolutions_fold_their_batch_norm():
    torch.manual_seed(0)
    network = ImageCDCNetwork(1, (12, 12), 5).train()
    images = torch.rand(64, 1, 12, 12)
    with torch.no_grad():
        for _ in range(5):
            network(images)
    network = nn.Sequential(network, SelectHead(0)).eval()
    copy = inference_network(network, with_instance=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copy.modules())
    with torch.no_grad():
        (logits, z), (copy_logits, copy_z) = network(images), copy(images)
    torch.testing.assert_close(copy_logits, logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(copy_z, z, atol=1e-5, rtol=1e-4)


def test_a_network_of_unknown_structure_runs_as_it_is():
    network = VectorCDCNetwork(4, 3).eval()
    copy = inference_network(network)
    assert isinstance(copy, LogitsOnly) and copy.network is network
    assert inference_network(network, with_instance=True) is network


def test_copies_are_not_pickled_and_are_made_again(fitted, blobs):
    X, _ = blobs
    state = fitted.__getstate__()
    assert "_inference_copies" not in state
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    np.testing.assert_allclose(loaded.transform(X), fitted.transform(X), atol=1e-6)
