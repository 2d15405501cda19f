"""IMPALA loss terms: pure functions from time-major tensors [T, B, ...] to scalar losses.

    total = pg_loss + baseline_cost * baseline_loss + entropy_cost * entropy_loss
    pg_loss       = -sum log pi(a_t|x_t) * A_t              (A_t: V-trace advantages, detached)
    baseline_loss = 0.5 * sum (v_t - V(x_t))^2              (v_t: V-trace targets, detached)
    entropy_loss  = -sum H(pi(.|x_t))                       (minimising it maximises entropy)

Reduction. "sum" adds over T and B: TorchBeast's scale. "mean" divides each sum by the number
of valid entries (mask=True, or T*B without a mask; at least 1, so an all-masked batch gives 0,
not NaN). The default recipe (here and in `beast.config.LossConfig`) is "mean": the loss
scale does not grow with T*B, so a learning rate tuned at one unroll length or batch size
transfers to another. Use "sum" with TorchBeast's learning rates.

Masking. A mask [T, B] (bool, True = count it) removes entries from every term. They are
selected away with `torch.where` rather than multiplied by 0, so a NaN or inf there cannot
reach the loss value. `impala_loss` uses the V-trace `valid` mask: placeholder transitions of
next-step autoreset carry no learning signal.

Log-probabilities come from log_softmax in at least float32 (half-precision logits are upcast).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from beast.algo.vtrace import action_log_probs, log_softmax_f32, vtrace_from_logits

_REDUCTIONS = ("mean", "sum")


def _reduce(per_step: torch.Tensor, mask: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Sum or mean of `per_step` over its entries where `mask` is True."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS} (got {reduction!r})")
    if mask is None:
        total = per_step.sum()
        return total if reduction == "sum" else total / max(per_step.numel(), 1)
    if tuple(mask.shape) != tuple(per_step.shape):
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {tuple(per_step.shape)} "
                         "(one entry per time step and environment)")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (got {mask.dtype})")
    total = torch.where(mask, per_step, 0.0).sum()
    return total if reduction == "sum" else total / mask.sum().clamp(min=1)


def _expect_shape(name: str, tensor: torch.Tensor, expected: tuple[int, ...], like: str) -> None:
    if tuple(tensor.shape) != expected:
        raise ValueError(
            f"{name} has shape {tuple(tensor.shape)}, expected {expected} (like {like})")


def policy_gradient_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, *,
                         mask: torch.Tensor | None = None, reduction: str = "mean",
                         ) -> torch.Tensor:
    """-sum log pi(a_t|x_t) * A_t for logits [T, B, A], int actions [T, B], advantages [T, B].

    The advantages are detached: they are targets of the score-function estimator, and a
    gradient through them would be a different (wrong) objective.
    """
    _expect_shape("advantages", advantages, tuple(logits.shape[:-1]), "the logits' leading axes")
    log_pi_a = action_log_probs(logits, actions)
    return _reduce(-log_pi_a * advantages.detach(), mask, reduction)


def baseline_loss(values: torch.Tensor, targets: torch.Tensor, *, mask: torch.Tensor | None = None,
                  reduction: str = "mean") -> torch.Tensor:
    """0.5 * sum (targets - values)^2 over [T, B]; the targets are detached (regression targets)."""
    _expect_shape("targets", targets, tuple(values.shape), "values")
    return _reduce(0.5 * (targets.detach() - values) ** 2, mask, reduction)


def entropy_loss(logits: torch.Tensor, *, mask: torch.Tensor | None = None,
                 reduction: str = "mean") -> torch.Tensor:
    """-sum H(pi(.|x_t)) = sum_t sum_a pi log pi for logits [T, B, A].

    Negative entropy, so that adding entropy_cost * entropy_loss to a minimised loss is an
    entropy bonus that keeps the policy exploring.
    """
    log_pi = log_softmax_f32(logits)
    return _reduce((log_pi.exp() * log_pi).sum(-1), mask, reduction)


def categorical_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_a p (log p - log q) per position: [..., A] logits -> [...] (e.g. [T, B]).

    Computed from log_softmax in at least float32, so it is >= 0 up to rounding and exactly 0
    for identical logits. Unreduced: callers mask and average as they need.
    """
    _expect_shape("q_logits", q_logits, tuple(p_logits.shape), "p_logits")
    log_p = log_softmax_f32(p_logits)
    log_q = log_softmax_f32(q_logits)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


