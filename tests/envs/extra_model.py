"""A model with one extra per-step output, for the rollout-schema tests (`--model-factory
tests.envs.extra_model:build`): `extra` [3] = (obs[0], 2 * obs[0], obs[1] + 1), a known
function of the observation, so a test can check the field reached the learner exactly."""

from __future__ import annotations

import gymnasium as gym
import torch

from beast.config import ModelConfig
from beast.models import AgentOutput, build_model


def extra_of(obs: torch.Tensor) -> torch.Tensor:
    return torch.stack([obs[..., 0], 2 * obs[..., 0], obs[..., 1] + 1], dim=-1).float()


class ExtraOutput(torch.nn.Module):
    extra_outputs = {"extra": (3,)}

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.dist = inner.dist
        self.core_state_shape = inner.core_state_shape

    def initial_state(self, batch_size: int):
        return self.inner.initial_state(batch_size)

    def forward(self, obs, core_state=None, done=None) -> AgentOutput:
        output = self.inner(obs, core_state, done)
        return output._replace(extras={"extra": extra_of(obs)})


def build(observation_space: gym.Space, action_space: gym.Space,
          config: ModelConfig) -> ExtraOutput:
    return ExtraOutput(build_model(observation_space, action_space, config))
