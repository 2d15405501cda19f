"""Objectives: what the learner minimises, given the model's outputs on a batch.

An objective is an `nn.Module` called as `objective(output, batch)` with the model's
`AgentOutput` over a [T+1, B] batch; it returns an `ObjectiveResult` (the scalar loss and its
metrics). It owns whatever else it needs (target networks, dual variables): its parameters
are optimised with the model's, and its state_dict goes into checkpoints.

    objective = build_objective(config.loss, model.dist)
    learner = Learner(model, objective, config.optim, ...)    # beast.learner
"""

from __future__ import annotations

from torch import nn

from beast.config import LossConfig
from beast.distributions import ActionDistribution
from beast.objectives.base import ObjectiveResult
from beast.objectives.impala import ImpalaObjective

__all__ = ["ImpalaObjective", "ObjectiveResult", "build_objective"]


def build_objective(config: LossConfig, dist: ActionDistribution) -> nn.Module:
    """The objective named by `config.objective` for a policy with distribution `dist`."""
    if config.objective == "impala":
        return ImpalaObjective(config, dist)
    raise ValueError(f"unknown objective {config.objective!r}")
