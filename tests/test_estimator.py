"""Behaviour of CDCClustering on vector input (frozen-feature mode)."""

import pickle
import subprocess
import sys
import textwrap
import warnings
from typing import ClassVar

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from skcdc import CDCClustering
from skcdc.exceptions import DivergenceError
from skcdc.metrics import accuracy_scorer

FAST = {"epochs": 10, "batch_size": 64, "n_init": 1, "random_state": 0}


def test_has_the_parameters_a_user_sets_and_no_more():
    assert len(CDCClustering().get_params()) <= 27


def test_recovers_separated_clusters(blobs, fitted):
    _, y = blobs
    assert adjusted_rand_score(y, fitted.labels_) > 0.95


def test_fitted_attributes(blobs, fitted):
    X, _ = blobs
    n, k, d = X.shape[0], 3, 128
    assert fitted.labels_.shape == (n,)
    assert fitted.categorical_embedding_.shape == (n, k)
    np.testing.assert_allclose(fitted.categorical_embedding_.sum(1), 1, rtol=1e-5)
    assert fitted.instance_embedding_.shape == (n, d)
    np.testing.assert_allclose(np.linalg.norm(fitted.instance_embedding_, axis=1), 1, rtol=1e-4)
    assert fitted.cluster_centers_.shape == (k, X.shape[1])
    for label in range(k):
        np.testing.assert_allclose(
            fitted.cluster_centers_[label], X[fitted.labels_ == label].mean(0), rtol=1e-6
        )
    # The default ends with self-labelling on vectors: 10 epochs, or 50
    # optimiser steps where an epoch has few (3 here).
    assert fitted.n_iter_ == 15 + 17
    assert list(fitted.history_["phase"]) == ["cdc"] * 15 + ["self-labelling"] * 17
    assert list(fitted.history_.columns) == [
        "epoch", "phase", "loss", "contrastive", "best_head", "cluster_entropy", "n_empty_clusters",
        "largest_cluster", "time", "n_relocated",
    ]
    assert len(fitted.history_) == 15 + 17
    assert fitted.history_["cluster_entropy"].iloc[-1] > 0.9


def test_predict_matches_labels_and_probabilities(blobs, fitted):
    X, _ = blobs
    np.testing.assert_array_equal(fitted.predict(X), fitted.labels_)
    proba = fitted.predict_proba(X)
    np.testing.assert_array_equal(proba.argmax(1), fitted.labels_)
    np.testing.assert_allclose(proba, fitted.categorical_embedding_, rtol=1e-5, atol=1e-7)


def test_transform_columns_are_categorical_then_instance(blobs, fitted):
    X, _ = blobs
    out = fitted.transform(X[:20])
    assert out.shape == (20, 3 + 128)
    np.testing.assert_allclose(out[:, :3], fitted.predict_proba(X[:20]), rtol=1e-6)
    np.testing.assert_allclose(out[:, 3:], fitted.instance_embedding_[:20], rtol=1e-5, atol=1e-6)
    names = fitted.get_feature_names_out()
    assert list(names[:4]) == ["categorical0", "categorical1", "categorical2", "instance0"]
    assert len(names) == out.shape[1]


def test_set_output_pandas_and_dataframe_feature_names(blobs):
    X, _ = blobs
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    model = CDCClustering(3, **FAST).set_output(transform="pandas").fit(frame)
    np.testing.assert_array_equal(model.feature_names_in_, frame.columns)
    out = model.transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert out.columns[0] == "categorical0"
    with pytest.warns(UserWarning, match="feature names"):
        model.predict(X)


def test_float32_in_float32_out(blobs, fitted):
    X, _ = blobs
    assert fitted.transform(X.astype(np.float32)).dtype == np.float32
    assert fitted.transform(X).dtype == np.float64


def test_same_seed_same_labels_and_global_rng_untouched(blobs):
    X, _ = blobs
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = CDCClustering(3, **FAST).fit(X)
    after = torch.rand(1)
    b = CDCClustering(3, **FAST).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert before == after  # fit did not consume the caller's torch RNG


def test_different_seeds_give_different_networks(blobs):
    X, _ = blobs
    a = CDCClustering(3, **{**FAST, "random_state": 0}).fit(X)
    b = CDCClustering(3, **{**FAST, "random_state": 1}).fit(X)
    assert not np.allclose(a.instance_embedding_, b.instance_embedding_)


