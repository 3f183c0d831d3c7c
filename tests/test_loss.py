"""Properties of the CDC loss, not just its shapes."""

import math

import pytest
import torch
import torch.nn.functional as F

from skcdc.loss import (
    CDCLoss,
    joint_similarity,
    joint_similarity_nt_xent,
    marginal_entropy,
    sinkhorn,
)


def _random_batch(n=32, k=4, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * 3
    z = F.normalize(torch.randn(n, d, generator=g), dim=1)
    return logits, z


def test_sinkhorn_marginals_are_equipartition():
    # Skewed scores: most rows prefer cluster 0, yet the columns must balance.
    logits, _ = _random_batch(n=60, k=4)
    logits[:, 0] += 4.0
    q = sinkhorn(logits / 0.5, n_iter=200)
    torch.testing.assert_close(q.sum(1), torch.ones(60))
    torch.testing.assert_close(q.sum(0), torch.full((4,), 60 / 4), atol=1e-3, rtol=0)
    assert softmax_column_spread(logits) > 5  # the raw softmax is far from balanced


def softmax_column_spread(logits):
    sizes = logits.softmax(1).sum(0)
    return (sizes.max() - sizes.min()).item()


def test_sinkhorn_few_iterations_rows_exact_and_columns_closer():
    logits, _ = _random_batch(n=64, k=8)
    logits[:, 0] += 3.0
    q = sinkhorn(logits, n_iter=3)
    torch.testing.assert_close(q.sum(1), torch.ones(64))
    target = torch.full((8,), 8.0)
    assert (q.sum(0) - target).abs().max() < (logits.softmax(1).sum(0) - target).abs().max()


def test_sinkhorn_is_differentiable():
    logits, _ = _random_batch()
    logits.requires_grad_(True)
    sinkhorn(logits, n_iter=3)[:, 0].sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("tau_c", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("weighting, sign", [("hard", 1.0), ("debiased", -1.0)])
def test_same_cluster_negative_weight_ratio(tau_c, weighting, sign):
    """The effective weight of a same-cluster negative is exp(+-1/tau_c) times
    that of another, read off the gradient of the anchor's loss.

    The gradient of anchor 0's NT-Xent term with respect to its logit for a
    negative j is that negative's weight pi_0j in the softmax of the
    denominator. Negatives 1 and 2 have the same instance vector; only their
    cluster differs (1 shares the anchor's cluster, 2 does not).
    """
    one_hot = torch.eye(2)
    # Views 0-2 are first views, 3-5 the second views of the same samples.
    c = torch.stack([one_hot[0], one_hot[0], one_hot[1], one_hot[0], one_hot[1], one_hot[0]])
    base = F.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    z = torch.stack([base[0], base[1], base[1], base[2], base[3], base[3]])
    logits = joint_similarity(
        c, z, tau_c=tau_c, tau_z=0.5, negative_weighting=weighting
    ).requires_grad_(True)
    F.cross_entropy(logits[:1], torch.tensor([3])).backward()
    weight = logits.grad[0]
    assert torch.isclose(weight[1] / weight[2], torch.tensor(math.exp(sign / tau_c)), rtol=1e-5)
    assert weight[0] == 0  # an anchor is not its own negative
    assert weight[3] < 0  # the positive is pulled, not pushed


def test_identical_views_have_lower_loss_than_unrelated_views():
    logits, z = _random_batch(n=64, k=5, d=16)
    other_logits, other_z = _random_batch(n=64, k=5, d=16, seed=7)
    for weighting in ("hard", "debiased"):
        for equipartition in ("sinkhorn", "entropy"):
            loss = CDCLoss(
                tau_c=0.5, tau_z=0.2, equipartition=equipartition, negative_weighting=weighting
            )
            same = loss(logits, z, logits, z).contrastive
            unrelated = loss(logits, z, other_logits, other_z).contrastive
            assert same < unrelated, (weighting, equipartition)


def test_marginal_entropy_is_log_k_when_balanced_and_zero_when_collapsed():
    k = 6
    balanced = torch.eye(k).repeat(5, 1)
    collapsed = torch.zeros(30, k)
    collapsed[:, 2] = 1
    assert math.isclose(marginal_entropy(balanced).item(), math.log(k), rel_tol=1e-6)
    assert marginal_entropy(collapsed).item() == pytest.approx(0.0, abs=1e-6)


def test_entropy_term_rewards_balance():
    _, z = _random_batch(n=40, k=4)
    collapsed = torch.zeros(40, 4)
    collapsed[:, 0] = 10.0
    balanced = torch.eye(4).repeat(10, 1) * 10.0
    loss = CDCLoss(tau_c=0.5, tau_z=0.2, equipartition="entropy", entropy_weight=1.0)
    assert loss(balanced, z, balanced, z).balance < loss(collapsed, z, collapsed, z).balance


def test_anchor_term_pulls_softmax_towards_balanced_assignment():
    logits, z = _random_batch(n=48, k=4)
    logits[:, 0] += 5.0  # argmax nearly always cluster 0
    logits.requires_grad_(True)
    out = CDCLoss(
        tau_c=0.5, tau_z=0.2, equipartition="sinkhorn", entropy_weight=0.0, anchor_weight=1.0
    )(logits, z, logits, z)
    out.anchor.backward()
    # Descending the anchor term lowers the over-used cluster's logits.
    assert logits.grad[:, 0].mean() > 0


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="equipartition"):
        CDCLoss(tau_c=1, tau_z=1, equipartition="uniform")
    c = torch.eye(2)
    with pytest.raises(ValueError, match="negative_weighting"):
        joint_similarity_nt_xent(c, c, c, c, tau_c=1, tau_z=1, negative_weighting="soft")


def test_self_label_loss_uses_only_confident_samples_with_balanced_weights():
    from skcdc.loss import SelfLabelLoss

    teacher = torch.tensor([[9.0, 0.0], [9.0, 0.0], [9.0, 0.0], [0.0, 9.0], [0.1, 0.0]])
    student = torch.zeros(5, 2, requires_grad=True)
    z = F.normalize(torch.ones(5, 3), dim=1)
    out = SelfLabelLoss(threshold=0.99)(teacher, z, student, z)
    out.loss.backward()
    # The unconfident last sample gives no gradient.
    assert student.grad[4].abs().sum() == 0
    # Class 1 has one confident sample against three of class 0, yet the same
    # total pull: inverse-frequency weights balance the classes.
    assert torch.isclose(student.grad[3, 1] * 1, student.grad[:3, 0].sum(), rtol=1e-5)
    nothing = SelfLabelLoss(threshold=1.0)(teacher * 0, z, student, z).loss
    # No confident sample: no gradient, so the engine makes no step.
    assert nothing == 0 and not nothing.requires_grad


def test_a_window_no_longer_than_the_batch_is_the_batch_itself():
    torch.manual_seed(0)
    logits = torch.randn(2, 8, 5)
    z = F.normalize(torch.randn(2, 8, 4), dim=-1)
    batch = CDCLoss(tau_c=0.5, tau_z=0.5, equipartition="entropy")
    window = CDCLoss(tau_c=0.5, tau_z=0.5, equipartition="entropy", balance_window=16)
    assert torch.equal(batch(logits[0], z[0], logits[1], z[1]).loss, window(logits[0], z[0], logits[1], z[1]).loss)
    assert window.state_dict() == {"marginals": {}, "queues": {}}


def test_the_entropy_window_balances_the_running_marginal_not_the_batch():
    # Each batch shows only 2 of 20 clusters; over a window of 160 samples the
    # running marginal approaches what the batches show together.
    loss = CDCLoss(tau_c=0.5, tau_z=0.5, equipartition="entropy", balance_window=160)
    z = F.normalize(torch.ones(2, 3), dim=1)
    for step in range(400):
        logits = torch.full((2, 20), -20.0)
        logits[:, (2 * step) % 20] = 20.0
        logits[:, (2 * step + 1) % 20] = 20.0
        logits[1] = logits[1].roll(1)
        out = loss(logits, z, logits, z)
    marginal = loss.state_dict()["marginals"][0]
    assert marginal.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert marginal.min() > 0.5 / 20 and marginal.max() < 2 / 20
    # The balance term reads the entropy of the running marginal: near log K,
    # where one batch alone has the entropy of 2 clusters.
    assert -out.balance.item() == pytest.approx(math.log(20), abs=0.2)
    # Its gradient favours the clusters the window saw least.
    logits = torch.zeros(2, 20, requires_grad=True)
    loss._marginals[0] = torch.linspace(1, 3, 20) / torch.linspace(1, 3, 20).sum()
    loss(logits, z, logits.detach(), z).balance.backward()
    assert logits.grad[0, 0] < logits.grad[0, -1]


def test_the_sinkhorn_queue_balances_a_batch_with_recent_logits():
    loss = CDCLoss(tau_c=0.5, tau_z=0.5, equipartition="sinkhorn", balance_window=12)
    z = F.normalize(torch.ones(4, 3), dim=1)
    first = torch.tensor([[5.0, 0.0]] * 4)  # every sample prefers cluster 0
    loss(first, z, first, z)
    queue = loss.state_dict()["queues"][0]
    assert queue.shape == (4, 2)  # one batch so far
    for _ in range(3):
        loss(first, z, first, z)
    assert loss.state_dict()["queues"][0].shape == (8, 2)  # the window less one batch
    # Alone, a batch that prefers cluster 0 is split in half; with a queue
    # that filled cluster 0, it goes to cluster 1.
    alone = CDCLoss(tau_c=0.5, tau_z=0.5, equipartition="sinkhorn").categorical_part(first)
    assert alone[:, 0].sum().item() == pytest.approx(2.0, abs=1e-3)
    fresh = torch.tensor([[0.0, 0.0]] * 4)
    assert loss.categorical_part(fresh)[:, 1].mean() > 0.6
