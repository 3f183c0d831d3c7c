"""What tests/test_distributed.py runs in every process of a ``torchrun`` launch.

    python -m torch.distributed.run --standalone --nproc-per-node 2 \\
        tests/torchrun_script.py MODE OUT_DIR

Each rank writes what the test checks to ``OUT_DIR/<mode>-<rank>.json`` (or
``.npy``); the test process reads and asserts.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import make_blobs
from torch import nn

from skcdc import CDCClustering
from skcdc.distributed import current_world, join
from skcdc.loss import CDCLoss, sinkhorn
from skcdc.networks import VectorCDCNetwork

GLOBAL_BATCH, N_CLUSTERS, N_FEATURES, INSTANCE_DIM = 16, 5, 8, 4


def blobs() -> tuple[np.ndarray, np.ndarray]:
    # An odd number of rows: the two processes' blocks differ in length.
    return make_blobs(601, n_features=8, centers=5, cluster_std=1.0, random_state=0)


def fit_params() -> dict:
    return {"n_init": 1, "epochs": 10, "self_labelling_epochs": 2, "batch_size": 64, "random_state": 0}


def _outputs(network: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor) -> list[torch.Tensor]:
    out_a, out_b = network(x_a), network(x_b)
    k = N_CLUSTERS
    return [out_a[:, :k], F.normalize(out_a[:, k:]), out_b[:, :k], F.normalize(out_b[:, k:])]


def _network(layers: str) -> nn.Module:
    width = N_CLUSTERS + INSTANCE_DIM
    if layers == "linear":
        return nn.Linear(N_FEATURES, width)
    # Batch normalisation: its statistics are those of the global batch.
    return nn.Sequential(nn.Linear(N_FEATURES, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, width))


def check_loss(out: Path) -> None:
    """The gathered loss and its gradients against one process's on the global batch."""
    world = join(torch.device("cpu"))
    share = world.share(list(range(GLOBAL_BATCH)))
    differences: dict[str, float] = {}
    for equipartition, window, layers in [
        ("sinkhorn", 0, "linear"),
        ("sinkhorn", 4 * GLOBAL_BATCH, "linear"),
        ("entropy", 0, "linear"),
        ("entropy", 4 * GLOBAL_BATCH, "linear"),
        ("entropy", 0, "batchnorm"),
    ]:
        torch.manual_seed(0)
        reference_net = _network(layers)
        shared_net = copy.deepcopy(reference_net)
        settings = {
            "tau_c": 0.5, "tau_z": 0.5, "equipartition": equipartition, "balance_window": window
        }
        reference_loss, shared_loss = CDCLoss(**settings), CDCLoss(**settings)
        for step in range(3):  # the window's state carries over between steps
            x_a, x_b = torch.randn(GLOBAL_BATCH, N_FEATURES), torch.randn(GLOBAL_BATCH, N_FEATURES)
            reference_net.zero_grad()
            expected = reference_loss(*_outputs(reference_net, x_a, x_b))
            expected.loss.backward()
            shared_net.zero_grad()
            restore = world.use_global_batch_norm(shared_net)
            local = _outputs(shared_net, x_a[share], x_b[share])
            restore()
            gathered = [world.gather(t) for t in local]
            got = shared_loss(*gathered)
            got.loss.backward()
            world.sum_gradients(shared_net.parameters())
            key = f"{equipartition}-{window}-{layers}-{step}"
            differences[f"loss {key}"] = abs(got.loss.item() - expected.loss.item())
            differences[f"grad {key}"] = max(
                (a.grad - b.grad).abs().max().item()
                for a, b in zip(shared_net.parameters(), reference_net.parameters())
            )
            differences[f"scale {key}"] = max(
                p.grad.abs().max().item() for p in reference_net.parameters()
            )
            differences[f"buffers {key}"] = max(
                [(a - b).abs().max().item() for a, b in
                 zip(shared_net.buffers(), reference_net.buffers())], default=0.0
            )
    # Sinkhorn over the gathered global batch: columns of B / K exactly at convergence.
    torch.manual_seed(1)
    logits = torch.randn(GLOBAL_BATCH, N_CLUSTERS) * 3
    balanced = sinkhorn(world.gather(logits[share]), n_iter=500)
    differences["sinkhorn vs one process"] = (balanced - sinkhorn(logits, n_iter=500)).abs().max().item()
    column_sums = balanced.sum(0)
    differences["sinkhorn columns"] = (column_sums - GLOBAL_BATCH / N_CLUSTERS).abs().max().item()
    _write(out, "loss", world.rank, differences)


