"""Models saved in skcdc's own format and loaded without running code."""

import numpy as np
import pytest

from skcdc import CDCClustering, persistence
from skcdc.networks import VectorCDCNetwork

FAST = {"epochs": 10, "batch_size": 64, "n_init": 1, "self_labelling_epochs": 0, "random_state": 0}


def test_save_load_round_trip(blobs, fitted, tmp_path):
    X, _ = blobs
    persistence.save_model(fitted, tmp_path / "model.skcdc")
    loaded = persistence.load_model(tmp_path / "model.skcdc")
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    np.testing.assert_allclose(loaded.transform(X), fitted.transform(X), atol=1e-6)
    assert loaded.get_params() == fitted.get_params()
    for name in ("labels_", "run_scores_", "cluster_centers_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(fitted, name))
    assert loaded.n_iter_ == fitted.n_iter_ and loaded.consensus_ == fitted.consensus_


def test_save_model_refuses_a_network_given_as_code(blobs, tmp_path):
    X, _ = blobs
    model = CDCClustering(3, network=VectorCDCNetwork, **{**FAST, "epochs": 1}).fit(X)
    with pytest.raises(TypeError, match=r"network=.*is code\. Use joblib\.dump"):
        persistence.save_model(model, tmp_path / "model.skcdc")
    assert not (tmp_path / "model.skcdc").exists()


def test_a_fit_too_large_to_keep_its_outputs_keeps_labels_and_saves(tmp_path, monkeypatch):
    # Large-K state: above the size rule the training outputs are not kept;
    # labels, centres, transform and the model file still work.
    from sklearn.datasets import make_blobs

    from skcdc import _plan

    monkeypatch.setattr(_plan, "KEEP_OUTPUTS_MAX_VALUES", 1000)
    X, _ = make_blobs(300, n_features=5, centers=4, random_state=0)
    model = CDCClustering(4, n_init=2, epochs=3, self_labelling_epochs=1, random_state=0).fit(X)
    assert model.categorical_embedding_ is None and model.instance_embedding_ is None
    assert not model.consensus_  # the consensus reads the outputs it could not keep
    assert model.labels_.dtype == np.int32 and (model.predict(X) == model.labels_).all()
    assert model.transform(X).shape == (300, 4 + 128)
    assert model.get_feature_names_out().shape == (132,)
    persistence.save_model(model, tmp_path / "m.skcdc")
    loaded = persistence.load_model(tmp_path / "m.skcdc")
    assert loaded.categorical_embedding_ is None
    assert loaded.neighbour_search_ == model.neighbour_search_
    np.testing.assert_array_equal(loaded.predict(X), model.labels_)
