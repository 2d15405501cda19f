"""The IMPALA learner: model + optimiser + V-trace loss. No processes, no threads, no I/O.

Call loop (both runtimes)::

    learner = Learner(model, loss_config, optim_config, total_steps=..., device="cpu")
    while training:
        batch = ...                      # dict of [T+1, B, ...] tensors (see beast.rollout)
        metrics = learner.step(batch)    # one optimiser step; learner.version += 1
        publish(learner.model, learner.version)   # runtime's job: actors pick the weights up
    torch.save(learner.state_dict(), ...)         # checkpoints; load_state_dict to resume
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from beast.algo.losses import categorical_kl, clip_rewards, impala_loss
from beast.config import LossConfig, OptimConfig


def build_optimizer(params: Any, config: OptimConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate, eps=config.epsilon)
    return torch.optim.RMSprop(params, lr=config.learning_rate, eps=config.epsilon,
                               alpha=config.rmsprop_alpha, momentum=config.momentum)


def linear_decay(initial: float, progress: float) -> float:
    """`initial` scaled down linearly to 0 as `progress` goes from 0 to 1."""
    return initial * max(0.0, 1.0 - progress)


class Learner:
    """Owns the model being trained, its optimiser and the counters that checkpoints carry.

    `version` is the int64 policy version: +1 per optimiser step; rollouts record the version
    that produced each step, so the learner measures policy lag instead of guessing it.
    """

    def __init__(self, model: nn.Module, loss: LossConfig, optim: OptimConfig, total_steps: int,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.loss_config = loss
        self.optim_config = optim
        self.total_steps = total_steps
        self.optimizer = build_optimizer(self.model.parameters(), optim)
        self.version = 0
        self.env_steps = 0
        self.last_kl: torch.Tensor | None = None  # [T, B] KL(mu || pi) of the last step
        self.last_valid: torch.Tensor | None = None  # [T, B] its real (unmasked) steps

    def learning_rate(self) -> float:
        if self.optim_config.lr_decay == "none":
            return self.optim_config.learning_rate
        return linear_decay(self.optim_config.learning_rate, self.env_steps / self.total_steps)

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimiser step on a [T+1, B] batch; returns scalar metrics."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        cfg = self.loss_config
        # A recurrent model replays the unroll from the state its actor had at step 0; the
        # steps' own end flags clear the state where episodes end (beast.models.core).
        done = batch["terminated"] | batch["truncated"]
        core_state = batch["core_state"][0] if "core_state" in batch else None
        output = self.model(batch["obs"], core_state, done)
        terminated_next = batch["terminated"][1:]
        # With next-step autoreset the action taken at a final observation is ignored by the
        # env, so transition t is real only if o_t did not end an episode.
        valid = ~(batch["terminated"][:-1] | batch["truncated"][:-1])
        learner_logits = output.policy_logits[:-1]
        behaviour_logits = batch["policy_logits"][:-1]
        loss = impala_loss(
            learner_logits=learner_logits,
            behaviour_logits=behaviour_logits,
            actions=batch["action"][:-1],
            values=output.baseline[:-1],
            bootstrap_value=output.baseline[-1].detach(),
            rewards=clip_rewards(batch["reward"][1:], cfg.reward_clip),
            discounts=cfg.discount * (~terminated_next).float(),
            valid=valid,
            baseline_cost=cfg.baseline_cost,
            entropy_cost=cfg.entropy_cost,
            clip_rho_threshold=cfg.clip_rho,
            clip_pg_rho_threshold=cfg.clip_pg_rho,
            clip_c_threshold=cfg.clip_c,
            lambda_=cfg.vtrace_lambda,
            reduction=cfg.reduction,
        )
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        max_norm = self.optim_config.max_grad_norm or float("inf")
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.optimizer.step()

        time_steps, batch_size = valid.shape
        self.env_steps += time_steps * batch_size
        metrics = self._diagnostics(learner_logits.detach(), behaviour_logits, valid,
                                    batch["policy_version"][:-1], loss.log_rhos)
        self.version += 1
        metrics.update({
            "loss/total": loss.total.item(),
            "loss/pg": loss.pg_loss.item(),
            "loss/baseline": loss.baseline_loss.item(),
            "loss/entropy": loss.entropy_loss.item(),
            "grad_norm": float(grad_norm),
            "learning_rate": lr,
            "version": float(self.version),
            "env_steps": float(self.env_steps),
        })
        return metrics

    def _diagnostics(self, learner_logits: torch.Tensor, behaviour_logits: torch.Tensor,
                     valid: torch.Tensor, policy_version: torch.Tensor,
                     log_rhos: torch.Tensor) -> dict[str, float]:
        """Off-policyness of the batch: KL(mu || pi) per state, importance weights, policy lag.

        Keeps the per-step KL (and its validity mask) in `last_kl` / `last_valid`: a sync
        controller reads the drift of each actor from there, at no extra cost.
        """
        kl = categorical_kl(behaviour_logits, learner_logits)
        self.last_kl, self.last_valid = kl, valid
        valid_kl = kl[valid]
        if valid_kl.numel() == 0:
            valid_kl = torch.zeros(1, device=kl.device)
        lag = (self.version - policy_version)[valid].float()
        if lag.numel() == 0:
            lag = torch.zeros(1, device=kl.device)
        rho_clipped = (log_rhos > math.log(self.loss_config.clip_rho))[valid]
        return {
            "aps/kl_mean": float(valid_kl.mean()),
            "aps/kl_p95": float(torch.quantile(valid_kl.float(), 0.95)),
            "aps/log_rho_abs_mean": float(log_rhos[valid].abs().mean()) if valid.any() else 0.0,
            "aps/rho_clip_frac": float(rho_clipped.float().mean()) if valid.any() else 0.0,
            "aps/lag_mean": float(lag.mean()),
            "aps/lag_min": float(lag.min()),
            "aps/lag_max": float(lag.max()),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "version": self.version, "env_steps": self.env_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.version = int(state["version"])
        self.env_steps = int(state["env_steps"])
