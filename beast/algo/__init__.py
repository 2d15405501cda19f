"""Learner losses: pure functions over time-major tensors [T, B, ...].

timestep: `align_rollout`, a [T+1, B] rollout as the losses' [T, B] inputs (one convention).
vtrace: V-trace off-policy targets and advantages. losses: the IMPALA loss and its terms.
impact: the IMPACT loss (V-trace under a target net, clipped surrogate). vmpo: V-MPO's pieces.
"""

from beast.algo.impact import ImpactLoss, adapt_kl_coef, impact_loss, surrogate_ratios
from beast.algo.losses import (
    ImpalaLoss,
    baseline_loss,
    clip_rewards,
    entropy_loss,
    impala_loss,
    policy_gradient_loss,
)
from beast.algo.timestep import AlignedTransitions, align_rollout
from beast.algo.vmpo import (
    TemperatureStep,
    TrustRegion,
    VmpoLoss,
    decoupled_gaussian_kl,
    n_step_returns,
    positive_dual,
    raw_dual,
    temperature_loss,
    top_half,
    trust_region_loss,
    vmpo_loss,
)
from beast.algo.vtrace import (
    VTraceFromLogitsReturns,
    VTraceReturns,
    vtrace_from_importance_weights,
    vtrace_from_logits,
)

__all__ = [
    "AlignedTransitions",
    "ImpactLoss",
    "ImpalaLoss",
    "TemperatureStep",
    "TrustRegion",
    "VTraceFromLogitsReturns",
    "VTraceReturns",
    "VmpoLoss",
    "adapt_kl_coef",
    "align_rollout",
    "baseline_loss",
    "clip_rewards",
    "decoupled_gaussian_kl",
    "entropy_loss",
    "impact_loss",
    "impala_loss",
    "n_step_returns",
    "policy_gradient_loss",
    "positive_dual",
    "raw_dual",
    "surrogate_ratios",
    "temperature_loss",
    "top_half",
    "trust_region_loss",
    "vmpo_loss",
    "vtrace_from_importance_weights",
    "vtrace_from_logits",
]
