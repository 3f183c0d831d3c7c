"""Data-parallel fits under torchrun: 2 real processes on the CPU (gloo).

Each test launches ``tests/torchrun_script.py`` with ``torchrun`` (or, for the
launch without it, two processes given the environment torchrun would set,
as ``srun`` gives), and checks what the ranks wrote.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from skcdc import CDCClustering
from skcdc.distributed import SINGLE, World
from skcdc.persistence import load_model

SCRIPT = Path(__file__).with_name("torchrun_script.py")
sys.path.insert(0, str(SCRIPT.parent))
import torchrun_script

# A stuck launch fails the test instead of hanging the suite.
LAUNCH_TIMEOUT = 240


def _torchrun(mode: str, out: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", str(SCRIPT), mode, str(out),
    ]
    return subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT, env=_env()
    )


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SCRIPT.parent), env.get("PYTHONPATH")]))
    return env


def _read(out: Path, mode: str, rank: int) -> dict:
    return json.loads((out / f"{mode}-{rank}.json").read_text())


def _check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-4000:]


def test_gathered_loss_and_gradients_equal_one_process(tmp_path):
    _check(_torchrun("loss", tmp_path))
    for rank in (0, 1):
        found = _read(tmp_path, "loss", rank)
        for key, value in found.items():
            if key.startswith(("loss", "buffers")):
                assert value < 1e-5, key
            elif key.startswith("grad"):
                # Relative to the gradient's size: float32 summation order.
                scale = found[key.replace("grad", "scale")]
                assert value < 1e-5 * max(scale, 1.0), key
        # The global Sinkhorn is one process's Sinkhorn on the global batch,
        # with columns of B / K.
        assert found["sinkhorn vs one process"] < 1e-6
        assert found["sinkhorn columns"] < 1e-4


def test_two_process_fit_matches_on_both_ranks_and_one_process(tmp_path):
    _check(_torchrun("fit", tmp_path))
    labels = [np.load(tmp_path / f"fit-{rank}.npy") for rank in (0, 1)]
    assert _read(tmp_path, "fit", 0)["size"] == 2
    np.testing.assert_array_equal(labels[0], labels[1])
    X, y = torchrun_script.blobs()
    single = CDCClustering(torchrun_script.N_CLUSTERS, **torchrun_script.fit_params()).fit(X)
    one, two = adjusted_rand_score(y, single.labels_), adjusted_rand_score(y, labels[0])
    assert two > 0.9
    assert two >= one - 0.05
    # The group skcdc joined is gone at exit, its worker threads joined:
    # threads left to the interpreter's teardown can abort a rank.
    for rank in (0, 1):
        names = _read(tmp_path, "threads", rank)["names"]
        if names is not None:
            assert not [name for name in names if "gloo" in name], names


def test_image_dataset_is_read_in_shares(tmp_path):
    _check(_torchrun("images", tmp_path))
    labels = [np.load(tmp_path / f"images-{rank}.npy") for rank in (0, 1)]
    np.testing.assert_array_equal(labels[0], labels[1])
    assert len(np.unique(labels[0])) > 1
    # One process decodes every image in the checking pass, in each epoch, for
    # the training outputs and for the cluster centres (two passes when a
    # cluster is empty; the bound leaves room for three), and item 0 twice
    # more while telling what the input is. Each of two processes decodes
    # half of that.
    epochs = torchrun_script.image_model().epochs
    for rank in (0, 1):
        found = _read(tmp_path, "images", rank)
        assert found["reads"] <= found["n"] // 2 * (1 + epochs + 1 + 3) + 2


def test_killed_rank_stops_the_launch(tmp_path):
    start = time.monotonic()
    result = _torchrun("kill", tmp_path)
    assert result.returncode != 0
    assert time.monotonic() - start < LAUNCH_TIMEOUT
    # torchrun names the rank that failed first and its exit code.
    assert "exitcode  : 3" in result.stderr


def test_killed_rank_ends_the_other_with_a_clear_error(tmp_path):
    """Without torchrun's agent (processes started one by one, as srun does),
    the survivor's next collective fails and says why."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    processes = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "kill", str(tmp_path)],
            env=_env(**launch, RANK=str(rank), LOCAL_RANK=str(rank)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        errors = [p.communicate(timeout=LAUNCH_TIMEOUT)[1] for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert processes[1].returncode == 3
    assert processes[0].returncode != 0
    assert "LostRankError" in errors[0] and "another process" in errors[0]


def test_two_process_checkpoint_resumes_in_one_process(tmp_path):
    _check(_torchrun("checkpoint", tmp_path))
    params = torchrun_script.fit_params()
    planned = params["epochs"] + params["self_labelling_epochs"]
    for rank in (0, 1):
        stopped = _read(tmp_path, "checkpoint", rank)
        assert stopped["stop_reason"] == "interrupted"
        assert 0 < stopped["n_iter"] < planned
    # The same script in one process: the run continues from the file.
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "checkpoint", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT, env=_env(),
    )
    _check(result)
    resumed = _read(tmp_path, "resume", 0)
    assert resumed["stop_reason"] is None
    assert resumed["n_iter"] == planned
    assert resumed["phases"][-1] == "self-labelling"
    _, y = torchrun_script.blobs()
    assert adjusted_rand_score(y, np.load(tmp_path / "resume-0.npy")) > 0.9


@pytest.mark.parametrize("n, size", [(10, 3), (7, 2), (1, 2), (600, 4)])
def test_shards_and_shares_cover_every_row_once(n, size):
    worlds = [World(rank=r, size=size) for r in range(size)]
    shards = [np.arange(n)[w.shard(n)] for w in worlds]
    np.testing.assert_array_equal(np.concatenate(shards), np.arange(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    batch = list(range(n))
    shares = [w.share(batch) for w in worlds]
    assert len({len(s) for s in shares}) == 1
    assert [i for share in shares for i in share] == batch[: len(shares[0]) * size]


def test_one_process_world_is_the_identity():
    assert SINGLE.share([1, 2, 3]) == [1, 2, 3]
    rows = np.arange(6).reshape(3, 2)
    assert SINGLE.gather_rows(rows) is rows
    assert not SINGLE.distributed and SINGLE.is_main


def test_cli_fit_under_torchrun_writes_once(tmp_path):
    X, y = torchrun_script.blobs()
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    labels, model = tmp_path / "labels.csv", tmp_path / "model.skcdc"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "-m", "skcdc", "fit", str(tmp_path / "X.npy"), "--n-clusters", "5", "--epochs", "10",
        "--random-state", "0", "--out", str(labels), "--save", str(model), "--quiet",
    ]
    result = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT, env=_env()
    )
    _check(result)
    assert result.stderr.count(f"wrote {len(X)} labels") == 1
    assert result.stderr.count("saved the model") == 1
    written = np.loadtxt(labels, skiprows=1, dtype=int)
    assert adjusted_rand_score(y, written) > 0.9
    np.testing.assert_array_equal(load_model(model).predict(X.astype(np.float32)), written)


def test_a_global_batch_smaller_than_the_processes_is_refused():
    from skcdc._validation import check_batch_shares

    check_batch_shares(4, 4)
    with pytest.raises(ValueError, match="batch_size=2 is the global batch.*at least 4"):
        check_batch_shares(2, 4)
