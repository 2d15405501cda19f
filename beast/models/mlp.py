"""Policy-value MLP for flat observations and discrete actions.

Its sizes come from the environment's spaces (`from_spaces`), never from constants, so the same
code serves CartPole, Acrobot or any Box-observation / Discrete-action task.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import gymnasium as gym
import torch
from torch import nn


class AgentOutput(NamedTuple):
    """What a policy-value model returns for observations of shape [*lead, *obs_shape]."""

    policy_logits: torch.Tensor  # [*lead, num_actions]
    baseline: torch.Tensor  # [*lead]


_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


class PolicyValueMLP(nn.Module):
    """Shared MLP torso with a policy head (logits) and a value head (baseline)."""

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int,
                 hidden_sizes: tuple[int, ...] = (64, 64), activation: str = "tanh") -> None:
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.obs_size = math.prod(self.obs_shape)
        self.num_actions = num_actions
        layers: list[nn.Module] = []
        width = self.obs_size
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), _ACTIVATIONS[activation]()]
            width = hidden
        self.torso = nn.Sequential(*layers)
        self.policy = nn.Linear(width, num_actions)
        self.baseline = nn.Linear(width, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        """Orthogonal init with a small policy head: the initial policy is near uniform, which
        keeps early importance weights near 1 and speeds up learning noticeably on small tasks."""
        for module in self.torso:
            if isinstance(module, nn.Linear):
                nn.init.orthogonal_(module.weight, gain=math.sqrt(2))
                nn.init.zeros_(module.bias)
        nn.init.orthogonal_(self.policy.weight, gain=0.01)
        nn.init.zeros_(self.policy.bias)
        nn.init.orthogonal_(self.baseline.weight, gain=1.0)
        nn.init.zeros_(self.baseline.bias)

    @classmethod
    def from_spaces(cls, observation_space: gym.Space, action_space: gym.Space,
                    hidden_sizes: tuple[int, ...] = (64, 64),
                    activation: str = "tanh") -> "PolicyValueMLP":
        if not isinstance(observation_space, gym.spaces.Box):
            raise ValueError(f"the MLP needs a Box observation space, got {observation_space}")
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"the MLP policy needs a Discrete action space, got {action_space}")
        return cls(observation_space.shape, int(action_space.n), hidden_sizes, activation)

    def forward(self, obs: torch.Tensor) -> AgentOutput:
        lead = obs.shape[: obs.dim() - len(self.obs_shape)]
        hidden = self.torso(obs.reshape(*lead, self.obs_size).float())
        return AgentOutput(self.policy(hidden), self.baseline(hidden).squeeze(-1))
