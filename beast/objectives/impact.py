"""The IMPACT objective: V-trace under a target network and a clipped surrogate
(beast.algo.impact), with the state that loss needs between learner steps.

What it owns, all in its state_dict (checkpoints, --resume):
- `target`: a frozen copy of the online model (pi_tgt), hard-copied from it every
  `target_period` learner steps (default 2 N K, N and K being the reuse buffer's size and
  uses). Only its policy is read: the values come from the online critic.
- `steps`: the learner steps taken with this objective, so a resumed run keeps the period.
- `kl_coef`: the adaptive coefficient of the optional KL(pi_tgt || pi_theta) penalty
  (--impact-kl-coef 0, the default, leaves it off).

Each call is one learner step (the learner calls it once per optimiser step):

    objective = ImpactObjective(loss_config, impact_config, model)
    learner = Learner(model, objective, optim_config, ...)   # optimises the model only
    learner.step(batch):
        output = run_model(model, batch)
        objective(output, batch):
            if steps % target_period == 0: target <- model      # the previous step's weights
            pi_tgt = run_model(target, batch)                    # no grad, same call as above
            loss = impact_loss(pi_theta, pi_tgt, mu, ...)
            kl_coef <- adapt_kl_coef(kl_coef, KL)               # when the penalty is on
            steps += 1
        loss.backward(); optimiser.step()

Copying at the start of step n + 1 is copying at the end of step n, so the target always
holds weights the optimiser produced, and the first copy is the initial model.
"""

from __future__ import annotations

import torch
from torch import nn

from beast.algo.impact import adapt_kl_coef, impact_loss
from beast.algo.losses import _reduce
from beast.loss_config import ImpactConfig, LossConfig
from beast.models.agent import AgentOutput
from beast.objectives.base import (ObjectiveResult, frozen_copy, hard_update, keep_online,
                                   learner_transitions, run_model, vtrace_settings)

KL_COEF_RANGE = (1e-6, 1e6)
"""The adaptive coefficient stays within this range: halving a float without a floor reaches
0 (and stays there), doubling without a ceiling overflows the loss."""


class ImpactObjective(nn.Module):
    """See the module docstring. `model` is the online net the learner trains."""

    def __init__(self, loss: LossConfig, impact: ImpactConfig, model: nn.Module) -> None:
        super().__init__()
        self.config = loss
        self.impact = impact
        self.dist = model.dist
        self.target_period = impact.target_period
        keep_online(self, model)
        self.target = frozen_copy(model)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("kl_coef", torch.tensor(impact.impact_kl_coef, dtype=torch.float64))

    def forward(self, output: AgentOutput, batch: dict[str, torch.Tensor]) -> ObjectiveResult:
        cfg, impact = self.config, self.impact
        if int(self.steps) % self.target_period == 0:
            hard_update(self.target, self.online)
        steps = learner_transitions(batch, cfg, output.baseline)
        with torch.no_grad():
            target_params = steps.at_tm1(run_model(self.target, batch).policy_params)
        params = steps.at_tm1(output.policy_params)
        kl = self.dist.kl(target_params, params)
        penalised = impact.impact_kl_coef > 0
        loss = impact_loss(
            online_log_probs=self.dist.log_prob(params, steps.a_tm1),
            target_log_probs=self.dist.log_prob(target_params, steps.a_tm1),
            behaviour_log_probs=self.dist.log_prob(steps.mu_tm1, steps.a_tm1),
            entropy=self.dist.entropy(params),
            v_tm1=steps.v_tm1,
            bootstrap_value=steps.bootstrap_value,
            r_t=steps.r_t,
            discount_t=steps.discount_t,
            valid=steps.valid,
            kl=kl if penalised else None,
            kl_coef=self.kl_coef.to(params.dtype),
            clip_epsilon=impact.impact_clip_epsilon,
            clip_is_threshold=impact.impact_clip_is,
            **vtrace_settings(cfg),
        )
        mean_kl = _reduce(kl.detach(), steps.valid, "mean")
        metrics = {
            "loss/total": loss.total.detach(),
            "loss/pg": loss.policy_loss.detach(),
            "loss/baseline": loss.baseline_loss.detach(),
            "loss/entropy": loss.entropy_loss.detach(),
            "impact/clip_frac": loss.clip_fraction,
            "impact/kl": mean_kl,
            "impact/kl_coef": self.kl_coef.float().clone(),
            "impact/target_age": (self.steps % self.target_period).float(),
        }
        if penalised:
            coef = adapt_kl_coef(float(self.kl_coef), float(mean_kl), impact.impact_kl_target)
            self.kl_coef.fill_(min(max(coef, KL_COEF_RANGE[0]), KL_COEF_RANGE[1]))
        self.steps += 1
        return ObjectiveResult(loss.total, metrics)
