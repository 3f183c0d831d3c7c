"""The training plan: every "auto" resolved from the parameters and the data's shape."""

import pytest
import torch
from torch import nn

from skcdc import CDCClustering
from skcdc._plan import make_plan
from skcdc.networks import ImageCDCNetwork, VectorCDCNetwork

CPU = torch.device("cpu")


def plan_for(
    n_samples, images=False, n_clusters=3, image_shape=(1, 8, 8), streamed=False, **params
):
    return make_plan(
        CDCClustering(n_clusters, **params).get_params(),
        n_samples=n_samples,
        images=images,
        image_shape=image_shape if images else None,
        streamed=streamed,
        device=CPU,
    )


@pytest.mark.parametrize(
    "n_samples, images, params, expected",
    [
        (2000, False, {}, 10),  # 7 steps an epoch: 10 epochs are 70 steps
        (300, False, {}, 50),  # 1 step an epoch: at least 50 steps
        (600, False, {}, 25),  # 2 steps an epoch
        (300, False, {"self_labelling_epochs": 4}, 4),
        (300, True, {}, 0),
    ],
)
def test_self_labelling_ends_vector_runs_only(n_samples, images, params, expected):
    plan = plan_for(n_samples, images, **params)
    assert plan.self_labelling_epochs == expected
    assert plan.epochs_per_run == plan.epochs + expected


@pytest.mark.parametrize("n_samples, epochs", [(2000, 30), (600, 50), (150, 100)])
def test_tiny_data_sets_train_at_least_100_steps(n_samples, epochs):
    assert plan_for(n_samples).epochs == epochs


@pytest.mark.parametrize(
    "n_samples, images, params, n_init, epochs",
    [
        (5000, False, {}, 4, 30),
        (5001, False, {}, 3, 20),
        (5001, False, {"n_init": 1, "epochs": 7}, 1, 7),
        (5000, True, {}, 3, 50),
        (5001, True, {}, 1, 50),  # end-to-end image runs are the longest part of a fit
        (100_000, False, {}, 3, 20),
        (100_001, False, {}, 1, 20),
        (1_000_000, False, {}, 1, 8),  # a ceiling of 8 million samples seen
    ],
)
def test_restarts_and_epochs_by_size(n_samples, images, params, n_init, epochs):
    plan = plan_for(n_samples, images, **params)
    assert (plan.n_init, plan.epochs) == (n_init, epochs)
    assert plan.consensus == (n_init > 1 and not images)


def test_batch_shrinks_to_the_data():
    assert plan_for(30, batch_size=256).batch_size == 30


def test_image_mode_trains_end_to_end_then_refines_on_features():
    plan = plan_for(3000, images=True, epochs=4)
    assert plan.images and plan.network is ImageCDCNetwork
    assert plan.self_labelling_epochs == 0
    assert (plan.loss.equipartition, plan.loss.anchor_weight) == ("sinkhorn", 3.0)
    refinement = plan.refinement
    assert not refinement.images and refinement.network is VectorCDCNetwork
    assert refinement.epochs == 4  # refine_epochs="auto": as many as the first stage
    assert refinement.n_init == 3  # at any size: its runs are short
    assert refinement.self_labelling_epochs == 10
    assert (refinement.loss.equipartition, refinement.loss.anchor_weight) == ("entropy", 1.0)
    assert not refinement.consensus and refinement.refinement is None
    assert plan_for(9000, images=True, n_init=2).refinement.n_init == 2


@pytest.mark.parametrize("params", [{"refine_epochs": 0}, {"network": "custom"}])
def test_no_refinement_when_switched_off_or_for_a_user_network(params):
    if params.get("network") == "custom":

        class Network(nn.Module):
            def __init__(self, in_channels, image_size, n_clusters, instance_dim):
                super().__init__()

        params = {"network": Network}
    assert plan_for(300, images=True, **params).refinement is None