@pytest.mark.parametrize("dump, load", [(pickle.dumps, pickle.loads), ("joblib", "joblib")])
def test_pickle_round_trip(blobs, fitted, dump, load, tmp_path):
    X, _ = blobs
    if dump == "joblib":
        path = tmp_path / "model.joblib"
        joblib.dump(fitted, path)
        restored = joblib.load(path)
    else:
        restored = load(dump(fitted))
    np.testing.assert_array_equal(restored.predict(X), fitted.predict(X))
    np.testing.assert_array_equal(restored.transform(X), fitted.transform(X))
    assert all(p.device.type == "cpu" for p in restored.network_.parameters())


def test_clone_gives_an_unfitted_copy_with_the_same_parameters(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "network_")


def test_one_cluster_is_allowed(blobs):
    X, _ = blobs
    model = CDCClustering(1, **FAST).fit(X)
    assert set(model.labels_) == {0}


def test_batch_larger_than_data_shrinks(blobs):
    X, _ = blobs
    model = CDCClustering(3, epochs=3, batch_size=10_000, random_state=0).fit(X[:30])
    assert model.labels_.shape == (30,)


def test_equipartition_and_weighting_options_all_train(blobs):
    X, y = blobs
    for equipartition in ("sinkhorn", "entropy", "none"):
        for weighting in ("hard", "debiased"):
            model = CDCClustering(
                3, equipartition=equipartition, negative_weighting=weighting, **FAST
            ).fit(X)
            assert np.isfinite(model.history_["loss"]).all()
    model = CDCClustering(3, equipartition="sinkhorn", **{**FAST, "epochs": 20}).fit(X)
    assert adjusted_rand_score(y, model.labels_) > 0.9


class TinyNetwork(nn.Module):
    def __init__(self, in_features, n_clusters, instance_dim, width=16):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, width), nn.ReLU())
        self.logits = nn.Linear(width, n_clusters)
        self.instance = nn.Linear(width, instance_dim)

    def forward(self, x):
        h = self.body(x)
        return self.logits(h), nn.functional.normalize(self.instance(h), dim=1)


def test_user_network_class_with_kwargs(blobs):
    X, _ = blobs
    # Without the floor, whose k-means partition would wrap the network.
    model = CDCClustering(
        3, network=TinyNetwork, network_params={"width": 7, "instance_dim": 5},
        kmeans_floor=False, **FAST,
    ).fit(X)
    assert model.network_[1].body[0].out_features == 7
    assert model.transform(X[:4]).shape == (4, 8)
    assert clone(model).network is TinyNetwork


class DtypeRecordingNetwork(TinyNetwork):
    """Records the dtype of the logits of every training forward pass."""

    seen: ClassVar[list] = []

    def forward(self, x):
        logits, z = super().forward(x)
        if self.training:
            self.seen.append(logits.dtype)
        return logits, z


