"""The neighbour search: exact in bounded blocks, approximate by HNSW, reported."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from skcdc import neighbours
from skcdc.neighbours import knn_indices, neighbour_search
from skcdc.sources import DatasetRows


@pytest.fixture(scope="module")
def points():
    return np.random.RandomState(0).normal(size=(300, 4)).astype(np.float32)


def _expected(points, k, metric="euclidean"):
    reference = NearestNeighbors(n_neighbors=k + 1, metric=metric).fit(points)
    return reference.kneighbors(points, return_distance=False)[:, 1:]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_the_search_is_exact_with_both_sides_in_blocks(points, metric):
    # Blocks that divide neither side evenly, and a reference block smaller
    # than k: the running top-k across blocks must still be exact.
    found = knn_indices(
        points, points, 6, metric=metric, exclude_self=True, query_block=64, reference_block=5
    )
    np.testing.assert_array_equal(found.numpy(), _expected(points, 6, metric))


class _CountingRows:
    """An array-like that records the largest block read from it."""

    def __init__(self, data):
        self.data, self.shape, self.largest = data, data.shape, 0

    def __getitem__(self, key):
        block = self.data[key]
        self.largest = max(self.largest, len(block))
        return block


def test_the_search_reads_a_bounded_block_of_a_streamed_input(points, tmp_path):
    np.save(tmp_path / "p.npy", points)
    rows = _CountingRows(np.load(tmp_path / "p.npy", mmap_mode="r"))
    found = knn_indices(rows, rows, 4, exclude_self=True, query_block=50, reference_block=80)
    assert rows.largest == 80
    np.testing.assert_array_equal(found.numpy(), _expected(points, 4))


def test_a_vector_dataset_searches_like_its_array(points):
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(points), torch.zeros(300))
    found = knn_indices(DatasetRows(dataset), DatasetRows(dataset), 3, exclude_self=True)
    np.testing.assert_array_equal(found.numpy(), _expected(points, 3))


def test_the_exact_search_reports_itself(points):
    found, report = neighbour_search(points, 5, device=torch.device("cpu"))
    assert report.method == "exact" and report.recall == 1.0 and report.seconds >= 0
    np.testing.assert_array_equal(found.numpy(), _expected(points, 5))


def test_hnsw_reports_its_recall_measured_against_the_exact_search():
    pytest.importorskip("faiss")
    X = np.random.RandomState(1).normal(size=(3000, 16)).astype(np.float32)
    found, report = neighbour_search(X, 10, device=torch.device("cpu"), method="hnsw")
    assert report.method == "hnsw" and report.recall_sample == 1000
    exact = _expected(X, 10)
    recall = np.mean([np.intersect1d(a, b).size / 10 for a, b in zip(found.numpy(), exact)])
    assert report.recall == pytest.approx(recall, abs=0.05)
    assert recall > 0.9
    # A row is never its own neighbour.
    assert not (found.numpy() == np.arange(3000)[:, None]).any()


def test_auto_is_exact_on_small_data_and_warns_without_faiss_on_large(monkeypatch):
    assert neighbours._auto_method(1000, torch.device("cpu")) == "exact"
    assert neighbours._auto_method(10**7, torch.device("cuda")) == "exact"

    def missing():
        raise ImportError

    monkeypatch.setattr(neighbours, "_faiss", missing)
    with pytest.warns(UserWarning, match="faiss"):
        assert neighbours._auto_method(10**6, torch.device("cpu")) == "exact"
