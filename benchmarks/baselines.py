"""Baselines of the benchmark suite, each fitted on exactly the CDC input.

The SCAN-style head is written here, small, and is a *baseline*, not part of
skcdc: the same MLP as CDCClustering's default network, trained on the same
nearest-neighbour pairs with SCAN's loss (consistency of the two members'
cluster probabilities, minus 5 times the entropy of the mean assignment), for
50 epochs, as long as or longer than one run of CDCClustering's default.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.mixture import GaussianMixture

from skcdc.loss import marginal_entropy
from skcdc.networks import InputScaler, VectorCDCNetwork
from skcdc.views import NeighbourViews


class SCANHead(ClusterMixin, BaseEstimator):
    """SCAN's clustering step (Van Gansbeke et al., ECCV 2020) on fixed features."""

    def __init__(
        self,
        n_clusters=8,
        *,
        n_neighbors=10,
        entropy_weight=5.0,
        epochs=50,
        batch_size=256,
        learning_rate=1e-3,
        random_state=0,
    ):
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.entropy_weight = entropy_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state

    def fit(self, X, y=None):
        with torch.random.fork_rng():
            torch.manual_seed(self.random_state)
            data = torch.tensor(X, dtype=torch.float32)
            net = torch.nn.Sequential(
                InputScaler.from_data(data), VectorCDCNetwork(X.shape[1], self.n_clusters, 8)
            )
            views = NeighbourViews(data, self.n_neighbors)
            generator = torch.Generator().manual_seed(self.random_state)
            optimizer = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
            batch = min(self.batch_size, len(X))
            for _ in range(self.epochs):
                order = torch.randperm(len(X), generator=generator)
                for start in range(0, len(X) - batch + 1, batch):
                    a, b = views(order[start : start + batch], generator)
                    p_a = net(a)[0].softmax(1)
                    p_b = net(b)[0].softmax(1)
                    consistency = -torch.log((p_a * p_b).sum(1).clamp_min(1e-8)).mean()
                    loss = consistency - self.entropy_weight * marginal_entropy(p_a)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            net.eval()
            with torch.inference_mode():
                self.labels_ = net(data)[0].argmax(1).numpy()
        return self


def _gmm(n_clusters: int, seed: int, n_features: int):
    # Full covariances in 1280 dimensions are 16M parameters per fit and
    # singular on 10000 samples; diagonal ones are what a user would try.
    covariance = "full" if n_features <= 64 else "diag"
    return GaussianMixture(n_clusters, covariance_type=covariance, random_state=seed)


BASELINES = {
    "KMeans(n_init=10)": lambda k, seed, d: KMeans(k, n_init=10, random_state=seed),
    "GaussianMixture": _gmm,
    "Spectral (kNN graph)": lambda k, seed, d: SpectralClustering(
        k, affinity="nearest_neighbors", n_neighbors=10, random_state=seed, n_jobs=1
    ),
    "SCAN-style head (baseline)": lambda k, seed, d: SCANHead(k, random_state=seed),
}


def clustpy_baselines() -> dict:
    """ClustPy's DEC and IDEC when the package is installed, else nothing."""
    try:
        from clustpy.deep import DEC, IDEC
    except ImportError:
        return {}
    return {
        "ClustPy DEC": lambda k, seed, d: DEC(k, random_state=np.random.RandomState(seed)),
        "ClustPy IDEC": lambda k, seed, d: IDEC(k, random_state=np.random.RandomState(seed)),
    }
