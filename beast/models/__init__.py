"""Policy-value models; `build_model` picks one from the environment's spaces."""

from __future__ import annotations

import gymnasium as gym

from beast.config import ModelConfig
from beast.models.mlp import AgentOutput, PolicyValueMLP
from beast.models.sampling import sample_actions

__all__ = ["AgentOutput", "PolicyValueMLP", "build_model", "sample_actions"]


def build_model(observation_space: gym.Space, action_space: gym.Space,
                config: ModelConfig) -> PolicyValueMLP:
    """The model for these spaces (today the MLP; image torsos plug in here)."""
    return PolicyValueMLP.from_spaces(observation_space, action_space,
                                      config.hidden_sizes, config.activation, config.shared_torso)
