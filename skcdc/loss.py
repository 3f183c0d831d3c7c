"""The CDC loss: equipartitioned categorical part, instance part, joint NT-Xent.

Everything here is a pure function of tensors: it works on whatever batch it is
handed (a local batch, a batch gathered across processes, a batch plus a queue),
which is what lets the training engine change how batches are formed without
touching the loss.

Which parts are the paper's and which are this project's choices is stated in
``docs/method.md``. In short: the split into a categorical part under an
equipartition constraint and an L2-normalised instance part, and one
contrastive loss over both, are the paper's (arXiv 2306.05439, abstract); the
exact joint similarity, the two readings of its negative weighting and the
anchoring term are a reconstruction.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "EQUIPARTITIONS",
    "NEGATIVE_WEIGHTINGS",
    "CDCLoss",
    "LossOutput",
    "SelfLabelLoss",
    "joint_similarity",
    "joint_similarity_nt_xent",
    "marginal_entropy",
    "sinkhorn",
]

EQUIPARTITIONS = ("sinkhorn", "entropy", "none")
NEGATIVE_WEIGHTINGS = ("hard", "debiased")


def sinkhorn(scores: torch.Tensor, n_iter: int = 3) -> torch.Tensor:
    """Balanced soft assignment of a batch by log-domain Sinkhorn-Knopp.

    Solves the entropy-regularised transport between the ``B`` rows (samples,
    mass 1 each) and the ``K`` columns (clusters, mass ``B / K`` each), so that
    the batch is split into clusters of equal size.

    Parameters
    ----------
    scores : Tensor of shape (B, K)
        Logits already divided by the Sinkhorn epsilon (smaller epsilon, larger
        scores, harder assignment).
    n_iter : int, default=3
        Alternating normalisations. Each one is differentiable, so gradients
        flow through the assignment unless the caller detaches it.

    Returns
    -------
    Tensor of shape (B, K)
        Rows sum to 1 exactly; columns sum to ``B / K`` up to the convergence of
        ``n_iter`` iterations.
    """
    n_rows, n_cols = scores.shape
    # Work in float32 at least: under autocast the logits may be half precision
    # and the log-sum-exps below lose too much in it.
    log_q = scores.float()
    log_row_mass = -math.log(n_rows)
    log_col_mass = -math.log(n_cols)
    for _ in range(n_iter):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) + log_col_mass
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) + log_row_mass
    return torch.exp(log_q + math.log(n_rows))


def marginal_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the mean assignment of a batch; ``log K`` when balanced."""
    mean = probabilities.mean(dim=0)
    return -(mean * torch.log(mean.clamp_min(1e-12))).sum()


def joint_similarity(
    c: torch.Tensor,
    z: torch.Tensor,
    *,
    tau_c: float,
    tau_z: float,
    negative_weighting: str = "hard",
) -> torch.Tensor:
    """Joint similarity logits of the 2B views of a batch, views ``i`` and
    ``i + B`` being the two views of sample ``i``.

    For views ``i`` and ``j``::

        s_ij = sign * (c_i . c_j) / tau_c + (z_i . z_j) / tau_z

    The categorical term multiplies a negative's instance term
    ``exp(z_i . z_j / tau_z)`` by ``w_ij = exp(sign * c_i . c_j / tau_c)``:

    - ``"hard"`` (``sign = +1`` for every pair, the literal reading of the
      paper): a negative in the anchor's cluster weighs up to
      ``exp(1 / tau_c)`` times more than one in another cluster.
    - ``"debiased"`` (``sign = -1`` for negatives, ``+1`` for the positive):
      same-cluster negatives, likely false negatives, weigh up to
      ``exp(1 / tau_c)`` times *less*, so the gradient focuses on similar
      samples of other clusters and pulls similar samples into one cluster.

    Parameters
    ----------
    c : Tensor of shape (2B, K)
        Categorical parts (points of the simplex), first views then second.
    z : Tensor of shape (2B, d)
        L2-normalised instance parts, in the same order.
    tau_c, tau_z : float
        Temperatures of the categorical and instance terms.
    negative_weighting : {"hard", "debiased"}, default="hard"

    Returns
    -------
    Tensor of shape (2B, 2B)
        ``s_ij``, with ``-inf`` on the diagonal: a view is never its own
        negative.
    """
    if negative_weighting not in NEGATIVE_WEIGHTINGS:
        raise ValueError(
            f"negative_weighting must be one of {NEGATIVE_WEIGHTINGS}, got {negative_weighting!r}."
        )
    c = c.float()
    z = z.float()
    categorical = (c @ c.T) / tau_c
    instance = (z @ z.T) / tau_z
    positive_mask, self_mask = _masks(c.shape[0], c.device)
    if negative_weighting == "hard":
        logits = categorical + instance
    else:
        logits = torch.where(positive_mask, categorical, -categorical) + instance
    return logits.masked_fill(self_mask, float("-inf"))


