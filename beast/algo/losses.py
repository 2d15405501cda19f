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

Truncating the policy-gradient ratio. With ratios truncated at rho_bar_pg, a value error d
(V = V_true + d) adds d * sum_{a: pi(a) > mu(a)} (1 - mu(a)/pi(a)) grad pi(a) to the expected
gradient instead of cancelling out: when the value overestimates (the policy just got worse),
the update pushes pi further from mu in the direction it already moved, a feedback loop that
ends in a deterministic policy whose gradients vanish. With pi ~ mu half the ratios sit just
above 1, so rho_bar_pg = 1 (the paper's) engages that bias on every batch; Beast's default 5
truncates only the rare large ratios. This is one cause of the long-run CartPole collapse,
not the only one: with 5 and Adam's usual eps 1e-5, 30M-step runs still collapsed on some
seeds. The other is the optimiser's scale invariance (beast.config.OptimConfig.epsilon).

Masking. A mask [T, B] (bool, True = count it) removes entries from every term. They are
selected away with `torch.where` rather than multiplied by 0, so a NaN or inf there cannot
reach the loss value. `impala_loss` uses the V-trace `valid` mask: placeholder transitions of
next-step autoreset carry no learning signal.

Log-probabilities and entropies come from the policy's distribution (beast.distributions), so
the same loss serves categorical, Gaussian and multi-discrete policies.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from beast.algo.vtrace import vtrace_from_importance_weights

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


def policy_gradient_loss(log_pi_a: torch.Tensor, advantages: torch.Tensor, *,
                         mask: torch.Tensor | None = None, reduction: str = "mean",
                         ) -> torch.Tensor:
    """-sum log pi(a_t|x_t) * A_t for log-probabilities of the taken actions [T, B] and
    advantages [T, B].

    The advantages are detached: they are targets of the score-function estimator, and a
    gradient through them would be a different (wrong) objective.
    """
    _expect_shape("advantages", advantages, tuple(log_pi_a.shape), "log_pi_a")
    return _reduce(-log_pi_a * advantages.detach(), mask, reduction)


def baseline_loss(values: torch.Tensor, targets: torch.Tensor, *, mask: torch.Tensor | None = None,
                  reduction: str = "mean") -> torch.Tensor:
    """0.5 * sum (targets - values)^2 over [T, B]; the targets are detached (regression targets)."""
    _expect_shape("targets", targets, tuple(values.shape), "values")
    return _reduce(0.5 * (targets.detach() - values) ** 2, mask, reduction)


def entropy_loss(entropy: torch.Tensor, *, mask: torch.Tensor | None = None,
                 reduction: str = "mean") -> torch.Tensor:
    """-sum H(pi(.|x_t)) for per-step entropies [T, B] (beast.distributions).

    Negative entropy, so that adding entropy_cost * entropy_loss to a minimised loss is an
    entropy bonus that keeps the policy exploring.
    """
    return _reduce(-entropy, mask, reduction)


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
    target_log_probs: torch.Tensor,
    behaviour_log_probs: torch.Tensor,
    entropy: torch.Tensor,
    v_tm1: torch.Tensor,
    bootstrap_value: torch.Tensor,
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    valid: torch.Tensor | None = None,
    baseline_cost: float = 0.5,
    entropy_cost: float = 0.01,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    lambda_: float = 1.0,
    reduction: str = "mean",
) -> ImpalaLoss:
    """The IMPALA loss on one unroll, for any action distribution.

    Per transition [T, B], indexed as in beast.algo.vtrace: target_log_probs log pi(a_t|x_t)
    (with grad), behaviour_log_probs log mu(a_t|x_t), entropy H(pi(.|x_t)) (with grad), v_tm1
    V(x_t) (with grad), r_t, discount_t (gamma * (1 - terminated), not zeroed for truncation),
    valid (bool or None); bootstrap_value V(x_T): [B]. `beast.algo.align_rollout` gives all but
    the log-probs and entropy from a [T+1, B] rollout.
    Gradients reach the target policy (pg and entropy terms) and v_tm1 (baseline term) only:
    V-trace runs on detached copies, and the behaviour terms and bootstrap_value get no gradient.
    """
    if target_log_probs.dim() != 2:
        raise ValueError(f"target_log_probs has shape {tuple(target_log_probs.shape)}, "
                         "expected [T, B]")
    tb = tuple(target_log_probs.shape)
    _expect_shape("behaviour_log_probs", behaviour_log_probs, tb, "target_log_probs")
    _expect_shape("entropy", entropy, tb, "target_log_probs")
    _expect_shape("v_tm1", v_tm1, tb, "target_log_probs")
    log_rhos = target_log_probs.detach() - behaviour_log_probs.detach()
    vtrace = vtrace_from_importance_weights(
        log_rhos, discount_t, r_t, v_tm1.detach(), bootstrap_value.detach(),
        clip_rho_threshold=clip_rho_threshold, clip_c_threshold=clip_c_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold, lambda_=lambda_, valid=valid)
    pg = policy_gradient_loss(target_log_probs, vtrace.pg_advantages, mask=valid,
                              reduction=reduction)
    baseline = baseline_loss(v_tm1, vtrace.vs, mask=valid, reduction=reduction)
    entropy_term = entropy_loss(entropy, mask=valid, reduction=reduction)
    total = pg + baseline_cost * baseline + entropy_cost * entropy_term
    return ImpalaLoss(total=total, pg_loss=pg, baseline_loss=baseline, entropy_loss=entropy_term,
                      vs=vtrace.vs, pg_advantages=vtrace.pg_advantages, log_rhos=log_rhos)


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
