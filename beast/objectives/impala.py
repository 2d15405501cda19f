"""The IMPALA objective: V-trace policy gradient, value regression and an entropy bonus.

    total = pg + baseline_cost * baseline + entropy_cost * (-entropy)     (beast.algo.losses)

It reads the behaviour policy from the batch (`policy_params`, `action`), the learner's from
the model's output, and works for any action distribution (beast.distributions).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from beast.algo.losses import impala_loss
from beast.distributions import ActionDistribution
from beast.loss_config import LossConfig
from beast.models.agent import AgentOutput
from beast.objectives.base import ObjectiveResult, learner_transitions, vtrace_settings


class ImpalaObjective(nn.Module):
    """No state of its own; see the module docstring."""

    def __init__(self, config: LossConfig, dist: ActionDistribution) -> None:
        super().__init__()
        self.config = config
        self.dist = dist

    def forward(self, output: AgentOutput, batch: dict[str, torch.Tensor]) -> ObjectiveResult:
        cfg = self.config
        steps = learner_transitions(batch, cfg, output.baseline)
        params = steps.at_tm1(output.policy_params)
        loss = impala_loss(
            target_log_probs=self.dist.log_prob(params, steps.a_tm1),
            behaviour_log_probs=self.dist.log_prob(steps.mu_tm1, steps.a_tm1),
            entropy=self.dist.entropy(params),
            v_tm1=steps.v_tm1,
            bootstrap_value=steps.bootstrap_value,
            r_t=steps.r_t,
            discount_t=steps.discount_t,
            valid=steps.valid,
            **vtrace_settings(cfg),
        )
        rho_clipped = (loss.log_rhos > math.log(cfg.clip_rho))[steps.valid]
        metrics = {
            "loss/total": loss.total.detach(),
            "loss/pg": loss.pg_loss.detach(),
            "loss/baseline": loss.baseline_loss.detach(),
            "loss/entropy": loss.entropy_loss.detach(),
            "impala/rho_clip_frac": (rho_clipped.float().mean() if rho_clipped.numel()
                                     else torch.zeros(())),
        }
        return ObjectiveResult(loss.total, metrics)
