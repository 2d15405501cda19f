"""Policy-value MLP for flat observations (Box, or packed Discrete / Dict entries).

`build_model` sizes it from the environment's spaces, never from constants, so the same code
serves CartPole, Pendulum, FrozenLake or any flat-observation task with any action space.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from beast.distributions import ActionDistribution
from beast.models.agent import AgentOutput, linear_head, policy_head
from beast.models.encoders import FlatEncoder

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp_layers(width: int, hidden_sizes: tuple[int, ...], activation: str) -> nn.Sequential:
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

    def __init__(self, encoder: FlatEncoder, hidden_sizes: tuple[int, ...],
                 activation: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.layers = mlp_layers(encoder.out_size, hidden_sizes, activation)
        self.feature_size = hidden_sizes[-1]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.layers(self.encoder(obs))


class PolicyValueMLP(nn.Module):
    """A policy tower (distribution parameters) and a value tower (baseline), or one shared
    torso for both.

    Separate towers are the default: returns grow to hundreds on tasks like CartPole, and value
    gradients of that size through a shared torso swamp the policy's. The policy head starts
    small (near-uniform policy), which keeps early importance weights near 1.
    """

    core_state_shape = None  # feed-forward
    extra_outputs: dict[str, tuple[int, ...]] = {}

    def __init__(self, encoder: FlatEncoder, obs_shape: tuple[int, ...],
                 dist: ActionDistribution, hidden_sizes: tuple[int, ...] = (64, 64),
                 activation: str = "tanh", shared_torso: bool = False) -> None:
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.encoder = encoder
        self.dist = dist
        width = hidden_sizes[-1]
        self.policy_torso = mlp_layers(encoder.out_size, hidden_sizes, activation)
        self.value_torso = (self.policy_torso if shared_torso
                            else mlp_layers(encoder.out_size, hidden_sizes, activation))
        self.policy = policy_head(width, dist)
        self.baseline = linear_head(width, 1, gain=1.0)

    def initial_state(self, batch_size: int) -> None:
        return None

    def forward(self, obs: torch.Tensor, core_state: torch.Tensor | None = None,
                done: torch.Tensor | None = None) -> AgentOutput:
        """`core_state` and `done` are accepted (and ignored) so every model is called alike."""
        lead = obs.shape[: obs.dim() - len(self.obs_shape)]
        flat = self.encoder(obs.reshape(math.prod(lead), *self.obs_shape))
        policy_hidden = self.policy_torso(flat)
        value_hidden = (policy_hidden if self.value_torso is self.policy_torso
                        else self.value_torso(flat))
        params = self.policy(policy_hidden).reshape(*lead, -1)
        return AgentOutput(params, self.baseline(value_hidden).reshape(lead))
