"""Warnings about a fit's result: collapsed clusters."""

import warnings

import pytest
import torch
from torch import nn

from skcdc import CDCClustering
from skcdc.exceptions import CollapseWarning
from skcdc.networks import VectorCDCNetwork

FAST = {"epochs": 10, "batch_size": 64, "n_init": 1, "self_labelling_epochs": 0, "random_state": 0}


class ConstantNetwork(nn.Module):
    """Puts every sample in cluster 0 whatever it learns: a forced collapse."""

    def __init__(self, in_features, n_clusters, instance_dim=128):
        super().__init__()
        self.inner = VectorCDCNetwork(in_features, n_clusters, instance_dim, hidden_dim=32)
        self.register_buffer("bias", torch.zeros(n_clusters))
        self.bias[0] = 1e4

    def forward(self, x):
        logits, z = self.inner(x)
        return logits + self.bias, z


@pytest.mark.parametrize(
    "equipartition, advice",
    [("entropy", "entropy_weight"), ("sinkhorn", "train longer")],
)
def test_collapse_is_reported_in_history_and_warned(blobs, equipartition, advice):
    X, _ = blobs
    # Without the floor, which would replace the collapsed partition by k-means'.
    with pytest.warns(CollapseWarning, match=f"2 of 3 clusters are empty.*{advice}"):
        model = CDCClustering(
            3, network=ConstantNetwork, equipartition=equipartition, kmeans_floor=False,
            **{**FAST, "epochs": 2},
        ).fit(X)
    assert (model.history_["n_empty_clusters"] == 2).all()
    assert (model.history_["largest_cluster"] == 1.0).all()


def test_no_collapse_warning_on_a_good_fit(blobs):
    X, _ = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CDCClustering(3, **FAST).fit(X)