@functools.lru_cache(maxsize=8)
def _masks(n_views: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each view's positive is, and the diagonal, as (2B, 2B) masks: built
    once per batch size, not at every step."""
    positive = torch.zeros(n_views, n_views, dtype=torch.bool, device=device)
    positive[torch.arange(n_views, device=device), _positive_index(n_views // 2, device)] = True
    return positive, torch.eye(n_views, dtype=torch.bool, device=device)


def _positive_index(n: int, device: torch.device) -> torch.Tensor:
    """Column of each view's positive among the 2n views."""
    return torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(device)


def joint_similarity_nt_xent(
    c_a: torch.Tensor,
    z_a: torch.Tensor,
    c_b: torch.Tensor,
    z_b: torch.Tensor,
    *,
    tau_c: float,
    tau_z: float,
    negative_weighting: str = "hard",
) -> torch.Tensor:
    """NT-Xent over the 2B views of a batch with the CDC joint similarity.

    ``L = mean_i -log(exp(s_i,i+) / sum_{j != i} exp(s_ij))``, the positive
    ``i+`` being the other view of sample ``i`` and ``s`` the
    :func:`joint_similarity`.

    Parameters
    ----------
    c_a, c_b : Tensor of shape (B, K)
        Categorical parts of the two views.
    z_a, z_b : Tensor of shape (B, d)
        L2-normalised instance parts of the two views.
    tau_c, tau_z : float
        Temperatures.
    negative_weighting : {"hard", "debiased"}, default="hard"

    Returns
    -------
    Tensor of shape ()
        The mean loss over the 2B anchors.
    """
    logits = joint_similarity(
        torch.cat([c_a, c_b]),
        torch.cat([z_a, z_b]),
        tau_c=tau_c,
        tau_z=tau_z,
        negative_weighting=negative_weighting,
    )
    return F.cross_entropy(logits, _positive_index(c_a.shape[0], logits.device))


@dataclass
class LossOutput:
    """What one evaluation of :class:`CDCLoss` returns."""

    loss: torch.Tensor
    contrastive: torch.Tensor
    anchor: torch.Tensor
    balance: torch.Tensor
    per_head: torch.Tensor

    @classmethod
    def of(cls, loss: torch.Tensor) -> LossOutput:
        """A loss that has no contrastive, anchor or balance part."""
        zero = loss.detach() * 0.0
        return cls(loss, zero, zero, zero, per_head=loss.detach()[None])


class _HeadwiseLoss:
    """A loss defined on one categorical head, applied to every head.

    Subclasses define ``_single_head``.
    The logits given to ``__call__`` are (B, K), or (B, H, K) for a network
    with H categorical heads: each head then gets its own loss over the shared
    instance part, the mean over heads is optimised, and ``per_head`` keeps
    each head's loss so that the best head can be chosen after training.
    ``index`` holds the batch's sample indices, for losses with per-sample
    targets.
    """

    def __call__(
        self,
        logits_a: torch.Tensor,
        z_a: torch.Tensor,
        logits_b: torch.Tensor,
        z_b: torch.Tensor,
        index: torch.Tensor | None = None,
    ) -> LossOutput:
        if logits_a.dim() == 2:
            return self._single_head(logits_a, z_a, logits_b, z_b, index, 0)
        heads = [
            self._single_head(logits_a[:, h], z_a, logits_b[:, h], z_b, index, h)
            for h in range(logits_a.shape[1])
        ]
        means = {f: torch.stack([getattr(o, f) for o in heads]).mean() for f in _SCALARS}
        return LossOutput(**means, per_head=torch.stack([o.loss for o in heads]).detach())

    def _single_head(
        self,
        logits_a: torch.Tensor,
        z_a: torch.Tensor,
        logits_b: torch.Tensor,
        z_b: torch.Tensor,
        index: torch.Tensor | None,
        head: int,
    ) -> LossOutput:
        raise NotImplementedError


class CDCLoss(_HeadwiseLoss):
    """The full CDC training objective on a batch of paired views.

    Parameters
    ----------
    tau_c : float
        Temperature of the categorical part of the joint similarity.
    tau_z : float
        Temperature of the instance part.
    equipartition : {"sinkhorn", "entropy", "none"}
        How the equal-size constraint enters. ``"sinkhorn"``: the categorical
        part of a view is the differentiable log-domain Sinkhorn assignment of
        its batch. ``"entropy"``: it is ``softmax(logits)`` and
        ``entropy_weight`` times the entropy of the mean assignment is
        subtracted from the loss. ``"none"``: plain softmax, no constraint.
    sinkhorn_epsilon : float
        Entropic regularisation of Sinkhorn; lower means harder assignments.
    sinkhorn_iterations : int
        Sinkhorn iterations per batch.
    entropy_weight : float
        Weight of the marginal-entropy term; with ``"sinkhorn"`` it acts on the
        softmax that prediction reads, to keep its argmax balanced too.
    negative_weighting : {"hard", "debiased"}
        See :func:`joint_similarity_nt_xent`.
    anchor_weight : float
        Weight of a cross-entropy that pulls ``softmax(logits)`` of each view
        towards the detached balanced assignment of the *other* view (swapped
        prediction). Without it, the balance reached in training does not
        carry over to ``argmax(logits)`` at prediction time.
    balance_window : int, default=0
        Samples over which equal cluster sizes are asked for. Up to the
        views of one batch, the batch alone (each step balances what it
        sees). Beyond, so that a window holds several samples of every
        cluster when there are more clusters than a batch can show:
        ``"entropy"`` reads the entropy of a running estimate of the cluster
        marginal (an exponential moving average over about that many
        samples, as TEMI does), and ``"sinkhorn"`` balances each batch
        together with a queue of the logits of recent batches (as SwAV's
        queue does). The window's state is part of :meth:`state_dict`.
    """

    def __init__(
        self,
        *,
        tau_c: float,
        tau_z: float,
        equipartition: str = "sinkhorn",
        sinkhorn_epsilon: float = 0.5,
        sinkhorn_iterations: int = 3,
        entropy_weight: float = 1.0,
        negative_weighting: str = "hard",
        anchor_weight: float = 1.0,
        balance_window: int = 0,
    ) -> None:
        if equipartition not in EQUIPARTITIONS:
            raise ValueError(
                f"equipartition must be one of {EQUIPARTITIONS}, got {equipartition!r}."
            )
        self.tau_c = tau_c
        self.tau_z = tau_z
        self.equipartition = equipartition
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.entropy_weight = entropy_weight
        self.negative_weighting = negative_weighting
        self.anchor_weight = anchor_weight
        self.balance_window = balance_window
        # Per head: the running cluster marginal (K,) and the queue of recent
        # logits (Q, K), filled as training goes.
        self._marginals: dict[int, torch.Tensor] = {}
        self._queues: dict[int, torch.Tensor] = {}

    def state_dict(self) -> dict:
        """The balance window's state (empty while the batch is the window)."""
        return {"marginals": dict(self._marginals), "queues": dict(self._queues)}

    def load_state_dict(self, state: dict) -> None:
        self._marginals = dict(state.get("marginals", {}))
        self._queues = dict(state.get("queues", {}))

    def categorical_part(self, logits: torch.Tensor, head: int = 0) -> torch.Tensor:
        """The categorical part of a batch of views under the constraint."""
        logits = logits.float()
        if self.equipartition != "sinkhorn":
            return logits.softmax(dim=1)
        scores = logits / self.sinkhorn_epsilon
        queue = self._queues.get(head)
        if queue is None:
            return sinkhorn(scores, self.sinkhorn_iterations)
        # The queue's rows share the balance but pass no gradient.
        both = torch.cat([scores, queue.to(scores.device) / self.sinkhorn_epsilon])
        return sinkhorn(both, self.sinkhorn_iterations)[: scores.shape[0]]

    def _single_head(
        self,
        logits_a: torch.Tensor,
        z_a: torch.Tensor,
        logits_b: torch.Tensor,
        z_b: torch.Tensor,
        index: torch.Tensor | None,
        head: int,
    ) -> LossOutput:
        c_a = self.categorical_part(logits_a, head)
        c_b = self.categorical_part(logits_b, head)
        contrastive = joint_similarity_nt_xent(
            c_a,
            z_a,
            c_b,
            z_b,
            tau_c=self.tau_c,
            tau_z=self.tau_z,
            negative_weighting=self.negative_weighting,
        )
        log_p_a = logits_a.float().log_softmax(dim=1)
        log_p_b = logits_b.float().log_softmax(dim=1)
        zero = contrastive.new_zeros(())
        anchor = zero
        if self.anchor_weight > 0 and self.equipartition == "sinkhorn":
            anchor = -0.5 * (
                (c_b.detach() * log_p_a).sum(1).mean() + (c_a.detach() * log_p_b).sum(1).mean()
            )
        balance = zero
        if self.entropy_weight > 0 and self.equipartition != "none":
            balance = self._balance(torch.cat([log_p_a, log_p_b]).exp(), head)
        if self.equipartition == "sinkhorn":
            self._enqueue(logits_a, head)
        loss = contrastive + self.anchor_weight * anchor + self.entropy_weight * balance
        return LossOutput(
            loss=loss,
            contrastive=contrastive,
            anchor=anchor,
            balance=balance,
            per_head=loss.detach()[None],
        )

    def _balance(self, p: torch.Tensor, head: int) -> torch.Tensor:
        """Minus the entropy of the cluster marginal: of this batch, or of the
        window's running estimate when the window is longer than the batch."""
        if self.balance_window <= p.shape[0]:
            return -marginal_entropy(p)
        mean = p.mean(dim=0)
        momentum = 1.0 - p.shape[0] / self.balance_window
        with torch.no_grad():
            previous = self._marginals.get(head)
            running = mean.detach() if previous is None else (
                momentum * previous.to(mean.device) + (1 - momentum) * mean.detach()
            )
            self._marginals[head] = running
        # The gradient of -H(m) with respect to the marginal m is log m + 1;
        # the window's estimate takes m's place, and the constant drops out
        # because every row of p sums to 1. Its value is -H of the estimate.
        log_running = running.clamp_min(1e-12).log()
        return (mean * log_running).sum() - ((mean - running) * log_running).sum().detach()

    def _enqueue(self, logits: torch.Tensor, head: int) -> None:
        """Keep the most recent logits, up to the window less one batch."""
        length = self.balance_window - logits.shape[0]
        if length <= 0:
            return
        fresh = logits.detach().float()
        queue = self._queues.get(head)
        queue = fresh if queue is None else torch.cat([fresh, queue.to(fresh.device)])
        self._queues[head] = queue[:length]


_SCALARS = ("loss", "contrastive", "anchor", "balance")


class SelfLabelLoss(_HeadwiseLoss):
    """Self-labelling on confident samples, after the CDC phase (SCAN's last step).

    The prediction of the first view, where it is confident, becomes the
    target of the second view; both must be views of the same sample (the
    estimator gives this phase such views: a neighbour of another class would
    learn the wrong label). Classes are weighted by the inverse of their
    frequency among the confident samples of the batch, so that the largest
    cluster does not absorb the others. Only the categorical head learns from
    it; the instance part is left as the CDC phase made it.

    Parameters
    ----------
    threshold : float
        Minimum ``max softmax`` for a sample to be used as a target.
    """

    def __init__(self, threshold: float = 0.99) -> None:
        self.threshold = threshold

    def _single_head(
        self,
        logits_a: torch.Tensor,
        z_a: torch.Tensor,
        logits_b: torch.Tensor,
        z_b: torch.Tensor,
        index: torch.Tensor | None,
        head: int,
    ) -> LossOutput:
        with torch.no_grad():
            confidence, target = logits_a.float().softmax(1).max(1)
            confident = confidence >= self.threshold
        if not confident.any():
            # No target: a loss without a gradient, on which the engine
            # makes no step (a step on zero gradients would still move the
            # weights by the optimiser's momentum and weight decay).
            loss = logits_b.detach().float().sum() * 0.0
        else:
            counts = torch.bincount(target[confident], minlength=logits_b.shape[1]).float()
            weight = torch.where(counts > 0, 1.0 / counts.clamp_min(1), torch.zeros_like(counts))
            weight = weight / weight[counts > 0].mean()
            loss = F.cross_entropy(logits_b[confident].float(), target[confident], weight=weight)
        return LossOutput.of(loss)
