"""Faults during training, bad input, reproducibility and persistence."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.datasets import make_blobs
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from skcdc import CDCClustering, persistence
from skcdc.exceptions import (
    CheckpointMismatchError,
    CollapseWarning,
    DivergenceError,
    IncompatibleFileError,
    TrainingStoppedWarning,
)
from skcdc.networks import VectorCDCNetwork

# One phase (no self-labelling), so that epochs and training passes count the
# CDC phase alone.
FAST = {"epochs": 10, "batch_size": 64, "n_init": 1, "self_labelling_epochs": 0, "random_state": 0}
# 240 samples in batches of 64 (the last partial batch dropped): 3 batches, so
# 6 training forward passes (two views each) per epoch.
CALLS_PER_EPOCH = 6


class FaultyNetwork(nn.Module):
    """The default network, with a fault injected at a given training forward pass."""

    def __init__(self, in_features, n_clusters, instance_dim, fail_at=None, fault="nan"):
        super().__init__()
        self.inner = VectorCDCNetwork(in_features, n_clusters, instance_dim, hidden_dim=64)
        self.fail_at = fail_at
        self.fault = fault
        self.calls = 0

    def forward(self, x):
        logits, z = self.inner(x)
        if self.training:
            self.calls += 1
            if self.fail_at is not None and self.calls >= self.fail_at:
                if self.fault == "nan":
                    logits = logits * float("nan")
                elif self.fault == "interrupt":
                    raise KeyboardInterrupt
                elif self.fault == "oom":
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return logits, z


def faulty(fail_at, fault, **params):
    return CDCClustering(
        3,
        network=FaultyNetwork,
        network_kwargs={"fail_at": fail_at, "fault": fault},
        **{**FAST, **params},
    )


# ------------------------------------------------------------ training faults


def test_nan_loss_restores_the_last_good_epoch_and_warns(blobs):
    X, _ = blobs
    with pytest.warns(TrainingStoppedWarning, match="NaN or infinite.*learning_rate"):
        model = faulty(2 * CALLS_PER_EPOCH + 1, "nan").fit(X)
    assert model.stop_reason_ == "diverged"
    assert model.n_iter_ == 2 and len(model.history_) == 2
    assert np.isfinite(model.transform(X)).all()
    # The kept weights are exactly those of a run that stopped after 2 epochs.
    reference = faulty(None, "nan", epochs=2).fit(X)
    np.testing.assert_array_equal(model.labels_, reference.labels_)
    np.testing.assert_allclose(model.transform(X), reference.transform(X), rtol=1e-6, atol=1e-7)


def test_nan_in_the_first_epoch_raises_and_leaves_the_estimator_untouched(blobs):
    X, _ = blobs
    model = faulty(1, "nan")
    with pytest.raises(DivergenceError, match="first epoch.*learning rate"):
        model.fit(X)
    assert not hasattr(model, "labels_")


def test_failed_refit_keeps_the_previous_fit(blobs):
    X, _ = blobs
    model = faulty(None, "nan").fit(X)
    labels = model.labels_.copy()
    model.set_params(network_kwargs={"fail_at": 1, "fault": "oom"})
    with pytest.raises(torch.cuda.OutOfMemoryError):
        model.fit(X)
    np.testing.assert_array_equal(model.predict(X), labels)


def test_keyboard_interrupt_keeps_a_usable_estimator(blobs):
    X, _ = blobs
    with pytest.warns(TrainingStoppedWarning, match="interrupted after 3 of 10 epochs"):
        model = faulty(3 * CALLS_PER_EPOCH + 2, "interrupt").fit(X)
    assert model.stop_reason_ == "interrupted"
    assert model.n_iter_ == 3
    assert model.predict(X).shape == (X.shape[0],)
    reference = faulty(None, "interrupt", epochs=3).fit(X)
    np.testing.assert_array_equal(model.labels_, reference.labels_)


def test_interrupt_after_restarts_were_compared_early_keeps_the_chosen_run(blobs):
    X, _ = blobs
    # Each run trains one epoch (6 training passes) before the comparison; the
    # chosen one is interrupted early in its second.
    params = {"n_init": 2, "n_init_epochs": 1, "epochs": 4}
    with pytest.warns(TrainingStoppedWarning, match="interrupted after 1 of 4 epochs"):
        model = faulty(CALLS_PER_EPOCH + 2, "interrupt", **params).fit(X)
    assert model.stop_reason_ == "interrupted"
    assert model.n_iter_ == 1 and len(model.run_scores_) == 2
    assert model.predict(X).shape == (X.shape[0],)


@pytest.mark.parametrize("fail_in_epoch, refined", [(1, False), (2, True)])
def test_interrupt_in_the_refinement_stage_keeps_what_was_trained(
    monkeypatch, fail_in_epoch, refined
):
    """Image mode's second stage, interrupted: before its first epoch ends the
    end-to-end stage's network stands; later, the refinement's last epoch."""
    images = np.random.default_rng(0).integers(0, 256, (240, 8, 8), dtype=np.uint8)
    stage = CDCClustering._refinement_stage

    def faulty_stage(self, X, seed):
        fail_at = (fail_in_epoch - 1) * CALLS_PER_EPOCH + 2
        kwargs = {"fail_at": fail_at, "fault": "interrupt"}
        return stage(self, X, seed).set_params(network=FaultyNetwork, network_kwargs=kwargs)

    monkeypatch.setattr(CDCClustering, "_refinement_stage", faulty_stage)
    n_iter = 2 + fail_in_epoch - 1
    with pytest.warns(TrainingStoppedWarning, match=f"interrupted after {n_iter} of 4 epochs"):
        model = CDCClustering(3, **{**FAST, "epochs": 2}).fit(images)
    assert model.stop_reason_ == "interrupted" and model.refined_ == refined
    assert model.n_iter_ == n_iter
    np.testing.assert_array_equal(model.predict(images), model.labels_)


def test_keyboard_interrupt_before_any_epoch_propagates(blobs):
    X, _ = blobs
    model = faulty(2, "interrupt")
    with pytest.raises(KeyboardInterrupt):
        model.fit(X)
    assert not hasattr(model, "labels_")


def test_cuda_out_of_memory_names_batch_size(blobs):
    X, _ = blobs
    with pytest.raises(torch.cuda.OutOfMemoryError, match="batch_size=64"):
        faulty(1, "oom").fit(X)


class ConstantNetwork(nn.Module):
    """Puts every sample in cluster 0 whatever it learns: a forced collapse."""

    def __init__(self, in_features, n_clusters, instance_dim):
        super().__init__()
        self.inner = VectorCDCNetwork(in_features, n_clusters, instance_dim, hidden_dim=32)
        self.register_buffer("bias", torch.zeros(n_clusters))
        self.bias[0] = 1e4

    def forward(self, x):
        logits, z = self.inner(x)
        return logits + self.bias, z


@pytest.mark.parametrize(
    "equipartition, advice",
    [("entropy", "entropy_weight.*init='kmeans'"), ("sinkhorn", "anchor_weight")],
)
def test_collapse_is_reported_in_history_and_warned(blobs, equipartition, advice):
    X, _ = blobs
    with pytest.warns(CollapseWarning, match=f"2 of 3 clusters are empty.*{advice}"):
        model = CDCClustering(
            3, network=ConstantNetwork, equipartition=equipartition, **{**FAST, "epochs": 2}
        ).fit(X)
    assert (model.history_["n_empty_clusters"] == 2).all()
    assert (model.history_["largest_cluster"] == 1.0).all()


def test_no_collapse_warning_on_a_good_fit(blobs):
    X, _ = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CDCClustering(3, **FAST).fit(X)


# -------------------------------------------------------------- checkpoints

# Trains long enough (about 0.3 s per epoch on 2 cores) to be killed mid-run.
CHILD_FIT = textwrap.dedent(
    """
    import json, signal, sys
    # A shell's background jobs start with SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler; restore it as a terminal would have.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import numpy as np
    from sklearn.datasets import make_blobs
    from skcdc import CDCClustering
    X, _ = make_blobs(n_samples=3000, centers=4, n_features=32, random_state=0)
    model = CDCClustering(4, epochs={epochs}, batch_size=128, n_init=1, random_state=0,
                          checkpoint_dir=sys.argv[1] if len(sys.argv) > 1 else None)
    model.fit(X)
    print(json.dumps({{"labels": model.labels_.tolist(), "stop": model.stop_reason_}}))
    """
)
CHILD_EPOCHS = 12
# The CDC epochs and the default's 10 epochs of self-labelling after them.
CHILD_TOTAL = CHILD_EPOCHS + 10


def _child(tmp_path, checkpoint_dir=None, epochs=CHILD_EPOCHS):
    script = tmp_path / "fit.py"
    script.write_text(CHILD_FIT.format(epochs=epochs))
    args = [sys.executable, str(script)] + ([str(checkpoint_dir)] if checkpoint_dir else [])
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


def test_resume_after_a_killed_process_equals_an_uninterrupted_run(tmp_path):
    checkpoints = tmp_path / "ckpt"
    process = _child(tmp_path, checkpoints)
    _wait_for(checkpoints / "run-0.pt", process)
    process.kill()
    process.wait()
    saved = persistence.load(checkpoints / "run-0.pt", kind="checkpoint")
    assert 1 <= saved["state"]["epoch"] < CHILD_TOTAL, "the kill must land mid-run"

    X, _ = make_blobs(n_samples=3000, centers=4, n_features=32, random_state=0)
    params = {"epochs": CHILD_EPOCHS, "batch_size": 128, "n_init": 1, "random_state": 0}
    resumed = CDCClustering(4, checkpoint_dir=checkpoints, **params).fit(X)
    uninterrupted = CDCClustering(4, **params).fit(X)
    np.testing.assert_array_equal(resumed.labels_, uninterrupted.labels_)
    np.testing.assert_allclose(resumed.transform(X), uninterrupted.transform(X), atol=1e-6)
    assert resumed.n_iter_ == CHILD_TOTAL and len(resumed.history_) == CHILD_TOTAL
    assert resumed.history_["epoch"].tolist() == list(range(1, CHILD_TOTAL + 1))


def test_sigint_leaves_a_usable_estimator_in_a_real_process(tmp_path):
    checkpoints = tmp_path / "ckpt"
    process = _child(tmp_path, checkpoints, epochs=200)
    _wait_for(checkpoints / "run-0.pt", process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    result = json.loads(out)
    assert result["stop"] == "interrupted"
    assert len(set(result["labels"])) >= 1
    assert "TrainingStoppedWarning" in err and "interrupted after" in err


def test_checkpoint_of_other_parameters_is_refused(blobs, tmp_path):
    X, _ = blobs
    CDCClustering(3, checkpoint_dir=tmp_path, **{**FAST, "epochs": 2}).fit(X)
    with pytest.raises(CheckpointMismatchError, match="other data or other parameters"):
        CDCClustering(3, checkpoint_dir=tmp_path, **{**FAST, "epochs": 2, "tau_c": 0.3}).fit(X)
    with pytest.raises(CheckpointMismatchError):
        CDCClustering(3, checkpoint_dir=tmp_path, **{**FAST, "epochs": 2}).fit(X[::-1])


def test_checkpoint_predating_a_parameter_resumes_while_it_is_at_its_default(blobs, tmp_path):
    X, _ = blobs
    params = {**FAST, "epochs": 2}
    first = CDCClustering(3, checkpoint_dir=tmp_path, **params).fit(X)
    # As an older version wrote it: without a parameter added since.
    path = tmp_path / "run-0.pt"
    payload = persistence.load(path, kind="checkpoint")
    del payload["params"]["mutual_neighbors"]
    persistence.save({k: payload[k] for k in ("data_and_seed", "params", "state")}, path,
                     kind="checkpoint")
    resumed = CDCClustering(3, checkpoint_dir=tmp_path, **params).fit(X)
    # Restored, not retrained: even the epochs' measured times are the first fit's.
    pd.testing.assert_frame_equal(resumed.history_, first.history_)
    with pytest.raises(CheckpointMismatchError, match="other data or other parameters"):
        CDCClustering(3, checkpoint_dir=tmp_path, mutual_neighbors=True, **params).fit(X)


def test_checkpoint_file_is_safe_to_load_and_versioned(blobs, tmp_path):
    X, _ = blobs
    CDCClustering(3, checkpoint_dir=tmp_path, checkpoint_every=2, **FAST).fit(X)
    path = tmp_path / "run-0.pt"
    raw = torch.load(path, weights_only=True)  # no code can run while loading
    from skcdc import __version__

    assert raw["skcdc_version"] == __version__
    assert raw["format_version"] == persistence.FORMAT_VERSION
    assert raw["state"]["epoch"] == FAST["epochs"]
    assert not list(tmp_path.glob("*.tmp"))

    raw["format_version"] = persistence.FORMAT_VERSION + 1
    raw["skcdc_version"] = "99.0"
    torch.save(raw, path)
    with pytest.raises(IncompatibleFileError, match="skcdc 99.0.*Install skcdc==99.0"):
        CDCClustering(3, checkpoint_dir=tmp_path, checkpoint_every=2, **FAST).fit(X)


def test_a_file_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "run-0.pt"

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"kind": "checkpoint", "evil": Payload()}, path)
    with pytest.raises(IncompatibleFileError, match="not a readable skcdc checkpoint"):
        persistence.load(path, kind="checkpoint")


def test_save_model_refuses_a_network_given_as_code(blobs, tmp_path):
    X, _ = blobs
    model = CDCClustering(3, network=VectorCDCNetwork, **{**FAST, "epochs": 1}).fit(X)
    with pytest.raises(TypeError, match=r"network=.*is code\. Use joblib\.dump"):
        persistence.save_model(model, tmp_path / "model.skcdc")
    assert not (tmp_path / "model.skcdc").exists()


def test_n_init_keeps_the_run_with_the_best_label_free_score(blobs):
    X, _ = blobs
    params = {**FAST, "epochs": 2, "equipartition": "none"}  # short and unconstrained: runs differ
    multi = CDCClustering(3, **{**params, "n_init": 4, "combine_restarts": "best"}).fit(X)
    assert multi.run_scores_.shape == (4,)
    assert multi.score(X) == pytest.approx(multi.run_scores_.max())
    # The first run is the n_init=1 run of the same random_state.
    single = CDCClustering(3, **params).fit(X)
    assert single.run_scores_[0] == pytest.approx(multi.run_scores_[0])


def test_n_init_auto_restarts_by_size(blobs):
    X, _ = blobs
    small = CDCClustering(3, **{**FAST, "epochs": 1, "n_init": "auto"}).fit(X)
    assert len(small.run_scores_) == 5
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8)
    small_images = CDCClustering(3, **{**FAST, "epochs": 1, "n_init": "auto"}).fit(images)
    assert len(small_images.run_scores_) == 3
    big = np.repeat(X, 25, axis=0)[:5001]
    large = CDCClustering(3, **{**FAST, "epochs": 1, "n_init": "auto", "batch_size": 2048})
    assert len(large.fit(big).run_scores_) == 3
    # Compared early, restarts stay affordable on large data.
    assert CDCClustering(3, n_init_epochs=1)._restart_plan(big) == (3, 1)


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
        ("checkpoint_every", 0),
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
        n_clusters, epochs=1, hidden_dim=8, instance_dim=4, batch_size=4, random_state=0
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
