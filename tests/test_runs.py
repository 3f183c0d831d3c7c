"""One run: checkpoints written as it trains, resumed exactly, refused when foreign."""

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from skcdc import CDCClustering, files
from skcdc.exceptions import CheckpointMismatchError
from skcdc.loss import LossOutput
from skcdc.networks import VectorCDCNetwork
from skcdc.training.engine import Engine, Phase
from skcdc.training.runs import _phases
from skcdc.views import NeighbourViews

FAST = {"epochs": 10, "batch_size": 64, "n_init": 1, "self_labelling_epochs": 0, "random_state": 0}


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
    saved = files.load(checkpoints / "run-0.pt", kind="checkpoint")
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


def test_self_labelling_pairs_each_sample_with_itself(blobs):
    """SCAN's self-labelling targets the same sample's other view: on vectors,
    where the CDC phase pairs a sample with a neighbour, it pairs it with itself."""
    from skcdc._plan import make_plan

    X, _ = blobs
    views = NeighbourViews(torch.as_tensor(X, dtype=torch.float32), 5)
    seen = []

    def recorder(logits_a, z_a, logits_b, z_b, index=None):
        seen.append(bool(torch.equal(z_a, z_b)))
        return LossOutput.of((logits_a.sum() + logits_b.sum()) * 0.0)

    params = CDCClustering(3, **{**FAST, "self_labelling_epochs": 1}).get_params()
    plan = make_plan(params, n_samples=len(X), images=False, device=torch.device("cpu"))
    phases = _phases(plan, views)
    engine = Engine(
        VectorCDCNetwork(X.shape[1], 3, instance_dim=8, hidden_dim=16),
        [Phase(phase.name, recorder, 1, views=phase.views) for phase in phases],
        views,
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0),
        sampler=range(X.shape[0]),
        batch_size=50,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
        n_clusters=3,
    )
    engine.fit()
    batches = X.shape[0] // 50
    assert [phase.name for phase in phases] == ["cdc", "self-labelling"]
    assert seen == [False] * batches + [True] * batches