def fit(out: Path) -> None:
    """A default fit, as a user's script would run it; at exit, after skcdc
    has left the process group it joined, the names of the threads left."""
    # Registered before the fit joins the group: exit handlers run last first.
    atexit.register(_write_threads, out, os.environ.get("RANK", "0"))
    X, _ = blobs()
    model = CDCClustering(N_CLUSTERS, **fit_params()).fit(X)
    world = current_world()
    np.save(out / f"fit-{world.rank}.npy", model.labels_)
    _write(out, "fit", world.rank, {"size": world.size, "n_iter": model.n_iter_})


class DiesOnRankOne(VectorCDCNetwork):
    """The default network, whose process on rank 1 dies at its 20th batch."""

    calls = 0

    def forward(self, x: torch.Tensor):
        DiesOnRankOne.calls += 1
        if os.environ.get("RANK") == "1" and DiesOnRankOne.calls == 40:
            os._exit(3)
        return super().forward(x)


class StopsAtStepTwenty(VectorCDCNetwork):
    """The default network, interrupted (Ctrl-C) at its 20th step on every
    rank of a launch of several processes."""

    calls = 0

    def forward(self, x: torch.Tensor):
        StopsAtStepTwenty.calls += 1
        launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if launched and self.training and StopsAtStepTwenty.calls == 40:
            os.kill(os.getpid(), signal.SIGINT)
        return super().forward(x)


def kill(out: Path) -> None:
    X, _ = blobs()
    CDCClustering(N_CLUSTERS, network=DiesOnRankOne, **fit_params()).fit(X)


def checkpoint(out: Path) -> None:
    X, _ = blobs()
    model = CDCClustering(
        N_CLUSTERS, network=StopsAtStepTwenty, checkpoint_dir=out / "checkpoints", **fit_params()
    ).fit(X)
    world = current_world()
    mode = "checkpoint" if world.distributed else "resume"
    values = {
        "stop_reason": model.stop_reason_,
        "n_iter": model.n_iter_,
        "phases": model.history_["phase"].tolist(),
    }
    _write(out, mode, world.rank, values)
    np.save(out / f"{mode}-{world.rank}.npy", model.labels_)


class CountingDigits(torch.utils.data.Dataset):
    """sklearn's digits as (1, 8, 8) uint8 images, counting the items read."""

    def __init__(self) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        self.images = torch.from_numpy((digits.images[:256] * 255 / 16).astype(np.uint8))[:, None]
        self.reads = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        self.reads += 1
        return self.images[index]


def image_model() -> CDCClustering:
    return CDCClustering(10, n_init=1, epochs=2, refine_epochs=0, batch_size=64, random_state=0)


def images(out: Path) -> None:
    """Image mode from a Dataset: every rank decodes only its images."""
    dataset = CountingDigits()
    model = image_model().fit(dataset)
    world = current_world()
    np.save(out / f"images-{world.rank}.npy", model.labels_)
    _write(out, "images", world.rank, {"reads": dataset.reads, "n": len(dataset)})


def _write_threads(out: Path, rank: str) -> None:
    tasks = Path("/proc/self/task")
    names = [(task / "comm").read_text().strip() for task in tasks.iterdir()] if tasks.exists() else None
    _write(out, "threads", int(rank), {"names": names})


def _write(out: Path, mode: str, rank: int, values: dict) -> None:
    (out / f"{mode}-{rank}.json").write_text(json.dumps(values))


if __name__ == "__main__":
    mode, out_dir = sys.argv[1], Path(sys.argv[2])
    modes = {
        "loss": check_loss, "fit": fit, "kill": kill, "checkpoint": checkpoint, "images": images
    }
    modes[mode](out_dir)