class ImpalaLoss(NamedTuple):
    total: torch.Tensor
    """Scalar to minimise: pg + baseline_cost * baseline + entropy_cost * entropy."""
    pg_loss: torch.Tensor
    """Scalar policy-gradient term."""
    baseline_loss: torch.Tensor
    """Scalar value term, 0.5 included, before baseline_cost."""
    entropy_loss: torch.Tensor
    """Scalar negative entropy, before entropy_cost."""
    vs: torch.Tensor
    """[T, B] V-trace targets (no grad)."""
    pg_advantages: torch.Tensor
    """[T, B] V-trace advantages (no grad)."""
    log_rhos: torch.Tensor
    """[T, B] log pi(a) - log mu(a) of learner vs behaviour policy (no grad), for diagnostics."""


def impala_loss(
    *,
    learner_logits: torch.Tensor,
    behaviour_logits: torch.Tensor,
    actions: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    valid: torch.Tensor | None = None,
    baseline_cost: float = 0.5,
    entropy_cost: float = 0.01,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    lambda_: float = 1.0,
    reduction: str = "mean",
) -> ImpalaLoss:
    """The IMPALA loss on one unroll.

    learner_logits, behaviour_logits: [T, B, A]; actions (int), values, rewards, discounts,
    valid (bool or None): [T, B]; bootstrap_value: [B]. `discounts` is gamma * (1 - terminated),
    not zeroed for truncation. Gradients reach learner_logits (pg and entropy terms) and values
    (baseline term) only: V-trace runs on detached copies, and behaviour_logits and
    bootstrap_value get no gradient.
    """
    _expect_shape("behaviour_logits", behaviour_logits, tuple(learner_logits.shape),
                       "learner_logits")
    if learner_logits.dim() != 3:
        raise ValueError(
            f"learner_logits has shape {tuple(learner_logits.shape)}, expected [T, B, A]")
    _expect_shape("values", values, tuple(learner_logits.shape[:2]), "learner_logits' [T, B]")
    vtrace = vtrace_from_logits(
        behaviour_logits.detach(), learner_logits.detach(), actions, discounts, rewards,
        values.detach(), bootstrap_value.detach(),
        clip_rho_threshold=clip_rho_threshold, clip_c_threshold=clip_c_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold, lambda_=lambda_, valid=valid)
    pg = policy_gradient_loss(learner_logits, actions, vtrace.pg_advantages, mask=valid,
                              reduction=reduction)
    baseline = baseline_loss(values, vtrace.vs, mask=valid, reduction=reduction)
    entropy = entropy_loss(learner_logits, mask=valid, reduction=reduction)
    total = pg + baseline_cost * baseline + entropy_cost * entropy
    return ImpalaLoss(total=total, pg_loss=pg, baseline_loss=baseline, entropy_loss=entropy,
                      vs=vtrace.vs, pg_advantages=vtrace.pg_advantages, log_rhos=vtrace.log_rhos)


REWARD_CLIPS = ("none", "abs_one", "soft")
SOFT_CLIP_SCALE = 5.0


def clip_rewards(rewards: torch.Tensor, mode: str) -> torch.Tensor:
    """Rewards as the learner sees them; episode returns are reported unclipped.

    abs_one: clamp to [-1, 1] (the DQN/IMPALA Atari recipe: one learning rate for every game).
    soft: 5·tanh(r/5), smooth and bounded by ±5, so small rewards pass nearly unchanged while
    rare large ones cannot dominate a batch. none: as the env gave them.
    """
    if mode == "none":
        return rewards
    if mode == "abs_one":
        return rewards.clamp(-1.0, 1.0)
    if mode == "soft":
        return SOFT_CLIP_SCALE * torch.tanh(rewards / SOFT_CLIP_SCALE)
    raise ValueError(f"reward clip must be one of {REWARD_CLIPS} (got {mode!r})")
