"""The agent network shape every Beast model follows: torso → optional LSTM core → two heads.

`forward(obs, core_state=None, done=None)` takes observations `[*lead, *obs_shape]`. A
feed-forward model accepts any leading dims and ignores the state; a recurrent one needs
`[T, B, ...]` observations, the state entering step 0 and the steps' `done` flags (see
beast.models.core for the convention), and returns the state entering step T.

What a model declares (the rollout schema is built from it, beast.rollout):
- `dist`: its action distribution (beast.distributions); the policy head outputs
  `dist.param_size` parameters per step (`policy_params`).
- `core_state_shape`: the recurrent state's shape per env, or None.
- `extra_outputs`: name → per-step shape of any further float32 output the model returns in
  `AgentOutput.extras` (empty for Beast's models). Actors record them in the rollout and the
  learner's batch carries them, in every runtime.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from beast.distributions import ActionDistribution, DiagGaussian
from beast.models.core import LSTMCore


class AgentOutput(NamedTuple):
    """What a policy-value model returns for observations of shape [*lead, *obs_shape]."""

    policy_params: torch.Tensor  # [*lead, dist.param_size]
    baseline: torch.Tensor  # [*lead]
    core_state: torch.Tensor | None = None  # [B, *core_state_shape]; None when feed-forward
    extras: dict[str, torch.Tensor] | None = None  # name -> [*lead, *extra_outputs[name]]


def linear_head(width: int, outputs: int, gain: float) -> nn.Linear:
    """An orthogonally initialised output layer (small gain: near-uniform initial policy)."""
    linear = nn.Linear(width, outputs)
    nn.init.orthogonal_(linear.weight, gain=gain)
    nn.init.zeros_(linear.bias)
    return linear


class GaussianHead(nn.Module):
    """State-dependent mean, learned state-independent log-std (initially 0: std 1)."""

    def __init__(self, width: int, size: int) -> None:
        super().__init__()
        self.mean = linear_head(width, size, gain=0.01)
        self.log_std = nn.Parameter(torch.zeros(size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        mean = self.mean(features)
        return torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)


def policy_head(width: int, dist: ActionDistribution) -> nn.Module:
    """The layer from features to `dist.param_size` policy parameters."""
    if isinstance(dist, DiagGaussian):
        return GaussianHead(width, dist.size)
    return linear_head(width, dist.param_size, gain=0.01)


def act_step(model: nn.Module, obs: torch.Tensor, core_state: torch.Tensor | None,
             done: torch.Tensor) -> AgentOutput:
    """One time step for B envs, as actors, PolyBeast's inference and `--eval` take it.

    obs [B, *obs_shape]; done [B]: o_t ended an episode (the state after this step is cleared
    there); `core_state` is the state entering this step, None for a feed-forward model.
    Returns one AgentOutput (not a pair): `policy_params` [B, dist.param_size], `baseline`
    [B], `core_state` the state entering the next step (None for a feed-forward model) and
    `extras` (name -> [B, ...], or None).
    """
    if core_state is None:
        return model(obs)
    output = model(obs[None], core_state, done[None])
    extras = {k: v[0] for k, v in output.extras.items()} if output.extras else None
    return AgentOutput(output.policy_params[0], output.baseline[0], output.core_state, extras)


class PolicyValueNet(nn.Module):
    """A shared torso (features of size `feature_size`), an optional LSTM, policy and value heads."""

    extra_outputs: dict[str, tuple[int, ...]] = {}

    def __init__(self, torso: nn.Module, feature_size: int, obs_shape: tuple[int, ...],
                 dist: ActionDistribution, lstm_size: int = 0) -> None:
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.dist = dist
        self.torso = torso
        self.core = LSTMCore(feature_size, lstm_size) if lstm_size > 0 else None
        width = lstm_size or feature_size
        self.policy = policy_head(width, dist)
        self.baseline = linear_head(width, 1, gain=1.0)

    @property
    def core_state_shape(self) -> tuple[int, ...] | None:
        return self.core.state_shape if self.core is not None else None

    def initial_state(self, batch_size: int) -> torch.Tensor | None:
        return self.core.initial_state(batch_size) if self.core is not None else None

    def forward(self, obs: torch.Tensor, core_state: torch.Tensor | None = None,
                done: torch.Tensor | None = None) -> AgentOutput:
        lead = obs.shape[: obs.dim() - len(self.obs_shape)]
        features = self.torso(obs.reshape(math.prod(lead), *self.obs_shape))
        new_state = None
        if self.core is not None:
            if len(lead) != 2:
                raise ValueError(f"a recurrent model needs [T, B, ...] observations, got lead {tuple(lead)}")
            if core_state is None:
                core_state = features.new_zeros(lead[1], *self.core.state_shape)
            if done is None:
                done = torch.zeros(lead, dtype=torch.bool, device=obs.device)
            features, new_state = self.core(features.reshape(*lead, -1), core_state, done.bool())
        features = features.reshape(*lead, -1)
        return AgentOutput(self.policy(features), self.baseline(features).squeeze(-1), new_state)
