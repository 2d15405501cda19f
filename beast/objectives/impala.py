"""The IMPALA objective: V-trace policy gradient, value regression and an entropy bonus.

    total = pg + baseline_cost * baseline + entropy_cost * (-entropy)     (beast.algo.losses)

It reads the behaviour policy from the batch (`policy_params`, `action`), the learner's from
the model's output, and works for any action distribution (beast.distributions).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from beast.algo.losses import clip_rewards, impala_loss
from beast.config import LossConfig
from beast.distributions import ActionDistribution
from beast.models.agent import AgentOutput
from beast.objectives.base import ObjectiveResult


def transition_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[T, B]: transition t is real only if o_t did not end an episode (with next-step
    autoreset the action taken at a final observation is ignored by the env)."""
    return ~(batch["terminated"][:-1] | batch["truncated"][:-1])


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
        loss = impala_loss(
            target_log_probs=self.dist.log_prob(params, actions),
            behaviour_log_probs=self.dist.log_prob(batch["policy_params"][:-1], actions),
            entropy=self.dist.entropy(params),
            values=output.baseline[:-1],
            bootstrap_value=output.baseline[-1].detach(),
            rewards=clip_rewards(cfg.reward_scale * batch["reward"][1:], cfg.reward_clip),
            discounts=cfg.discount * (~batch["terminated"][1:]).float(),
            valid=valid,
            baseline_cost=cfg.baseline_cost,
            entropy_cost=cfg.entropy_cost,
            clip_rho_threshold=cfg.clip_rho,
            clip_pg_rho_threshold=cfg.clip_pg_rho,
            clip_c_threshold=cfg.clip_c,
            lambda_=cfg.vtrace_lambda,
            reduction=cfg.reduction,
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
