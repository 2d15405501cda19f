"""Policy-value MLP for flat observations and discrete actions.

`build_model` sizes it from the environment's spaces, never from constants, so the same code
serves CartPole, Acrobot or any Box-observation / Discrete-action task.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from beast.models.agent import AgentOutput, linear_head

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _mlp(width: int, hidden_sizes: tuple[int, ...], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for hidden in hidden_sizes:
        linear = nn.Linear(width, hidden)
        nn.init.orthogonal_(linear.weight, gain=math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers += [linear, _ACTIVATIONS[activation]()]
        width = hidden
    return nn.Sequential(*layers)


class MLPTorso(nn.Module):
    """[N, *obs_shape] → [N, hidden_sizes[-1]]: the MLP as the torso of a recurrent model."""

    def __init__(self, obs_shape: tuple[int, ...], hidden_sizes: tuple[int, ...],
                 activation: str) -> None:
        super().__init__()
        self.obs_size = math.prod(obs_shape)
        self.layers = _mlp(self.obs_size, hidden_sizes, activation)
        self.feature_size = hidden_sizes[-1]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.layers(obs.reshape(obs.shape[0], self.obs_size).float())


class PolicyValueMLP(nn.Module):
    """A policy tower (logits) and a value tower (baseline), or one shared torso for both.

    Separate towers are the default: returns grow to hundreds on tasks like CartPole, and value
    gradients of that size through a shared torso swamp the policy's. The policy head starts
    small (near-uniform policy), which keeps early importance weights near 1.
    """

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int,
                 hidden_sizes: tuple[int, ...] = (64, 64), activation: str = "tanh",
                 shared_torso: bool = False) -> None:
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.obs_size = math.prod(self.obs_shape)
        self.num_actions = num_actions
        width = hidden_sizes[-1]
        self.policy_torso = _mlp(self.obs_size, hidden_sizes, activation)
        self.value_torso = (self.policy_torso if shared_torso
                            else _mlp(self.obs_size, hidden_sizes, activation))
        self.policy = linear_head(width, num_actions, gain=0.01)
        self.baseline = linear_head(width, 1, gain=1.0)

    core_state_shape = None  # feed-forward

    def initial_state(self, batch_size: int) -> None:
        return None

    def forward(self, obs: torch.Tensor, core_state: torch.Tensor | None = None,
                done: torch.Tensor | None = None) -> AgentOutput:
        """`core_state` and `done` are accepted (and ignored) so every model is called alike."""
        lead = obs.shape[: obs.dim() - len(self.obs_shape)]
        flat = obs.reshape(*lead, self.obs_size).float()
        policy_hidden = self.policy_torso(flat)
        value_hidden = (policy_hidden if self.value_torso is self.policy_torso
                        else self.value_torso(flat))
        return AgentOutput(self.policy(policy_hidden), self.baseline(value_hidden).squeeze(-1))
