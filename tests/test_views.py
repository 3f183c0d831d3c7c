import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from skcdc import CDCClustering
from skcdc.views import NeighbourViews


@pytest.fixture(scope="module")
def points():
    return torch.as_tensor(np.random.RandomState(0).normal(size=(300, 4)), dtype=torch.float32)


def _pairs(views, draws=200):
    """Every (sample, positive) pair seen in ``draws`` passes over the data."""
    generator = torch.Generator().manual_seed(0)
    index = torch.arange(views.data.shape[0])
    seen = set()
    for _ in range(draws):
        _, positive = views(index, generator)
        # Rows are distinct points, so a positive names its row by equality.
        match = (positive[:, None, :] == views.data[None, :, :]).all(dim=2)
        seen.update(zip(index.tolist(), match.float().argmax(dim=1).tolist()))
    return seen


def test_mutual_positives_are_the_mutual_neighbours_or_the_nearest(points):
    plain = NeighbourViews(points, 5)
    views = NeighbourViews(points, 5, mutual=True)
    graph = [set(row) for row in plain.neighbors.tolist()]
    mutual = {(i, j) for i, row in enumerate(graph) for j in row if i in graph[j]}
    lonely = {i for i in range(len(graph)) if not any(pair[0] == i for pair in mutual)}
    nearest = {(i, plain.neighbors[i, 0].item()) for i in lonely}

    assert torch.equal(views.neighbors, plain.neighbors)  # the score's graph is the whole one
    assert mutual and lonely  # both cases occur on this data
    assert _pairs(views) == mutual | nearest
    assert _pairs(plain) == {(i, j) for i, row in enumerate(graph) for j in row}


def test_mutual_views_of_itself_pair_each_sample_with_itself(points):
    views = NeighbourViews(points, 5, mutual=True).of_itself()
    assert _pairs(views, draws=2) == {(i, i) for i in range(points.shape[0])}


def test_mutual_neighbours_cluster_blobs(blobs):
    X, y = blobs
    model = CDCClustering(3, mutual_neighbors=True, epochs=15, batch_size=64, n_init=1)
    labels = model.set_params(random_state=0).fit_predict(X)
    assert adjusted_rand_score(y, labels) > 0.95
    assert np.array_equal(labels, model.fit_predict(X))
