"""The V-MPO objective (beast.algo.vmpo), with the state that loss needs between steps.

What it owns, all in its state_dict (checkpoints, --resume):
- `old`: a frozen copy of the online model (pi_old), hard-copied from it every
  `--vmpo-target-period` learner steps (spec T_target = 100); the KL trust region is to it.
- the raw duals, `nn.Parameter`s optimised with the model by the learner's optimiser and
  mapped through `positive_dual` (softplus + 1e-8), so eta and alpha stay positive:
  `raw_eta`, and `raw_alpha` for discrete policies or `raw_alpha_mu` and `raw_alpha_sigma`
  for a Gaussian, whose mean and covariance KLs are bounded apart (decoupled_gaussian_kl).
- `steps`: learner steps taken, so a resumed run keeps the copy period.

No importance weights and no entropy bonus (the spec), so --entropy-cost, --baseline-cost,
--clip-* and --reduction do not apply; rewards and discounts follow --reward-scale,
--reward-clip and --discount as for every loss.

Each call is one learner step (the learner calls it once per optimiser step):

    objective = VmpoObjective(loss_config, vmpo_config, model)
    learner = Learner(model, objective, optim_config, ...)   # optimises model + raw duals
    learner.step(batch):
        output = run_model(model, batch)
        objective(output, batch):
            if steps % target_period == 0: old <- model         # the previous step's weights
            pi_old = run_model(old, batch)                       # no grad, same call as above
            regions = [TrustRegion(KL(pi_old || pi), alpha, eps_alpha)]   # Gaussian: two
            loss = vmpo_loss(log pi(a), V, rewards, eta, regions)
            steps += 1
        loss.backward(); optimiser.step()                       # the duals move too
"""

from __future__ import annotations

import torch
from torch import nn

from beast.algo.vmpo import TrustRegion, decoupled_gaussian_kl, positive_dual, raw_dual, vmpo_loss
from beast.distributions import DiagGaussian
from beast.loss_config import LossConfig, VmpoConfig
from beast.models.agent import AgentOutput
from beast.objectives.base import (ObjectiveResult, frozen_copy, hard_update, keep_online,
                                   learner_transitions, run_model)


class VmpoObjective(nn.Module):
    """See the module docstring. `model` is the online net the learner trains."""

    def __init__(self, loss: LossConfig, vmpo: VmpoConfig, model: nn.Module) -> None:
        super().__init__()
        self.config = loss
        self.vmpo = vmpo
        self.dist = model.dist
        self.gaussian = isinstance(self.dist, DiagGaussian)
        keep_online(self, model)
        self.old = frozen_copy(model)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.raw_eta = nn.Parameter(raw_dual(vmpo.vmpo_eta_init))
        if self.gaussian:
            self.raw_alpha_mu = nn.Parameter(raw_dual(vmpo.vmpo_alpha_mu_init))
            self.raw_alpha_sigma = nn.Parameter(raw_dual(vmpo.vmpo_alpha_sigma_init))
        else:
            self.raw_alpha = nn.Parameter(raw_dual(vmpo.vmpo_alpha_init))

    def trust_regions(self, old_params: torch.Tensor, params: torch.Tensor
                      ) -> dict[str, TrustRegion]:
        """The KL bounds by metric name: one for a discrete policy, mean and covariance apart
        for a Gaussian."""
        vmpo = self.vmpo
        if self.gaussian:
            kl_mu, kl_sigma = decoupled_gaussian_kl(self.dist, old_params, params)
            return {"mu": TrustRegion(kl_mu, positive_dual(self.raw_alpha_mu),
                                      vmpo.vmpo_epsilon_alpha),
                    "sigma": TrustRegion(kl_sigma, positive_dual(self.raw_alpha_sigma),
                                         vmpo.vmpo_epsilon_alpha_sigma)}
        return {"": TrustRegion(self.dist.kl(old_params, params), positive_dual(self.raw_alpha),
                                vmpo.vmpo_epsilon_alpha)}

    def forward(self, output: AgentOutput, batch: dict[str, torch.Tensor]) -> ObjectiveResult:
        if int(self.steps) % self.vmpo.vmpo_target_period == 0:
            hard_update(self.old, self.online)
        steps = learner_transitions(batch, self.config, output.baseline)
        with torch.no_grad():
            old_params = steps.at_tm1(run_model(self.old, batch).policy_params)
        params = steps.at_tm1(output.policy_params)
        regions = self.trust_regions(old_params, params)
        loss = vmpo_loss(
            log_probs=self.dist.log_prob(params, steps.a_tm1),
            v_tm1=steps.v_tm1,
            bootstrap_value=steps.bootstrap_value,
            r_t=steps.r_t,
            discount_t=steps.discount_t,
            eta=positive_dual(self.raw_eta),
            trust_regions=list(regions.values()),
            valid=steps.valid,
            epsilon_eta=self.vmpo.vmpo_epsilon_eta,
        )
        metrics = {
            "loss/total": loss.total.detach(),
            "loss/pg": loss.policy_loss.detach(),
            "loss/baseline": loss.value_loss.detach(),
            "vmpo/temperature_loss": loss.temperature_loss.detach(),
            "vmpo/alpha_loss": loss.alpha_loss.detach(),
            "vmpo/eta": loss.eta,
            "vmpo/selected_frac": loss.selected_fraction,
        }
        for (name, _), alpha, kl in zip(regions.items(), loss.alpha, loss.kl):
            suffix = f"_{name}" if name else ""
            metrics[f"vmpo/alpha{suffix}"] = alpha
            metrics[f"vmpo/kl{suffix}"] = kl
        self.steps += 1
        return ObjectiveResult(loss.total, metrics)
