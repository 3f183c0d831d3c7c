import numpy as np
import pytest
from sklearn.datasets import make_blobs


@pytest.fixture(scope="session")
def blobs():
    """Three well separated clusters in 8 dimensions."""
    X, y = make_blobs(n_samples=240, centers=3, n_features=8, cluster_std=1.0, random_state=0)
    return X.astype(np.float64), y


@pytest.fixture(scope="session")
def fitted(blobs):
    from skcdc import CDCClustering

    X, _ = blobs
    return CDCClustering(n_clusters=3, epochs=15, batch_size=64, n_init=1, random_state=0).fit(X)
