"""Learner losses: pure functions over time-major tensors [T, B, ...].

vtrace: V-trace off-policy targets and advantages. losses: the IMPALA loss and its terms.
"""

from beast.algo.losses import (
    ImpalaLoss,
    baseline_loss,
    clip_rewards,
    entropy_loss,
    impala_loss,
    policy_gradient_loss,
)
from beast.algo.vtrace import (
    VTraceFromLogitsReturns,
    VTraceReturns,
    vtrace_from_importance_weights,
    vtrace_from_logits,
)

__all__ = [
    "ImpalaLoss",
    "VTraceFromLogitsReturns",
    "VTraceReturns",
    "baseline_loss",
    "clip_rewards",
    "entropy_loss",
    "impala_loss",
    "policy_gradient_loss",
    "vtrace_from_importance_weights",
    "vtrace_from_logits",
]
