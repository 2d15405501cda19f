"""V-trace value targets and policy-gradient advantages (Espeholt et al., 2018, IMPALA).

Why V-trace: actors act with a behaviour policy mu that lags the learner's target policy pi by
a few updates. V-trace corrects the n-step value targets with *truncated* importance weights,
so the learner can use slightly off-policy unrolls without the variance of full importance
sampling, and the targets reduce to ordinary n-step returns when the data is on-policy.

Conventions. Every [T, B] input has one entry per transition t = 0 .. T-1 of B environments,
transition t going from state x_t to x_{t+1}. The names are rlax's: `_tm1` belongs to the state
a transition leaves, `_t` to the step that reaches the next one.

    transition t       0            1                 T-1
    leaves / reaches   x_0 -> x_1   x_1 -> x_2  ...   x_{T-1} -> x_T
    log_rhos[t]        log pi(a_t|x_t) - log mu(a_t|x_t), a_t the action taken at x_t
    r_t[t]             the reward a_t earned
    discount_t[t]      gamma * (1 - [x_{t+1} is terminal]). NOT zeroed for truncation:
                       a truncated episode bootstraps.
    v_tm1[t]           V(x_t)
    bootstrap_value    V(x_T), shape [B]
    valid[t]           False marks a placeholder transition (see below); None = all valid.

`beast.algo.align_rollout` builds these from a [T+1, B] rollout; beast.algo.timestep shows
which rollout entry each comes from (the reward of transition t is stored at entry t+1).

With rho_t = min(rho_bar, pi/mu), c_t = lambda * min(c_bar, pi/mu):

    delta_t = rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t))
    v_s - V(x_s) = delta_s + gamma_s c_s (v_{s+1} - V(x_{s+1})),      v_T = V(x_T)
    A_s = min(rho_bar_pg, pi/mu) (r_s + gamma_s v_{s+1} - V(x_s))

A threshold of None means no clipping. The recursion runs backwards over T in Python (T is at
most a few hundred); everything else is vectorised.

Placeholder steps (valid[s] = False): with Gymnasium's next-step autoreset, the action taken
from a final observation is ignored by the environment, so that transition carries no
information. There delta_s = 0, v_s = V(x_s) exactly (the trace is cut, so nothing after s
reaches s or earlier through s) and A_s = 0. Step s-1 still bootstraps from V(x_s) as usual,
which is how a truncated episode bootstraps from the value of its final observation. Placeholder
entries are selected away with `torch.where` rather than multiplied by 0, so a non-finite
reward or importance weight there does not leak.

Both results are stop-gradient: they are computed under `torch.no_grad()`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from beast.distributions import Categorical


class VTraceReturns(NamedTuple):
    vs: torch.Tensor
    """[T, B] V-trace value targets v_s (no grad)."""
    pg_advantages: torch.Tensor
    """[T, B] policy-gradient advantages A_s (no grad)."""


class VTraceFromLogitsReturns(NamedTuple):
    vs: torch.Tensor
    """[T, B] V-trace value targets (no grad)."""
    pg_advantages: torch.Tensor
    """[T, B] policy-gradient advantages (no grad)."""
    log_rhos: torch.Tensor
    """[T, B] log pi(a_t|x_t) - log mu(a_t|x_t) (no grad)."""
    behaviour_action_log_probs: torch.Tensor
    """[T, B] log mu(a_t|x_t); carries autograd history if the behaviour logits do."""
    target_action_log_probs: torch.Tensor
    """[T, B] log pi(a_t|x_t); carries autograd history if the target logits do."""


def _expect_shape(name: str, tensor: torch.Tensor, expected: tuple[int, ...], why: str) -> None:
    if tuple(tensor.shape) != expected:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {expected} ({why})")


def _check_threshold(name: str, threshold: float | None) -> None:
    if threshold is not None and not threshold > 0:
        raise ValueError(f"{name} must be > 0 or None for no clipping (got {threshold})")


def _clip(ratio: torch.Tensor, threshold: float | None) -> torch.Tensor:
    return ratio if threshold is None else ratio.clamp(max=threshold)


def vtrace_from_importance_weights(
    log_rhos: torch.Tensor,
    discount_t: torch.Tensor,
    r_t: torch.Tensor,
    v_tm1: torch.Tensor,
    bootstrap_value: torch.Tensor,
    *,
    clip_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    lambda_: float = 1.0,
    valid: torch.Tensor | None = None,
) -> VTraceReturns:
    """V-trace targets and advantages from log importance weights (see the module docstring).

    Shapes: log_rhos, discount_t, r_t, v_tm1 (and valid, bool) are [T, B]; bootstrap_value is
    [B]. Raises ValueError naming the argument whose shape is wrong.
    """
    if log_rhos.dim() != 2 or log_rhos.shape[0] < 1:
        raise ValueError(f"log_rhos has shape {tuple(log_rhos.shape)}, expected [T, B] with T >= 1")
    tb = tuple(log_rhos.shape)
    _expect_shape("discount_t", discount_t, tb, "[T, B] like log_rhos")
    _expect_shape("r_t", r_t, tb, "[T, B] like log_rhos")
    _expect_shape("v_tm1", v_tm1, tb, "[T, B] like log_rhos")
    _expect_shape("bootstrap_value", bootstrap_value, tb[1:], "[B]: V(x_T) per environment")
    if valid is not None:
        _expect_shape("valid", valid, tb, "[T, B] like log_rhos")
        if valid.dtype != torch.bool:
            raise ValueError(f"valid must be a bool tensor (got {valid.dtype})")
    _check_threshold("clip_rho_threshold", clip_rho_threshold)
    _check_threshold("clip_c_threshold", clip_c_threshold)
    _check_threshold("clip_pg_rho_threshold", clip_pg_rho_threshold)
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_ must be in [0, 1] (got {lambda_})")

    with torch.no_grad():
        rho_t = torch.exp(log_rhos)
        clipped_rho_t = _clip(rho_t, clip_rho_threshold)
        c_t = lambda_ * _clip(rho_t, clip_c_threshold)
        v_t = torch.cat([v_tm1[1:], bootstrap_value.unsqueeze(0)], dim=0)  # V(x_{t+1})
        delta_t = clipped_rho_t * (r_t + discount_t * v_t - v_tm1)
        trace_t = discount_t * c_t
        if valid is not None:
            # Zero at placeholders: delta_s = 0 and the trace to s+1 is cut, so v_s = V(x_s).
            delta_t = torch.where(valid, delta_t, 0.0)
            trace_t = torch.where(valid, trace_t, 0.0)

        # Backward recursion on the correction v_s - V(x_s); the correction at T is 0.
        correction = torch.zeros_like(delta_t[0])
        corrections = []
        for t in range(tb[0] - 1, -1, -1):
            correction = torch.addcmul(delta_t[t], trace_t[t], correction)
            corrections.append(correction)
        corrections.reverse()
        vs = v_tm1 + torch.stack(corrections)

        vs_t = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)  # v_{t+1}
        pg_advantages = _clip(rho_t, clip_pg_rho_threshold) * (r_t + discount_t * vs_t - v_tm1)
        if valid is not None:
            pg_advantages = torch.where(valid, pg_advantages, 0.0)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages)


def vtrace_from_logits(
    behaviour_policy_logits: torch.Tensor,
    target_policy_logits: torch.Tensor,
    a_tm1: torch.Tensor,
    discount_t: torch.Tensor,
    r_t: torch.Tensor,
    v_tm1: torch.Tensor,
    bootstrap_value: torch.Tensor,
    *,
    clip_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    lambda_: float = 1.0,
    valid: torch.Tensor | None = None,
) -> VTraceFromLogitsReturns:
    """V-trace for categorical policies given as logits [T, B, A] and int actions [T, B] (the
    learner computes log-probabilities through its beast.distributions object instead): the
    logits are pi's and mu's at x_t, a_tm1 [T, B] the action taken there.

    log_rhos = log pi(a) - log mu(a) from log_softmax in at least float32. The returned action
    log-probabilities keep their autograd history (so a caller may build a policy loss on the
    target ones); log_rhos, vs and pg_advantages are detached. Other arguments and keyword
    options are those of `vtrace_from_importance_weights`.
    """
    if behaviour_policy_logits.dim() != 3:
        raise ValueError("behaviour_policy_logits has shape "
                         f"{tuple(behaviour_policy_logits.shape)}, expected [T, B, A]")
    _expect_shape("target_policy_logits", target_policy_logits,
                  tuple(behaviour_policy_logits.shape), "[T, B, A] like behaviour_policy_logits")
    _expect_shape("a_tm1", a_tm1, tuple(behaviour_policy_logits.shape[:2]),
                  "[T, B] like the logits' leading axes")
    categorical = Categorical(behaviour_policy_logits.shape[-1])
    behaviour_log_probs = categorical.log_prob(behaviour_policy_logits, a_tm1)
    target_log_probs = categorical.log_prob(target_policy_logits, a_tm1)
    log_rhos = target_log_probs.detach() - behaviour_log_probs.detach()
    returns = vtrace_from_importance_weights(
        log_rhos, discount_t, r_t, v_tm1, bootstrap_value,
        clip_rho_threshold=clip_rho_threshold, clip_c_threshold=clip_c_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold, lambda_=lambda_, valid=valid)
    return VTraceFromLogitsReturns(
        vs=returns.vs, pg_advantages=returns.pg_advantages, log_rhos=log_rhos,
        behaviour_action_log_probs=behaviour_log_probs,
        target_action_log_probs=target_log_probs)