def test_refinement_keeps_the_instance_width_and_heads_only():
    params = {"instance_dim": 16, "n_heads": 2, "backbone": "small_cnn"}
    refinement = plan_for(300, images=True, network_params=params).refinement
    assert dict(refinement.network_params) == {"instance_dim": 16, "n_heads": 2}


@pytest.mark.parametrize("native", [True, False])
def test_bfloat16_where_the_cpu_computes_it_and_never_for_images_on_the_cpu(monkeypatch, native):
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: native, raising=False)
    assert plan_for(300).mixed_precision is native
    assert plan_for(300, mixed_precision=False).mixed_precision is False
    images = plan_for(300, images=True)
    assert images.mixed_precision is False and images.refinement.mixed_precision is False


def test_identity_ignores_the_device_but_not_the_training():
    plan = plan_for(300)
    assert plan.identity() == plan_for(300).identity()
    assert plan.identity() != plan_for(300, tau_c=0.5).identity()


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"network_params": {"hidden": 3}}, ValueError, "hidden_dim"),
        ({"network_params": {"n_clusters": 3}}, ValueError, "may not set"),
        ({"network": nn.Linear}, TypeError, "in_features"),
    ],
)
def test_network_settings_are_checked_against_the_network(params, error, match):
    with pytest.raises(error, match=match):
        plan_for(300, **params)


def test_a_fit_sees_about_as_many_samples_at_a_million_rows_as_at_100000():
    def seen(n):
        plan = plan_for(n, False)
        return n * plan.n_init * plan.epochs_per_run

    assert seen(1_000_000) <= 1.2 * seen(100_000)
    assert plan_for(1_000_000, False).self_labelling_epochs == 2


@pytest.mark.parametrize(
    "n_samples, n_clusters, keep",
    [(10_000, 10, True), (100_000, 100, True), (100_000, 1000, False), (1_000_000, 10, False)],
)
def test_training_outputs_are_kept_when_small_and_the_consensus_needs_them(
    n_samples, n_clusters, keep
):
    plan = plan_for(n_samples, False, n_clusters=n_clusters, n_init=2)
    assert plan.keep_outputs == keep
    assert plan.consensus == keep


@pytest.mark.parametrize("n_clusters, window", [(10, 80), (1000, 8000)])
def test_the_balance_window_holds_eight_samples_per_cluster(n_clusters, window):
    assert plan_for(20_000, False, n_clusters=n_clusters).loss.balance_window == window


@pytest.mark.parametrize(
    "image_shape, streamed, share, epochs",
    [
        ((1, 28, 28), False, 0.5, 30),  # MNIST-like arrays: neighbour positives, 30 epochs
        ((3, 16, 20), False, 0.5, 30),
        ((1, 8, 8), False, 0.0, 50),  # smaller: none, 50 epochs
        ((3, 32, 32), False, 0.0, 50),  # larger: none
        ((1, 28, 28), True, 0.0, 50),  # a dataset or a folder: not searched
    ],
)
def test_auto_neighbour_share_by_image_size_and_source(image_shape, streamed, share, epochs):
    plan = plan_for(3000, True, image_shape=image_shape, streamed=streamed)
    assert (plan.neighbour_share, plan.epochs) == (share, epochs)
    assert plan.refinement.epochs == epochs


def test_explicit_neighbour_share_and_epochs_are_kept():
    assert plan_for(3000, True, image_shape=(1, 8, 8), neighbour_share=0.5).epochs == 30
    plan = plan_for(3000, True, image_shape=(1, 28, 28), neighbour_share=0.0, epochs=7)
    assert (plan.neighbour_share, plan.epochs) == (0.0, 7)


@pytest.mark.parametrize("images", [False, True])
def test_neighbour_positives_of_images_in_the_end_to_end_stage_only(images):
    plan = plan_for(3000, images=images, neighbour_share=0.5)
    assert plan.neighbour_share == (0.5 if images else 0.0)
    if images:
        assert plan.refinement.neighbour_share == 0.0
