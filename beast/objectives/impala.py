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
from beast.objectives.base import (ObjectiveResult, learner_rewards, transition_mask,
                                   vtrace_settings)


class ImpalaObjective(nn.Module):
    """No state of its own; see the module docstring."""

    def __init__(self, config: LossConfig, dist: ActionDistribution) -> None:
        super().__init__()
        self.config = config
        self.dist = dist

    def forward(self, output: AgentOutput, batch: dict[str, torch.Tensor]) -> ObjectiveResult:
        cfg = self.config
        valid = transition_mask(batch)
        params = output.policy_params[:-1]
        actions = batch["action"][:-1]
        rewards, discounts = learner_rewards(batch, cfg)
        loss = impala_loss(
            target_log_probs=self.dist.log_prob(params, actions),
            behaviour_log_probs=self.dist.log_prob(batch["policy_params"][:-1], actions),
            entropy=self.dist.entropy(params),
            values=output.baseline[:-1],
            bootstrap_value=output.baseline[-1].detach(),
            rewards=rewards,
            discounts=discounts,
            valid=valid,
            **vtrace_settings(cfg),
        )
        rho_clipped = (loss.log_rhos > math.log(cfg.clip_rho))[valid]
        metrics = {
            "loss/total": loss.total.detach(),
            "loss/pg": loss.pg_loss.detach(),
            "loss/baseline": loss.baseline_loss.detach(),
            "loss/entropy": loss.entropy_loss.detach(),
            "impala/rho_clip_frac": (rho_clipped.float().mean() if rho_clipped.numel()
                                     else torch.zeros(())),
        }
        return ObjectiveResult(loss.total, metrics)
