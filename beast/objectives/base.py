"""What every objective returns, and the pieces the objectives share: the model's inputs for
a batch, the batch's transitions as the losses see them, and frozen target copies of the model."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, NamedTuple

import torch
from torch import nn

from beast.algo.losses import clip_rewards
from beast.algo.timestep import AlignedTransitions, align_rollout
from beast.loss_config import LossConfig
from beast.models.agent import AgentOutput
from beast.rollout import CORE_STATE


class ObjectiveResult(NamedTuple):
    loss: torch.Tensor
    """Scalar to minimise (with grad)."""
    metrics: dict[str, torch.Tensor]
    """Scalar diagnostics (no grad), logged as they are named, e.g. "loss/pg"."""


def run_model(model: nn.Module, batch: dict[str, torch.Tensor]) -> AgentOutput:
    """The model over a [T+1, B] batch: how the learner runs the online net and the objectives
    their target nets. A recurrent model replays the unroll from the state its actor had at
    step 0; the steps' own end flags clear the state where episodes end (beast.models.core).
    A model with `step_inputs` (last action, reward, the memory's readout) gets the rollout's
    values, the ones its actor saw."""
    done = batch["terminated"] | batch["truncated"]
    core_state = batch[CORE_STATE][0] if CORE_STATE in batch else None
    step_inputs = getattr(model, "step_inputs", ())
    if step_inputs:
        return model(batch["obs"], core_state, done, {key: batch[key] for key in step_inputs})
    return model(batch["obs"], core_state, done)


def learner_transitions(batch: dict[str, torch.Tensor], config: LossConfig,
                        values: torch.Tensor) -> AlignedTransitions:
    """The [T, B] transitions of a [T+1, B] batch as every loss sees them: `align_rollout`
    (beast.algo.timestep, the one place that knows the time-index convention) with the
    --discount, and its rewards scaled by --reward-scale, then clipped by --reward-clip.
    `values` is the online critic's baseline over the batch ([T+1, B]); the discount is zeroed
    by termination, not by truncation."""
    steps = align_rollout(batch, config.discount, values=values)
    rewards = clip_rewards(config.reward_scale * steps.r_t, config.reward_clip)
    return dataclasses.replace(steps, r_t=rewards)


def vtrace_settings(config: LossConfig) -> dict[str, Any]:
    """The keyword arguments IMPALA and IMPACT both pass their loss from the shared group:
    term weights, V-trace clips and lambda, and the reduction."""
    return {"baseline_cost": config.baseline_cost, "entropy_cost": config.entropy_cost,
            "clip_rho_threshold": config.clip_rho, "clip_c_threshold": config.clip_c,
            "clip_pg_rho_threshold": config.clip_pg_rho, "lambda_": config.vtrace_lambda,
            "reduction": config.reduction}


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` for a target network: its parameters do not require grad, so the
    learner's optimiser (which takes the parameters that do) never updates it, while it is
    still a submodule: it moves with `.to(device)` and is part of the objective's state_dict
    (checkpoints, --resume)."""
    target = copy.deepcopy(model)
    target.requires_grad_(False)
    return target


def hard_update(target: nn.Module, online: nn.Module) -> None:
    """Copy the online net's weights into the target net (in place; still frozen)."""
    target.load_state_dict(online.state_dict())


def keep_online(objective: nn.Module, model: nn.Module) -> None:
    """Give `objective` a reference to the online model, `objective.online`, without making
    it a submodule: the learner optimises and checkpoints the model already, and a submodule
    would be optimised and checkpointed twice."""
    object.__setattr__(objective, "online", model)
