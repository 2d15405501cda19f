"""The learner: one SGD step of a model on an objective. No processes, no threads, no I/O.

The `Learner` owns the optimiser, the learning-rate schedule, gradient clipping, the policy
version and the checkpoint state; the objective (beast.objectives) owns what the loss is.

Call loop (beast.training, both runtimes)::

    learner = Learner(model, objective, optim_config, total_steps=..., device="cpu",
                      memory=build_memory(...))          # beast.memory.feed; None: off
    while training:
        batch = source.next_batch(...)               # a Batch of [T+1, B, ...] tensors (beast.rollout)
        result = learner.step(batch.data, env_steps) # one optimiser step; version += 1
        source.publish_weights(learner)              # the runtime makes the weights available
        source.sync.after_step(result, batch.owners, ...)    # the sync driver reads result.drift
    learner.state_dict() / load_state_dict(...)      # checkpoints

`env_steps` is the run's env-step count as the source counted it (beast.rollout.EpisodeCounter):
the LR schedule follows the data produced, not the number of times a batch was used.
`Learner.step` lists the batch keys it reads; a batch that breaks that contract, or a step that
raises for any reason, leaves the learner as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from beast.algo.timestep import AlignedTransitions, align_rollout
from beast.batch_contract import as_tensors, check_learner_batch, learner_fields
from beast.config import OptimConfig
from beast.memory.feed import MemoryTrainer
from beast.objectives.base import run_model


def build_optimizer(params: Any, config: OptimConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate, eps=config.epsilon)
    return torch.optim.RMSprop(params, lr=config.learning_rate, eps=config.epsilon,
                               alpha=config.rmsprop_alpha, momentum=config.momentum)


def linear_decay(initial: float, progress: float) -> float:
    """`initial` scaled down linearly to 0 as `progress` goes from 0 to 1."""
    return initial * max(0.0, 1.0 - progress)


class NonFiniteError(RuntimeError):
    """A NaN or inf reached the learner; the message names the first quantity and its source.
    The step is not applied, so the weights stay finite."""


def _check_batch(batch: dict[str, torch.Tensor]) -> None:
    for key in ("reward", "obs"):
        value = batch[key]
        if value.is_floating_point() and not torch.isfinite(value).all():
            where = torch.nonzero(~torch.isfinite(value))[0].tolist()
            raise NonFiniteError(f"env {key} is not finite (at [t, env, ...] = {where} of the "
                                 "batch): the environment returned it")


def _buffers(objective: Any) -> dict[str, torch.Tensor]:
    """Copies of the objective's buffers: its step counters and coefficients, all a failed step
    may have moved. (Its target copy, taken when the counter says so, is of the online weights,
    which a failed step leaves alone, so the retry takes the same copy.)"""
    if not isinstance(objective, nn.Module):
        return {}
    return {name: buffer.clone() for name, buffer in objective.named_buffers()}


def _restore(objective: Any, saved: dict[str, torch.Tensor]) -> None:
    if saved:
        buffers = dict(objective.named_buffers())
        with torch.no_grad():
            for name, value in saved.items():
                buffers[name].copy_(value)


class StepResult(NamedTuple):
    """What one learner step returns."""

    metrics: dict[str, float]
    """Scalars for the log: the objective's, the learner's own (learner/*), and counters."""
    drift: torch.Tensor
    """[T, B] KL(mu || pi) per step of the batch: what a sync controller reads (beast.sync)."""
    valid: torch.Tensor
    """[T, B] bool: the steps of `drift` that are real transitions."""


class Learner:
    """Owns the model being trained, its objective, the optimiser and the policy version.

    `version` is the int64 policy version: +1 per optimiser step; rollouts record the version
    that produced each step, so the learner measures policy lag instead of guessing it.
    """

    def __init__(self, model: nn.Module, objective: nn.Module, optim: OptimConfig,
                 total_steps: int, device: str | torch.device = "cpu",
                 memory: MemoryTrainer | None = None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.objective = objective.to(self.device)
        self.dist = model.dist
        self.optim_config = optim
        self.total_steps = total_steps
        # The objective's own parameters (e.g. V-MPO's duals) are optimised with the model's;
        # its frozen target networks (requires_grad False) are not, nor is the episodic
        # memory's key encoder, which the memory trains (beast.memory).
        key_encoder = getattr(model, "memory_key", None)
        own = {id(p) for p in key_encoder.parameters()} if key_encoder is not None else set()
        self.parameters = [p for p in (*self.model.parameters(), *self.objective.parameters())
                           if p.requires_grad and id(p) not in own]
        self.memory = memory
        self.optimizer = build_optimizer(self.parameters, optim)
        self.version = 0
        self.batch_fields = learner_fields(model)  # what step() checks a batch against

    def learning_rate(self, env_steps: int) -> float:
        """The rate for the run's `env_steps` (the unit of `total_steps`; see `step`)."""
        if self.optim_config.lr_decay == "none":
            return self.optim_config.learning_rate
        return linear_decay(self.optim_config.learning_rate, env_steps / self.total_steps)

    def step(self, batch: Mapping[str, torch.Tensor | np.ndarray], env_steps: int) -> StepResult:
        """One optimiser step on a [T+1, B] batch: the metrics and the per-step drift.

        `batch` maps keys to torch tensors or NumPy arrays (wrapped without a copy), laid out
        time-major as beast.rollout stores unrolls: step 0 repeats the previous unroll's last,
        and transition t is (o_t, a_t, reward[t+1], terminated[t+1], o_{t+1}), an alignment
        that `beast.algo.align_rollout` alone performs. Read here and by the objectives
        (beast.objectives)::

            key             shape                              dtype
            obs             [T+1, B, *model.obs_shape]         the env's (float32, uint8, ...)
            reward          [T+1, B]                           float32 (row 0 unused)
            terminated      [T+1, B]                           bool: stops bootstrapping
            truncated       [T+1, B]                           bool: bootstraps
            action          [T+1, B, *dist.action_shape]       dist.action_dtype (row T unused)
            policy_params   [T+1, B, dist.param_size]          float32: mu (row T unused)
            policy_version  [T+1, B]                           int64 (row T unused)
            core_state      [T+1, B, *model.core_state_shape]  float32; recurrent models only,
                                                               row 0 read (the replay's start)
            last_action     [T+1, B, action features]          float32; a core that reads it
            mem_readout     [T+1, B, readout width]            float32; with the memory

        Other keys (episode_return, episode_step, other model extras) are carried, unread;
        the episodic memory (`memory`) also reads baseline, for its return targets.
        Checked first (beast.batch_contract.BatchError, a ValueError naming the field): each
        key above is present, has reward's [T+1, B] leading dims (T >= 1), the trailing dims
        the model declares (obs's when the model has `obs_shape`) and the schema's dtype (obs's
        is not checked); and no step is still poisoned, judged by policy_version alone (-1, the
        buffers' poison; real versions are >= 0): one pass over [T+1, B] ints. Then obs and
        reward must be finite (NonFiniteError); those two are scanned in full.

        `env_steps` is the run's env-step count as the source counted it
        (beast.rollout.EpisodeCounter, run_training's `stats.env_steps`): T * B per fresh
        batch, the steps of every env summed, one agent action each (under Atari's frame skip
        a step is 4 frames). It is the unit of `total_steps` and only sets the learning rate.

        A step that raises (BatchError, NonFiniteError or any other) changes nothing: version,
        weights, optimiser state (moments, learning rate) and the objective's buffers (step
        counters, KL coefficient) are as before; the gradients are cleared. The episodic
        memory's update runs after a step that succeeded (it trains only its key encoder).
        """
        batch = check_learner_batch(as_tensors(batch), self.batch_fields)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        _check_batch(batch)
        saved = _buffers(self.objective)
        try:
            result = self._apply(batch, env_steps)
        except BaseException:
            _restore(self.objective, saved)
            self.optimizer.zero_grad(set_to_none=True)
            raise
        if self.memory is not None:  # after the step, which it never changes (beast.memory)
            result.metrics.update(self.memory.after_step(batch))
        return result

    def _apply(self, batch: dict[str, torch.Tensor], env_steps: int) -> StepResult:
        """The step itself. Everything that can raise runs before `optimizer.step()`, after
        which only the version changes, so a raise leaves the weights and optimiser as they were."""
        output = run_model(self.model, batch)  # recurrent: replayed from the actor's state
        result = self.objective(output, batch)
        if not torch.isfinite(result.loss):
            parts = [f"{name} = {float(value)}" for name, value in result.metrics.items()
                     if not torch.isfinite(value)]
            raise NonFiniteError(f"the loss is not finite at learner step {self.version + 1} "
                                 f"({', '.join(parts) or 'loss'}); the step was not applied")
        lr = self.learning_rate(env_steps)
        self.optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        max_norm = self.optim_config.max_grad_norm or float("inf")
        grad_norm = nn.utils.clip_grad_norm_(self.parameters, max_norm)
        if not torch.isfinite(grad_norm):
            raise NonFiniteError(f"the gradient norm is {float(grad_norm)} at learner step "
                                 f"{self.version + 1} (learning rate {lr}); the step was not "
                                 "applied")
        # The diagnostics read no reward or discount (1.0 is a placeholder): only the actions,
        # mu, versions and the mask, aligned exactly as the objectives align them.
        steps = align_rollout(batch, 1.0)
        # They compare mu with the policy before this update, at the version before it.
        drift, metrics = self._diagnostics(steps.at_tm1(output.policy_params).detach(), steps)
        metrics.update({name: float(value) for name, value in result.metrics.items()})
        metrics.update({"grad_norm": float(grad_norm), "learning_rate": lr})
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.version += 1
        metrics["version"] = float(self.version)
        return StepResult(metrics, drift, steps.valid)

    @torch.no_grad()
    def _diagnostics(self, learner_params: torch.Tensor, steps: AlignedTransitions
                     ) -> tuple[torch.Tensor, dict[str, float]]:
        """Off-policyness of the batch: KL(mu || pi) per state, |log rho|, policy lag, and the
        learner policy's entropy. Returns the per-step KL too (the sync controllers' drift)."""
        behaviour, actions, valid = steps.mu_tm1, steps.a_tm1, steps.valid
        kl = self.dist.kl(behaviour, learner_params)
        log_rhos = (self.dist.log_prob(learner_params, actions)
                    - self.dist.log_prob(behaviour, actions))
        entropy = self.dist.entropy(learner_params)
        lag = (self.version - steps.version_tm1)[valid].float()
        if not valid.any():
            zero = torch.zeros(1, device=kl.device)
            valid_kl, abs_log_rho, entropy, lag = zero, zero, zero, zero
        else:
            valid_kl, abs_log_rho, entropy = kl[valid], log_rhos[valid].abs(), entropy[valid]
        return kl, {
            "learner/kl_mean": float(valid_kl.mean()),
            "learner/kl_p95": float(torch.quantile(valid_kl.float(), 0.95)),
            "learner/log_rho_abs_mean": float(abs_log_rho.mean()),
            "learner/entropy": float(entropy.mean()),
            "learner/lag_mean": float(lag.mean()),
            "learner/lag_min": float(lag.min()),
            "learner/lag_max": float(lag.max()),
        }

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "objective": self.objective.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "version": self.version}
        if self.memory is not None:
            state["memory"] = self.memory.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state.get("objective", {}))
        self.optimizer.load_state_dict(state["optimizer"])
        self.version = int(state["version"])
        if self.memory is not None:
            self.memory.load_state_dict(state["memory"])