@pytest.mark.parametrize(
    "native, mixed_precision, expected",
    [(True, True, torch.bfloat16), (False, True, torch.float32), (True, False, torch.float32)],
    ids=["native", "emulated", "off"],
)
def test_bfloat16_on_the_cpu_only_where_native(blobs, monkeypatch, native, mixed_precision, expected):
    """The CPU's bfloat16 support is what torch reports; without it autocast
    would emulate bfloat16 and be slower than float32."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: native, raising=False)
    monkeypatch.setattr(DtypeRecordingNetwork, "seen", [])
    X, _ = blobs
    model = CDCClustering(
        3,
        network=DtypeRecordingNetwork,
        mixed_precision=mixed_precision,
        device="cpu",  # on a CUDA machine "auto" would train on the GPU, always in bfloat16
        **{**FAST, "epochs": 2},
    ).fit(X)
    assert set(DtypeRecordingNetwork.seen) == {expected}
    # Autocast computes in bfloat16 but keeps the weights in float32.
    assert {p.dtype for p in model.network_.parameters()} == {torch.float32}


def test_network_instance_is_refused(blobs):
    X, _ = blobs
    with pytest.raises((TypeError, ValueError), match="network"):
        CDCClustering(3, network=TinyNetwork(8, 3, 4), **FAST).fit(X)


def test_network_with_wrong_signature_is_refused(blobs):
    X, _ = blobs
    with pytest.raises(TypeError, match="in_features"):
        CDCClustering(3, network=nn.Linear, **FAST).fit(X)


@pytest.mark.parametrize(
    "network_params, match",
    [({"hidden": 64}, "hidden_dim"), ({"in_features": 4}, "in_features"), ({"backbone": "x"}, "")],
)
def test_network_params_the_network_does_not_take_are_refused(blobs, network_params, match):
    X, _ = blobs
    with pytest.raises(ValueError, match=f"network_params.*{match}"):
        CDCClustering(3, network_params=network_params, **FAST).fit(X)


def test_verbose_shows_progress_over_steps_and_the_neighbour_search(blobs, capsys):
    X, _ = blobs
    model = CDCClustering(3, verbose=1, **{**FAST, "epochs": 2}).fit(X)
    err = capsys.readouterr().err
    steps = model.n_iter_ * (len(X) // FAST.get("batch_size", 256))
    assert "CDCClustering" in err and "loss=" in err and f"{steps}/{steps}" in err
    assert "neighbours (exact)" in err


def test_label_free_score_is_high_for_a_good_clustering(blobs, fitted):
    X, _ = blobs
    score = fitted.score(X)
    assert 0.9 * np.log(3) < score <= np.log(3) + 1e-9


def test_pipeline_and_grid_search_with_label_scorer_and_label_free_score(blobs):
    X, y = blobs
    pipe = make_pipeline(StandardScaler(), CDCClustering(**FAST))
    grid = {"cdcclustering__n_clusters": [2, 3]}
    labelled = GridSearchCV(pipe, grid, scoring=accuracy_scorer, cv=2).fit(X, y)
    assert labelled.best_params_["cdcclustering__n_clusters"] == 3
    assert labelled.best_score_ > 0.9
    pipe.set_params(cdcclustering__n_clusters=3)
    label_free = GridSearchCV(pipe, {"cdcclustering__tau_c": [0.2, 1.0]}, cv=2).fit(X)
    assert np.isfinite(label_free.cv_results_["mean_test_score"]).all()


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused(blobs, bad):
    X, _ = blobs
    X = X.copy()
    X[3, 2] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        CDCClustering(3, **FAST).fit(X)


@pytest.mark.parametrize("n_clusters", [0, -2])
def test_n_clusters_below_one_is_refused(blobs, n_clusters):
    X, _ = blobs
    with pytest.raises(ValueError, match="n_clusters"):
        CDCClustering(n_clusters, **FAST).fit(X)


def test_more_clusters_than_samples_is_refused(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="n_samples=5 should be >= n_clusters=6"):
        CDCClustering(6, **FAST).fit(X[:5])


def test_single_sample_is_refused(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="1 sample"):
        CDCClustering(1, **FAST).fit(X[:1])


def test_wrong_number_of_features_at_predict(fitted, blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="X has 5 features, but CDCClustering is expecting 8"):
        fitted.predict(X[:, :5])


def test_non_numeric_data_is_refused():
    X = np.array([["a", "b"], ["c", "d"], ["e", "f"]], dtype=object)
    with pytest.raises(ValueError, match="convert|string"):
        CDCClustering(2, **FAST).fit(X)


def test_sparse_input_is_refused_with_the_fix(blobs):
    X, _ = blobs
    with pytest.raises(TypeError, match="toarray"):
        CDCClustering(3, **FAST).fit(sp.csr_matrix(X))


def test_cuda_without_cuda_is_refused(blobs):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal only happens without it")
    X, _ = blobs
    with pytest.raises(ValueError, match="CUDA is not available"):
        CDCClustering(3, device="cuda", **FAST).fit(X)


def test_unknown_device_is_refused(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="device"):
        CDCClustering(3, device="tpu9", **FAST).fit(X)


@pytest.mark.parametrize(
    "param, value",
    [
        ("equipartition", "uniform"),
        ("negative_weighting", "soft"),
        ("tau_c", 0.0),
        ("mode", "pixels"),
        ("image_layout", "NCHW"),
        ("augmentation", "strong"),
        ("network_params", "wide"),
    ],
)
def test_bad_hyper_parameters_are_refused(blobs, param, value):
    X, _ = blobs
    with pytest.raises(ValueError, match=param):
        CDCClustering(3, **{**FAST, param: value}).fit(X)


def test_several_heads_keep_the_lowest_loss_head(blobs):
    X, y = blobs
    model = CDCClustering(3, network_params={"n_heads": 4}, **FAST).fit(X)
    assert 0 <= model.best_head_ < 4
    assert model.predict_proba(X[:5]).shape == (5, 3)
    assert adjusted_rand_score(y, model.labels_) > 0.9
    assert model.history_["best_head"].iloc[-1] == model.best_head_


def test_self_labelling_phase_is_recorded_and_keeps_clusters(blobs):
    X, y = blobs
    model = CDCClustering(3, self_labelling_epochs=4, **FAST).fit(X)
    assert model.n_iter_ == FAST["epochs"] + 4
    assert list(model.history_["phase"]) == ["cdc"] * FAST["epochs"] + ["self-labelling"] * 4
    assert adjusted_rand_score(y, model.labels_) > 0.9


# ---------------------------------------------------------- reproducibility

REPRO = textwrap.dedent(
    """
    import hashlib
    from sklearn.datasets import load_digits
    from skcdc import CDCClustering
    X, _ = load_digits(return_X_y=True)
    labels = CDCClustering(10, epochs=3, random_state=7).fit_predict(X)
    print(hashlib.sha256(labels.tobytes()).hexdigest())
    """
)


def test_same_seed_gives_identical_labels_across_processes():
    digests = {
        subprocess.run(
            [sys.executable, "-c", REPRO], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(digests) == 1


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "X, match",
    [
        (np.empty((0, 4)), "0 sample"),
        (np.ones(10), "Expected 2D array"),
        (np.ones((10, 3)) + 1j, "Complex data not supported"),
    ],
    ids=["empty", "1-D", "complex"],
)
def test_bad_arrays_are_refused(X, match):
    with pytest.raises(ValueError, match=match):
        CDCClustering(2, **FAST).fit(X)


@pytest.mark.parametrize("value", [1e39, -1e300])
def test_values_beyond_float32_are_refused(value):
    X = np.ones((10, 3))
    X[2, 1] = value
    with pytest.raises(ValueError, match="float32.*StandardScaler"):
        CDCClustering(2, **FAST).fit(X)


def test_huge_but_representable_values_train():
    X = np.full((6, 2), 1.1e38, dtype=np.float32)
    X[:3] *= -1
    model = CDCClustering(2, **{**FAST, "epochs": 2, "batch_size": 6}).fit(X)
    assert np.isfinite(model.transform(X)).all()


@pytest.mark.parametrize(
    "param, value",
    [
        ("n_clusters", 2.5),
        ("n_clusters", "3"),
        ("random_state", "seed"),
        ("random_state", 1.5),
        ("n_init", 0),
        ("device", 3),
    ],
)
def test_bad_parameter_types_are_refused_before_training(blobs, param, value):
    X, _ = blobs
    with pytest.raises(InvalidParameterError, match=param):
        CDCClustering(**{**FAST, "n_clusters": 3, param: value}).fit(X)


# DivergenceError: data so extreme that the loss is not finite in the first epoch.
DOCUMENTED = (ValueError, TypeError, DivergenceError)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
    dtype=st.sampled_from(["float32", "float64", "int64", "bool", "complex128", "uint8"]),
    n_clusters=st.integers(1, 4),
)
def test_random_shapes_and_dtypes_give_a_result_or_a_documented_error(
    data, shape, dtype, n_clusters
):
    X = data.draw(hnp.arrays(dtype, shape))
    model = CDCClustering(
        n_clusters,
        epochs=1,
        network_params={"hidden_dim": 8, "instance_dim": 4},
        batch_size=4,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.fit(X)
        except DOCUMENTED:
            return
        labels = model.predict(X)
    assert labels.shape == (len(X),)
    assert labels.min() >= 0 and labels.max() < n_clusters
    X_other = data.draw(hnp.arrays("float64", hnp.array_shapes(min_dims=1, max_dims=3, max_side=6)))
    try:
        out = model.predict(X_other)
    except DOCUMENTED:
        return
    assert out.shape == (len(X_other),)


def test_pickle_records_the_version_and_warns_on_another(fitted, blobs):
    import pickle

    X, _ = blobs
    state = fitted.__getstate__()
    from skcdc import __version__

    assert state["_skcdc_version"] == __version__
    assert all(t.device.type == "cpu" for t in state["network_"].state_dict().values())
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(X), fitted.predict(X))
    state["_skcdc_version"] = "0.0.1"
    clone_ = CDCClustering.__new__(CDCClustering)
    with pytest.warns(UserWarning, match="pickled by skcdc 0.0.1"):
        clone_.__setstate__(state)
