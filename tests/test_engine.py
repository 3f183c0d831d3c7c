"""The training loop's faults, through the estimator: NaN, Ctrl-C, CUDA out of memory."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from skcdc import CDCClustering, _plan
from skcdc.exceptions import DivergenceError, TrainingStoppedWarning
from skcdc.networks import VectorCDCNetwork

# One phase (no self-labelling), so that epochs and training passes count the
# CDC phase alone.
FAST = {"epochs": 10, "batch_size": 64, "n_init": 1, "self_labelling_epochs": 0, "random_state": 0}
# 240 samples in batches of 64 (the last partial batch dropped): 3 batches, so
# 6 training forward passes (two views each) per epoch.
CALLS_PER_EPOCH = 6


class FaultyNetwork(nn.Module):
    """The default network, with a fault injected at a given training forward pass."""

    def __init__(self, in_features, n_clusters, instance_dim=128, fail_at=None, fault="nan"):
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
    # Without the k-means floor, which a stopped fit skips and a finished
    # one runs: the tests compare the weights training left.
    return CDCClustering(
        3,
        network=FaultyNetwork,
        network_params={"fail_at": fail_at, "fault": fault},
        **{**FAST, "kmeans_floor": False, **params},
    )



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
    model.set_params(network_params={"fail_at": 1, "fault": "oom"})
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


@pytest.mark.parametrize("fail_in_epoch, refined", [(1, False), (2, True)])
def test_interrupt_in_the_refinement_stage_keeps_what_was_trained(
    monkeypatch, fail_in_epoch, refined
):
    """Image mode's second stage, interrupted: before its first epoch ends the
    end-to-end stage's network stands; later, the refinement's last epoch."""
    images = np.random.default_rng(0).integers(0, 256, (240, 8, 8), dtype=np.uint8)
    refinement = _plan._refinement

    def faulty_refinement(*args):
        fail_at = (fail_in_epoch - 1) * CALLS_PER_EPOCH + 2
        params = {"fail_at": fail_at, "fault": "interrupt"}
        return replace(refinement(*args), network=FaultyNetwork, network_params=params)

    monkeypatch.setattr(_plan, "_refinement", faulty_refinement)
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


def test_a_batch_without_anything_to_learn_makes_no_step():
    # Self-labelling with a threshold no prediction reaches: the weights and
    # the optimiser's state stay exactly as the CDC phase left them.
    from skcdc.loss import SelfLabelLoss
    from skcdc.training.engine import Engine, Phase

    torch.manual_seed(0)
    network = VectorCDCNetwork(4, 3, instance_dim=8, hidden_dim=16)
    data = torch.randn(64, 4)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    engine = Engine(
        network,
        [Phase("self-labelling", SelfLabelLoss(threshold=1.01), 2)],
        lambda index, generator: (data[index], data[index]),
        torch.optim.AdamW(network.parameters(), lr=0.1),
        sampler=range(64),
        batch_size=16,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
        n_clusters=3,
    ).fit()
    after = network.state_dict()
    assert engine.epoch == 2
    assert all(torch.equal(before[k], after[k]) for k in before if "running" not in k and "num_batches" not in k)


def test_the_balance_window_is_part_of_the_state_a_resumed_run_continues_from():
    # 40 clusters and 32 views a step: the running marginal carries across
    # steps, so a resume that lost it would train differently.
    from skcdc.loss import CDCLoss
    from skcdc.training.engine import Engine, Phase

    data = torch.randn(96, 6, generator=torch.Generator().manual_seed(0))

    def engine(epochs):
        torch.manual_seed(0)
        network = VectorCDCNetwork(6, 40, instance_dim=8, hidden_dim=16)
        loss = CDCLoss(tau_c=0.2, tau_z=0.2, equipartition="entropy", balance_window=320)
        return Engine(
            network,
            [Phase("cdc", loss, epochs)],
            lambda index, generator: (data[index], data[index] + 0.01),
            torch.optim.AdamW(network.parameters(), lr=1e-2),
            sampler=torch.utils.data.RandomSampler(
                range(96), generator=torch.Generator().manual_seed(1)
            ),
            batch_size=16,
            device=torch.device("cpu"),
            generator=torch.Generator().manual_seed(2),
            n_clusters=40,
        )

    uninterrupted = engine(3).fit()
    first = engine(3)
    first.epochs = 1
    first.phases[0].epochs = 1
    state = first.fit().state_dict()
    assert state["criteria"]["cdc"]["marginals"][0].shape == (40,)
    resumed = engine(3)
    resumed.load_state_dict(state)
    resumed.fit()
    for name, value in uninterrupted.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[name], value)
