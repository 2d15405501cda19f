"""IMPACT loss (Luo et al., 2019, arXiv 1912.00167): a pure function over time-major [T, B].

Why IMPACT: IMPALA uses each batch once. IMPACT reuses a batch K times from a small circular
buffer, so the learner policy pi_theta drifts from the behaviour policy mu within one batch's
lifetime. A target network pi_tgt (a periodic hard copy of the online net) anchors both the
V-trace targets and a PPO-style clipped surrogate, which keeps the reuse stable:

    log_rhos = log pi_tgt(a_t|x_t) - log mu(a_t|x_t)        V-trace with pi_tgt as its target
    vs, A    = V-trace(log_rhos, V of the ONLINE critic)     (rho, c, rho_pg clipped as there)
    q_t      = min(rho_bar_tw, mu/pi_tgt) * pi_theta/mu        truncated-IS surrogate ratio
    L_pi     = -mean min(q_t A_t, clip(q_t, 1 - eps, 1 + eps) A_t)
    total    = L_pi + baseline_cost * 0.5 mean (vs - V)^2 - entropy_cost * mean H
               + kl_coef * mean KL(pi_tgt || pi_theta)          (optional penalty)

The spec writes the value term as "0.5·mean(V − v)²·0.5": here it is baseline_cost (default
0.5) times `losses.baseline_loss` (0.5·mean(v − V)²), exactly as in `impala_loss`.

The advantage is V-trace's pg_advantages under pi_tgt, A_s = min(rho_bar_pg, pi_tgt/mu) *
(r_s + gamma_s v_{s+1} - V(x_s)), with clip_pg_rho_threshold passed through (default 1.0,
V-trace's default). The surrogate ratio already corrects mu -> pi_theta, so with the default
the extra factor min(1, pi_tgt/mu) <= 1 only down-weights steps where mu was likelier than
the target. Passing the same thresholds as to `impala_loss` is what makes IMPACT's gradient
equal IMPALA's when pi_tgt = pi_theta and rho_bar_tw = inf (then q = 1, which eps cannot
clip; the policy term's VALUE is -mean A here, -mean log pi * A there).

q_t is computed as exp(log pi_theta - log pi_tgt) * exp(min(0, log rho_bar_tw + log pi_tgt -
log mu)), the same quantity without exp(log pi_theta - log mu) overflowing for a tiny mu.
Masking follows losses.py: invalid (placeholder) steps are selected away with torch.where,
and their log-ratios are zeroed before exp, so a NaN or inf there reaches neither the loss
nor its gradient.

The learner's call loop (one learner step, laid out like `beast.objectives.impala`; another
module owns the buffer of N batches reused K times and the target net):

    output = model(batch)                                      # online net: grads
    with torch.no_grad():
        target = target_model(batch)                           # pi_tgt: a hard copy
    steps = align_rollout(batch, discount, values=output.baseline)   # [T+1, B] -> [T, B]
    params, tgt = steps.at_tm1(output.policy_params), steps.at_tm1(target.policy_params)
    loss = impact_loss(
        online_log_probs=dist.log_prob(params, steps.a_tm1),
        target_log_probs=dist.log_prob(tgt, steps.a_tm1),
        behaviour_log_probs=dist.log_prob(steps.mu_tm1, steps.a_tm1),
        entropy=dist.entropy(params), v_tm1=steps.v_tm1,
        bootstrap_value=steps.bootstrap_value, r_t=steps.r_t,
        discount_t=steps.discount_t, valid=steps.valid,
        kl=dist.kl(tgt, params), kl_coef=kl_coef)              # kl=None: no penalty
    loss.total.backward(); optimizer.step()
    kl_coef = adapt_kl_coef(kl_coef, float(loss.kl_loss), target=0.01)
    if step % target_update_period == 0: target_model.load_state_dict(model.state_dict())
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from beast.algo.losses import _expect_shape, _reduce, baseline_loss, entropy_loss
from beast.algo.vtrace import vtrace_from_importance_weights


class ImpactLoss(NamedTuple):
    total: torch.Tensor
    """Scalar to minimise: policy + baseline_cost*baseline + entropy_cost*entropy + kl_coef*kl."""
    policy_loss: torch.Tensor
    """Scalar clipped-surrogate term L_pi."""
    baseline_loss: torch.Tensor
    """Scalar value term, 0.5 included, before baseline_cost."""
    entropy_loss: torch.Tensor
    """Scalar negative entropy, before entropy_cost."""
    kl_loss: torch.Tensor
    """Scalar reduced KL(pi_tgt || pi_theta) before kl_coef (0 without `kl`)."""
    vs: torch.Tensor
    """[T, B] V-trace targets under pi_tgt (no grad)."""
    pg_advantages: torch.Tensor
    """[T, B] V-trace advantages under pi_tgt (no grad)."""
    log_rhos: torch.Tensor
    """[T, B] log pi_tgt(a) - log mu(a) (no grad)."""
    ratios: torch.Tensor
    """[T, B] surrogate ratios q_t (no grad; 1 at invalid steps)."""
    clip_fraction: torch.Tensor
    """Scalar fraction of valid steps with q_t outside [1 - eps, 1 + eps] (no grad)."""


def surrogate_ratios(online_log_probs: torch.Tensor, target_log_probs: torch.Tensor,
                     behaviour_log_probs: torch.Tensor, *, clip_is_threshold: float | None = 2.0,
                     valid: torch.Tensor | None = None) -> torch.Tensor:
    """q_t = min(rho_bar_tw, mu/pi_tgt) * pi_theta/mu per step [T, B], with gradient through
    pi_theta only; None (or inf) for clip_is_threshold means no truncation (q = pi_theta/pi_tgt).
    Invalid steps get q = 1 and no gradient. (q, not PPO's r: r_t is the reward here.)"""
    log_online_over_tgt = online_log_probs - target_log_probs.detach()
    if valid is not None:
        log_online_over_tgt = torch.where(valid, log_online_over_tgt, 0.0)
    ratios = torch.exp(log_online_over_tgt)
    if clip_is_threshold is None or math.isinf(clip_is_threshold):
        return ratios
    log_tgt_over_mu = (target_log_probs - behaviour_log_probs).detach()
    if valid is not None:
        log_tgt_over_mu = torch.where(valid, log_tgt_over_mu, 0.0)
    # min(c, mu/tgt) * pi/mu = (pi/tgt) * min(c * tgt/mu, 1)
    truncation = torch.exp((math.log(clip_is_threshold) + log_tgt_over_mu).clamp(max=0.0))
    return ratios * truncation


def impact_loss(
    *,
    online_log_probs: torch.Tensor,
    target_log_probs: torch.Tensor,
    behaviour_log_probs: torch.Tensor,
    entropy: torch.Tensor,
    v_tm1: torch.Tensor,
    bootstrap_value: torch.Tensor,
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    valid: torch.Tensor | None = None,
    kl: torch.Tensor | None = None,
    kl_coef: float | torch.Tensor = 0.0,
    baseline_cost: float = 0.5,
    entropy_cost: float = 0.01,
    clip_epsilon: float = 0.4,
    clip_is_threshold: float | None = 2.0,
    clip_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    lambda_: float = 1.0,
    reduction: str = "mean",
) -> ImpactLoss:
    """The IMPACT loss on one unroll, for any action distribution (see the module docstring).

    Note the names: here `target_log_probs` is the TARGET NETWORK's log pi_tgt(a_t|x_t), and
    `online_log_probs` the learner's log pi_theta(a_t|x_t) (with grad), which `impala_loss`
    calls target_log_probs. Per transition [T, B], indexed as in beast.algo.vtrace:
    online_log_probs, target_log_probs, behaviour_log_probs (log mu), entropy H(pi_theta) (with
    grad), v_tm1 V(x_t) of the online critic (with grad), r_t, discount_t (gamma * (1 -
    terminated), not zeroed for truncation), valid (bool or None), kl (KL(pi_tgt || pi_theta)
    with grad, or None for no penalty); bootstrap_value V(x_T): [B]. clip_is_threshold is
    rho_bar_tw; clip_epsilon is eps (inf disables the clip); the V-trace options are those of
    `vtrace_from_importance_weights`.
    `reduction` ("mean" or "sum") applies to every term, as in `impala_loss`.
    """
    if online_log_probs.dim() != 2:
        raise ValueError(f"online_log_probs has shape {tuple(online_log_probs.shape)}, "
                         "expected [T, B]")
    tb = tuple(online_log_probs.shape)
    _expect_shape("target_log_probs", target_log_probs, tb, "online_log_probs")
    _expect_shape("behaviour_log_probs", behaviour_log_probs, tb, "online_log_probs")
    _expect_shape("entropy", entropy, tb, "online_log_probs")
    _expect_shape("v_tm1", v_tm1, tb, "online_log_probs")
    if kl is not None:
        _expect_shape("kl", kl, tb, "online_log_probs")
    if not clip_epsilon > 0:
        raise ValueError(f"clip_epsilon must be > 0 (got {clip_epsilon})")
    if clip_is_threshold is not None and not clip_is_threshold > 0:
        raise ValueError(f"clip_is_threshold must be > 0 or None (got {clip_is_threshold})")

    log_rhos = (target_log_probs - behaviour_log_probs).detach()
    vtrace = vtrace_from_importance_weights(
        log_rhos, discount_t, r_t, v_tm1.detach(), bootstrap_value.detach(),
        clip_rho_threshold=clip_rho_threshold, clip_c_threshold=clip_c_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold, lambda_=lambda_, valid=valid)
    advantages = vtrace.pg_advantages
    ratios = surrogate_ratios(online_log_probs, target_log_probs, behaviour_log_probs,
                              clip_is_threshold=clip_is_threshold, valid=valid)
    clipped = ratios.clamp(1.0 - clip_epsilon, 1.0 + clip_epsilon)
    surrogate = torch.minimum(ratios * advantages, clipped * advantages)
    policy = _reduce(-surrogate, valid, reduction)
    baseline = baseline_loss(v_tm1, vtrace.vs, mask=valid, reduction=reduction)
    entropy_term = entropy_loss(entropy, mask=valid, reduction=reduction)
    total = policy + baseline_cost * baseline + entropy_cost * entropy_term
    if kl is not None:
        kl_term = _reduce(kl, valid, reduction)
        total = total + kl_coef * kl_term
    else:
        kl_term = torch.zeros((), dtype=total.dtype, device=total.device)
    with torch.no_grad():
        outside = ((ratios - 1.0).abs() > clip_epsilon).to(ratios.dtype)
        clip_fraction = _reduce(outside, valid, "mean")
    return ImpactLoss(total=total, policy_loss=policy, baseline_loss=baseline,
                      entropy_loss=entropy_term, kl_loss=kl_term, vs=vtrace.vs,
                      pg_advantages=advantages, log_rhos=log_rhos, ratios=ratios.detach(),
                      clip_fraction=clip_fraction)


def adapt_kl_coef(coef: float, kl: float, target: float = 0.01, *, tolerance: float = 1.5,
                  factor: float = 2.0) -> float:
    """The adaptive KL-penalty coefficient (the PPO rule IMPACT uses), one update per step:
    multiply by `factor` when the measured mean KL exceeds target*tolerance, divide by it when
    the KL is below target/tolerance, keep it otherwise."""
    if not (target > 0 and tolerance >= 1 and factor > 1):
        raise ValueError(f"need target > 0, tolerance >= 1, factor > 1 (got {target}, "
                         f"{tolerance}, {factor})")
    if kl > target * tolerance:
        return coef * factor
    if kl < target / tolerance:
        return coef / factor
    return coef
