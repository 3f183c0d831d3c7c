"""Empty-cluster relocation: the cut it makes and its place in the training loop."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from torch.utils.data import RandomSampler

from skcdc.loss import CDCLoss
from skcdc.networks import CDCHeads, VectorCDCNetwork
from skcdc.training.engine import Engine, Phase
from skcdc.training.relocation import (
    EmptyClusterRelocation,
    _relocate,
    bisect,
    split_row,
    two_means_split,
)
from skcdc.views import NeighbourViews


def test_split_row_cuts_a_merged_pair_of_groups_at_the_gap():
    g = torch.Generator().manual_seed(0)
    # Rows 0 and 1 of the layer; row 0 wins both groups, row 1 wins nothing.
    group_a = torch.randn(100, 6, generator=g) * 0.3 + torch.tensor([4.0, 0, 0, 0, 0, 0])
    group_b = torch.randn(60, 6, generator=g) * 0.3 - torch.tensor([4.0, 0, 0, 0, 0, 0])
    h = torch.cat([group_a, group_b])
    weight = torch.zeros(3, 6)
    bias = torch.tensor([5.0, -5.0, 0.0])
    kept = (weight[2].clone(), bias[2].clone())
    assert ((h @ weight.T + bias).argmax(1) == 0).all()

    split_row(weight, bias, bisect(h), source=0, target=1)

    labels = (h @ weight.T + bias).argmax(1)
    side_a, side_b = labels[:100], labels[100:]
    # The cut follows the gap between the groups: each lands whole on one side.
    assert len(side_a.unique()) == 1 and len(side_b.unique()) == 1
    assert set(torch.cat([side_a[:1], side_b[:1]]).tolist()) == {0, 1}
    torch.testing.assert_close((weight[2], bias[2]), kept)


def _engine_with_dead_cluster(relocation, epochs=2):
    X, _ = make_blobs(400, n_features=8, centers=4, cluster_std=0.5, random_state=0)
    data = torch.as_tensor(X, dtype=torch.float32)
    torch.manual_seed(0)
    network = VectorCDCNetwork(8, 4, instance_dim=16, hidden_dim=32)
    with torch.no_grad():
        # Cluster 3 starts far out of reach: no sample will choose it.
        network.heads.categorical.bias[3] = -100.0
    loss = CDCLoss(tau_c=0.2, tau_z=0.2, equipartition="entropy", negative_weighting="debiased")
    engine = Engine(
        network,
        [Phase("cdc", loss, epochs)],
        NeighbourViews(data, 5),
        torch.optim.AdamW(network.parameters(), lr=1e-3),
        sampler=RandomSampler(range(400), generator=torch.Generator().manual_seed(0)),
        batch_size=100,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(1),
        n_clusters=4,
        callbacks=[relocation] if relocation else [],
    )
    return engine.fit(), data


def test_engine_relocates_a_cluster_no_sample_chose():
    engine, data = _engine_with_dead_cluster(EmptyClusterRelocation(patience=4, stop_before=0))
    assert engine.logs[0]["n_empty_clusters"] >= 1
    assert engine.logs[0]["n_relocated"] == engine.logs[0]["n_empty_clusters"]
    with torch.no_grad():
        labels = engine.network(data)[0].argmax(1)
    assert (labels == 3).sum() > 0
    # The hook is gone after training: inference records nothing.
    assert not engine.network.heads._forward_hooks


def test_without_relocation_the_dead_cluster_stays_dead():
    engine, data = _engine_with_dead_cluster(None)
    with torch.no_grad():
        labels = engine.network(data)[0].argmax(1)
    assert (labels == 3).sum() == 0
    assert "n_relocated" not in engine.logs[0]


def test_no_relocation_in_the_last_epochs():
    engine, _ = _engine_with_dead_cluster(EmptyClusterRelocation(patience=4, stop_before=2))
    assert [log["n_relocated"] for log in engine.logs] == [0, 0]
    assert np.all([log["n_empty_clusters"] >= 1 for log in engine.logs])


def test_a_cluster_is_relocated_only_after_patience_steps_empty():
    relocation = EmptyClusterRelocation(patience=8, stop_before=0)
    engine, _ = _engine_with_dead_cluster(relocation, epochs=3)
    relocated = [log["n_relocated"] for log in engine.logs]
    assert relocated[0] == 0 and relocated[1] >= 1
    # The count of empty epochs is part of the engine's state: it survives a checkpoint.
    state = engine.state_dict()["callbacks"]["EmptyClusterRelocation"]
    assert state["empty_epochs"].shape == (1, 4)


def test_two_means_split_falls_in_the_gap_of_unequal_groups():
    values = torch.cat([torch.linspace(0.0, 1.0, 90), torch.linspace(5.0, 5.5, 10)])
    threshold, gain = two_means_split(values[torch.randperm(100)])
    assert 1.0 < threshold < 5.0
    # The gain is the between-group sum of squares: 90 * 10 / 100 * (5.25 - 0.5)^2.
    assert gain == pytest.approx(9 * 4.75**2, rel=1e-6)


def test_bisect_gains_more_on_a_merged_pair_than_on_a_larger_single_group():
    g = torch.Generator().manual_seed(0)
    single = torch.randn(1000, 8, generator=g)
    offset = torch.zeros(8)
    offset[0] = 6.0
    pair = torch.cat([torch.randn(100, 8, generator=g), torch.randn(178, 8, generator=g) + offset])
    # The single group has the larger inertia, the pair the larger gain.
    assert (single - single.mean(0)).square().sum() > (pair - pair.mean(0)).square().sum()
    assert bisect(pair).gain > bisect(single).gain


def test_several_dead_clusters_each_split_another_merged_pair():
    # Eight groups at the corners of a cube, merged in pairs into the four
    # live rows; the four dead rows must take one group each, which needs
    # each relocation to see the labels the previous ones left.
    g = torch.Generator().manual_seed(0)
    corners = torch.tensor([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)]) * 8.0
    centers = torch.cat([corners, torch.zeros(8, 3)], dim=1)
    groups = torch.arange(8).repeat_interleave(50)
    h = centers[groups] + 0.5 * torch.randn(400, 6, generator=g)
    heads = CDCHeads(6, 8, instance_dim=4)
    # Row i holds the midpoint of groups 2i and 2i + 1 (nearest-centre logits).
    midpoints = centers.view(4, 2, 6).mean(1)
    with torch.no_grad():
        heads.categorical.weight.zero_()
        heads.categorical.weight[:4] = midpoints
        heads.categorical.bias[:4] = -0.5 * midpoints.square().sum(1)
        heads.categorical.bias[4:] = -100.0
    dead = torch.tensor([[False] * 4 + [True] * 4])

    assert _relocate(heads, h, dead) == 4

    with torch.no_grad():
        labels = heads.categorical(h).argmax(1)
    assert len(labels.unique()) == 8
    # Each group lies whole in one cluster of its own.
    for group in range(8):
        assert len(labels[groups == group].unique()) == 1


def test_nothing_to_cut_in_identical_inputs():
    assert bisect(torch.ones(50, 4)) is None
    assert bisect(torch.ones(1, 4)) is None


def test_head_inputs_are_kept_only_in_epochs_that_may_end_in_a_relocation():
    class Spy(EmptyClusterRelocation):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.kept, self.may = [], []

        def on_epoch_end(self, engine, log):
            self.kept.append(self._buffered)
            super().on_epoch_end(engine, log)
            self.may.append(self._recording)

    # 4 steps per epoch, patience 8: cluster 3, empty from the start, can be
    # dead after epoch 2 at the earliest; a cluster in use cannot be by then.
    spy = Spy(patience=8, stop_before=0)
    _engine_with_dead_cluster(spy, epochs=4)
    assert spy.kept[0] > 0 and spy.may[0]
    assert [kept > 0 for kept in spy.kept[1:]] == spy.may[:-1]


@pytest.mark.parametrize(
    "steps_per_epoch, epoch, allowed",
    [(7, 25, True), (7, 26, False), (3906, 9, True), (3906, 10, False), (250, 6, True), (250, 7, False)],
)
def test_relocation_stops_before_the_last_five_epochs_or_last_1000_steps(steps_per_epoch, epoch, allowed):
    # 30 epochs of 7 steps: quiet for the last 5 epochs; 10 epochs of 3906
    # steps: only the last epoch (1000 steps would do); 250 steps: 4 epochs.
    epochs = 30 if steps_per_epoch == 7 else 10
    engine = SimpleNamespace(epochs=epochs, epoch=epoch, steps_per_epoch=steps_per_epoch)
    assert EmptyClusterRelocation()._may_relocate(engine) == allowed
