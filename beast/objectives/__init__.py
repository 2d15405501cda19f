"""Objectives: what the learner minimises, given the model's outputs on a batch.

An objective is an `nn.Module` called as `objective(output, batch)` with the model's
`AgentOutput` over a [T+1, B] batch, once per learner step; it returns an `ObjectiveResult`
(the scalar loss and its metrics). It owns whatever else it needs (target networks, dual
variables, step counters): its trainable parameters are optimised with the model's, its frozen
target networks are not, and its whole state_dict goes into checkpoints. A learner step that
raises restores the objective's buffers (beast.learner), so an objective keeps its counters in
buffers and changes its frozen copies only by copying the online net, which a retry repeats.

    objective = build_objective(config.loss, model, impact=config.impact, vmpo=config.vmpo)
    learner = Learner(model, objective, config.optim, ...)    # beast.learner

- impala: `ImpalaObjective` (V-trace actor-critic; no state).
- impact: `ImpactObjective` (target network, step counter, adaptive KL coefficient).
- vmpo:   `VmpoObjective` (pi_old target network, step counter, learned duals).
"""

from __future__ import annotations

from torch import nn

from beast.loss_config import ImpactConfig, LossConfig, VmpoConfig
from beast.objectives.base import ObjectiveResult
from beast.objectives.impact import ImpactObjective
from beast.objectives.impala import ImpalaObjective
from beast.objectives.vmpo import VmpoObjective

__all__ = ["ImpactObjective", "ImpalaObjective", "ObjectiveResult", "VmpoObjective",
           "build_objective"]


def build_objective(config: LossConfig, model: nn.Module, *, impact: ImpactConfig | None = None,
                    vmpo: VmpoConfig | None = None) -> nn.Module:
    """The objective `config.loss` names, for the online `model` the learner will train (the
    objectives with target networks copy it). The groups of the other losses are not read."""
    if config.loss == "impala":
        return ImpalaObjective(config, model.dist)
    if config.loss == "impact":
        return ImpactObjective(config, impact or ImpactConfig(), model)
    if config.loss == "vmpo":
        return VmpoObjective(config, vmpo or VmpoConfig(), model)
    raise ValueError(f"unknown loss {config.loss!r}")
