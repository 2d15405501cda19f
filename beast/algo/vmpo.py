"""V-MPO loss pieces (Song et al., 2019, arXiv 1909.12238): pure functions over [T, B].

Why V-MPO: an on-policy EM-style update that needs no importance weights and no entropy bonus.
The E-step reweights the better half of the batch by a softmax of advantages whose temperature
eta is learned against a KL bound eps_eta; the M-step fits the policy to those weights, held
within a KL trust region of pi_old (a target net) by a learned multiplier alpha:

    G_t      = r_t + gamma_t G_{t+1},  G_T = V(x_T)     n-step returns over the unroll
    L_V      = 0.5 mean (V - G)^2,  A = G - V (detached)
    top      = the ceil(n_valid / 2) valid steps with the largest A (stable order on ties)
    psi      = softmax(A / eta) over top (max subtracted)
    L_eta    = eta eps_eta + eta log(mean_top exp(A / eta))    (logsumexp - log n)
    L_pi     = -sum_top sg(psi) log pi_theta(a|x)
    L_alpha  = sum over trust regions of mean_s[alpha (eps_alpha - sg KL) + sg(alpha) KL]
    total    = L_V + L_pi + L_eta + L_alpha

Choices where the spec is silent. The top half counts VALID steps only and rounds up, so a
batch with one valid step still has one selected (and none only when nothing is valid, where
every term is 0 with finite gradients). Means are over valid steps; there is no "sum"
reduction (the spec states means, and psi already normalises L_pi). Returns stop at
placeholder steps like V-trace's targets: G_s = V(x_s) at an invalid s, so step s-1
bootstraps from the value of a truncated episode's final observation; `discount_t` is
gamma * (1 - terminated), not zeroed for truncation. Every [T, B] input is indexed by
transition as in beast.algo.vtrace (r_t, discount_t, v_tm1 = V(x_t), bootstrap_value = V(x_T)).

Duals. eta and alpha are passed in as positive scalar tensors. The caller keeps raw
parameters and maps them with `positive_dual` (softplus + 1e-8, so the gradient never dies),
initialising them with `raw_dual` (eta_0 = 1, alpha_0 = 5 for discrete actions).

The learner's call loop (one step; the optimiser holds the net and the raw duals):

    raw_eta = nn.Parameter(raw_dual(1.0)); raw_alpha = nn.Parameter(raw_dual(5.0))
    output = model(batch)
    steps = align_rollout(batch, discount, values=output.baseline)   # [T+1, B] -> [T, B]
    with torch.no_grad():
        old = steps.at_tm1(old_model(batch).policy_params)    # pi_old, copied every 100 steps
    params = steps.at_tm1(output.policy_params)
    regions = [TrustRegion(dist.kl(old, params), positive_dual(raw_alpha), 0.01)]
    # Gaussian: kl_mu, kl_sigma = decoupled_gaussian_kl(dist, old, params)
    #   regions = [TrustRegion(kl_mu, alpha_mu, 0.01), TrustRegion(kl_sigma, alpha_sigma, 1e-5)]
    loss = vmpo_loss(log_probs=dist.log_prob(params, steps.a_tm1), v_tm1=steps.v_tm1,
                     bootstrap_value=steps.bootstrap_value, r_t=steps.r_t,
                     discount_t=steps.discount_t, valid=steps.valid,
                     eta=positive_dual(raw_eta), trust_regions=regions, epsilon_eta=0.01)
    loss.total.backward(); optimizer.step()                  # Adam, lr 1e-4
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from beast.algo.losses import _expect_shape, _reduce, baseline_loss
from beast.distributions import DiagGaussian, _f32

_DUAL_FLOOR = 1e-8


def positive_dual(raw: torch.Tensor) -> torch.Tensor:
    """A Lagrange multiplier (eta or alpha) from its unconstrained parameter: softplus + 1e-8."""
    return torch.nn.functional.softplus(raw) + _DUAL_FLOOR


def raw_dual(value: float) -> torch.Tensor:
    """The raw parameter whose `positive_dual` is `value` (> 1e-8): inverse softplus."""
    if not value > _DUAL_FLOOR:
        raise ValueError(f"a dual's initial value must be > {_DUAL_FLOOR} (got {value})")
    x = value - _DUAL_FLOOR
    return torch.tensor(x + math.log(-math.expm1(-x)))  # log(exp(x) - 1), stable for large x


def n_step_returns(r_t: torch.Tensor, discount_t: torch.Tensor, v_tm1: torch.Tensor,
                   bootstrap_value: torch.Tensor, *, valid: torch.Tensor | None = None,
                   ) -> torch.Tensor:
    """G_t = r_t + gamma_t G_{t+1} with G_T = bootstrap_value [B]; G_s = V(x_s) = v_tm1[s]
    where valid is False (the trace is cut there). Inputs [T, B] per transition (indexed as in
    beast.algo.vtrace); the result is detached."""
    if r_t.dim() != 2 or r_t.shape[0] < 1:
        raise ValueError(f"r_t has shape {tuple(r_t.shape)}, expected [T, B]")
    tb = tuple(r_t.shape)
    _expect_shape("discount_t", discount_t, tb, "r_t")
    _expect_shape("v_tm1", v_tm1, tb, "r_t")
    _expect_shape("bootstrap_value", bootstrap_value, tb[1:], "r_t[0]: V(x_T) per env")
    if valid is not None:
        _expect_shape("valid", valid, tb, "r_t")
    with torch.no_grad():
        g = bootstrap_value.to(r_t.dtype)
        returns = []
        for t in range(tb[0] - 1, -1, -1):
            g = r_t[t] + discount_t[t] * g
            if valid is not None:
                g = torch.where(valid[t], g, v_tm1[t])
            returns.append(g)
        returns.reverse()
        return torch.stack(returns)


def top_half(advantages: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Bool mask [T, B] of the ceil(n_valid / 2) valid entries with the largest advantages,
    ties broken by position (row-major). Invalid entries are never selected, whatever their
    value (NaN included). Computed by ranks, without a host-device sync."""
    flat = advantages.detach().reshape(-1)
    ok = torch.ones_like(flat, dtype=torch.bool) if valid is None else valid.reshape(-1)
    key = torch.where(ok, flat, -math.inf)
    order = torch.sort(key, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    keep = (ok.sum() + 1) // 2
    return ((rank < keep) & ok).reshape(advantages.shape)


class TemperatureStep(NamedTuple):
    loss: torch.Tensor
    """Scalar L_eta, with gradient to eta only."""
    psi: torch.Tensor
    """[T, B] E-step weights, summing to 1 over the selection, 0 elsewhere (no grad)."""


def temperature_loss(advantages: torch.Tensor, selected: torch.Tensor, eta: torch.Tensor,
                     epsilon_eta: float) -> TemperatureStep:
    """L_eta = eta eps_eta + eta (logsumexp_top(A / eta) - log n_top) and psi = softmax_top(A /
    eta), both with the selection's max advantage subtracted inside the exponent."""
    _expect_shape("selected", selected, tuple(advantages.shape), "advantages")
    if eta.dim() != 0:
        raise ValueError(f"eta has shape {tuple(eta.shape)}, expected a scalar tensor")
    a = advantages.detach()
    count = selected.sum()
    top_max = torch.where(selected, a, -math.inf).max()
    top_max = torch.where(count > 0, top_max, 0.0)
    a_top = torch.where(selected, a, top_max)  # a masked NaN never enters an exponent
    weights = torch.where(selected, torch.exp((a_top - top_max) / eta), 0.0)
    total = weights.sum()
    total = torch.where(count > 0, total, 1.0)
    log_mean = top_max / eta + torch.log(total) - torch.log(count.clamp(min=1).to(a.dtype))
    loss = (eta * epsilon_eta + eta * log_mean) * (count > 0).to(a.dtype)
    return TemperatureStep(loss=loss, psi=(weights / total).detach())


class TrustRegion(NamedTuple):
    """One KL bound of the M-step: discrete policies have one, Gaussians two (mean, cov)."""
    kl: torch.Tensor
    """[T, B] KL(pi_old || pi_theta) (or one decoupled part), with grad to pi_theta."""
    alpha: torch.Tensor
    """Positive scalar multiplier, with grad to its raw parameter."""
    epsilon: float
    """The bound eps_alpha (spec: 0.01; 1e-5 for a Gaussian's covariance part)."""


def trust_region_loss(kl: torch.Tensor, alpha: torch.Tensor, epsilon: float, *,
                      valid: torch.Tensor | None = None) -> torch.Tensor:
    """L_alpha = mean_s[alpha (eps - sg KL) + sg(alpha) KL] over valid steps: the gradient is
    (eps - KL) for alpha and sg(alpha) dKL for the policy."""
    if alpha.dim() != 0:
        raise ValueError(f"alpha has shape {tuple(alpha.shape)}, expected a scalar tensor")
    per_step = alpha * (epsilon - kl.detach()) + alpha.detach() * kl
    return _reduce(per_step, valid, "mean")


def decoupled_gaussian_kl(dist: DiagGaussian, old_params: torch.Tensor, params: torch.Tensor,
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(KL_mu, KL_sigma) per position for params laid out [mean, log_std] as in DiagGaussian:

        KL_mu    = KL(N(m_old, s_old) || N(m, s_old)) = sum_i (m - m_old)^2 / (2 s_old^2)
        KL_sigma = KL(N(m_old, s_old) || N(m_old, s)) = sum_i log(s/s_old) + s_old^2/(2 s^2) - 1/2

    KL_mu gets gradient through the mean only, KL_sigma through log_std only; old_params gets
    none. Their sum is the full KL(old || new) only when the means or the stds agree."""
    _expect_shape("params", params, tuple(old_params.shape), "old_params")
    if params.shape[-1] != dist.param_size:
        raise ValueError(f"params has shape {tuple(params.shape)}, expected [..., "
                         f"{dist.param_size}] ({dist}: [mean, log_std])")
    mean_old, log_std_old = _f32(old_params.detach()).split(dist.size, dim=-1)
    mean, log_std = _f32(params).split(dist.size, dim=-1)
    kl_mu = 0.5 * ((mean - mean_old).square() * torch.exp(-2.0 * log_std_old)).sum(-1)
    kl_sigma = ((log_std - log_std_old)
                + 0.5 * (torch.exp(2.0 * (log_std_old - log_std)) - 1.0)).sum(-1)
    return kl_mu, kl_sigma.clamp(min=0.0)


class VmpoLoss(NamedTuple):
    total: torch.Tensor
    """Scalar to minimise: value + policy + temperature + alpha."""
    value_loss: torch.Tensor
    """Scalar L_V = 0.5 mean (V - G)^2."""
    policy_loss: torch.Tensor
    """Scalar L_pi = -sum_top psi log pi."""
    temperature_loss: torch.Tensor
    """Scalar L_eta."""
    alpha_loss: torch.Tensor
    """Scalar L_alpha, summed over the trust regions."""
    returns: torch.Tensor
    """[T, B] n-step returns G (no grad)."""
    advantages: torch.Tensor
    """[T, B] A = G - V (no grad; 0 at invalid steps)."""
    selected: torch.Tensor
    """[T, B] bool, the top half."""
    psi: torch.Tensor
    """[T, B] E-step weights (no grad)."""
    selected_fraction: torch.Tensor
    """Scalar selected / valid count."""
    kl: tuple[torch.Tensor, ...]
    """Mean KL over valid steps per trust region (no grad)."""
    eta: torch.Tensor
    """The temperature used (no grad)."""
    alpha: tuple[torch.Tensor, ...]
    """The multipliers used, per trust region (no grad)."""


def vmpo_loss(
    *,
    log_probs: torch.Tensor,
    v_tm1: torch.Tensor,
    bootstrap_value: torch.Tensor,
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    eta: torch.Tensor,
    trust_regions: Sequence[TrustRegion],
    valid: torch.Tensor | None = None,
    epsilon_eta: float = 0.01,
) -> VmpoLoss:
    """The V-MPO loss on one unroll (see the module docstring), for any action distribution.

    Per transition [T, B], indexed as in beast.algo.vtrace: log_probs log pi_theta(a_t|x_t)
    and v_tm1 V(x_t) (both with grad), r_t, discount_t (gamma * (1 - terminated)), valid (bool
    or None); bootstrap_value V(x_T): [B] (no grad);
    eta: positive scalar tensor; trust_regions: the KL bounds (each kl [T, B]).
    """
    if log_probs.dim() != 2:
        raise ValueError(f"log_probs has shape {tuple(log_probs.shape)}, expected [T, B]")
    tb = tuple(log_probs.shape)
    _expect_shape("v_tm1", v_tm1, tb, "log_probs")
    if valid is not None:
        _expect_shape("valid", valid, tb, "log_probs")
        if valid.dtype != torch.bool:
            raise ValueError(f"valid must be a bool tensor (got {valid.dtype})")
    for i, region in enumerate(trust_regions):
        _expect_shape(f"trust_regions[{i}].kl", region.kl, tb, "log_probs")

    returns = n_step_returns(r_t, discount_t, v_tm1.detach(), bootstrap_value.detach(),
                             valid=valid)
    advantages = returns - v_tm1.detach()
    if valid is not None:
        advantages = torch.where(valid, advantages, 0.0)
    value = baseline_loss(v_tm1, returns, mask=valid, reduction="mean")
    selected = top_half(advantages, valid)
    e_step = temperature_loss(advantages, selected, eta, epsilon_eta)
    policy = -torch.where(selected, e_step.psi * log_probs, 0.0).sum()
    alpha_terms = [trust_region_loss(r.kl, r.alpha, r.epsilon, valid=valid)
                   for r in trust_regions]
    alpha_loss = sum(alpha_terms, torch.zeros((), dtype=value.dtype, device=value.device))
    total = value + policy + e_step.loss + alpha_loss
    with torch.no_grad():
        n_valid = selected.numel() if valid is None else valid.sum().clamp(min=1)
        fraction = selected.sum() / n_valid
        kls = tuple(_reduce(r.kl.detach(), valid, "mean") for r in trust_regions)
    return VmpoLoss(total=total, value_loss=value, policy_loss=policy,
                    temperature_loss=e_step.loss, alpha_loss=alpha_loss, returns=returns,
                    advantages=advantages, selected=selected, psi=e_step.psi,
                    selected_fraction=fraction, kl=kls, eta=eta.detach(),
                    alpha=tuple(r.alpha.detach() for r in trust_regions))
