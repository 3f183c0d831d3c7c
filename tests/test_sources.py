"""Vector input that is streamed, not held in memory: memmaps, .npy paths,
datasets of vectors, each through the public estimator."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from skcdc import CDCClustering
from skcdc.sources import DatasetRows, float32_tensor, is_streamed, open_vectors

FAST = {"n_init": 1, "epochs": 3, "self_labelling_epochs": 1, "random_state": 0, "batch_size": 64}


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(400, n_features=6, centers=3, random_state=0)
    return X.astype(np.float32), y


@pytest.fixture
def npy(blobs, tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, blobs[0])
    return path


def _dataset(X, pairs=True):
    tensors = torch.from_numpy(X)
    return torch.utils.data.TensorDataset(tensors, torch.zeros(len(X))) if pairs else list(tensors)


def test_each_streamed_kind_is_opened_without_a_copy(blobs, npy):
    memmap = np.load(npy, mmap_mode="r")
    assert open_vectors(memmap) is memmap
    opened = open_vectors(str(npy))
    assert isinstance(opened, np.memmap) and not opened.flags.writeable
    assert isinstance(open_vectors(_dataset(blobs[0])), DatasetRows)
    assert not is_streamed(blobs[0])


def test_dataset_rows_read_slices_and_index_arrays(blobs):
    rows = DatasetRows(_dataset(blobs[0]))
    assert rows.shape == (400, 6)
    np.testing.assert_array_equal(rows[10:13], blobs[0][10:13])
    np.testing.assert_array_equal(rows[np.array([5, 1])], blobs[0][[5, 1]])


@pytest.mark.parametrize("kind", ["memmap", "path", "dataset"])
def test_a_streamed_fit_gives_the_labels_of_the_in_memory_fit(blobs, npy, kind):
    X = blobs[0]
    streamed = {
        "memmap": lambda: np.load(npy, mmap_mode="r"),
        "path": lambda: str(npy),
        "dataset": lambda: _dataset(X),
    }[kind]()
    in_memory = CDCClustering(3, **FAST).fit(X)
    model = CDCClustering(3, **FAST).fit(streamed)
    # The same neighbours, batches and steps; the input scaling is computed
    # in float64 sums rather than float32, so allow a stray label.
    assert (model.labels_ == in_memory.labels_).mean() > 0.99
    assert model.labels_.dtype == np.int32 and model.n_features_in_ == 6
    np.testing.assert_allclose(model.cluster_centers_, in_memory.cluster_centers_, atol=1e-3)
    assert (model.predict(streamed) == model.labels_).all()
    assert model.transform(streamed).shape == (400, 3 + 128)
    assert model.score(streamed) == pytest.approx(model.score(X))
    assert model.neighbour_search_.method == "exact"


def test_streamed_input_is_checked_before_training(blobs, tmp_path):
    bad = blobs[0].copy()
    bad[7, 2] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match="NaN"):
        CDCClustering(3, **FAST).fit(tmp_path / "bad.npy")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CDCClustering(3, **FAST).fit(str(tmp_path / "missing.npy"))
    model = CDCClustering(3, **FAST).fit(blobs[0])
    np.save(tmp_path / "narrow.npy", blobs[0][:, :4])
    with pytest.raises(ValueError, match="4 features"):
        model.predict(tmp_path / "narrow.npy")


@pytest.mark.filterwarnings("error")
def test_a_read_only_array_is_read_without_a_warning_or_a_copy(blobs):
    X = blobs[0].copy()
    X.setflags(write=False)
    tensor = float32_tensor(X)
    assert tensor.data_ptr() == X.ctypes.data
    model = CDCClustering(3, **FAST).fit(X)
    np.testing.assert_array_equal(model.predict(X), model.labels_)
