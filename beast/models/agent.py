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
  `AgentOutput.extras` (empty for Beast's models unless the episodic memory is on). Actors
  record them in the rollout and the learner's batch carries them, in every runtime.
- `step_inputs` (optional; empty when absent): the rollout keys the model reads at each step
  besides obs, core_state and done, passed as `forward(..., inputs={key: [T, B, ...]})`.
  With `CoreInputs.last_action_reward` those are `reward` (the reward that produced o_t) and
  `last_action` (a carried field: beast.acting feeds each step the features of the action
  before, zeros at an episode's start); with the memory, `mem_readout` too. An actor's model
  computes the readout (it is absent from `inputs`) and returns it in `extras`; the learner
  passes the rollout's readout back, so it replays exactly what the actor saw.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import torch
from torch import nn

from beast.distributions import ActionDistribution, DiagGaussian, action_feature_size
from beast.models.core import LSTMCore
from beast.rollout import LAST_ACTION, MEM_READOUT


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


@dataclasses.dataclass(frozen=True)
class CoreInputs:
    """What an LSTM core reads beside the torso's features (all off: the plain agent)."""

    last_action_reward: bool = False
    """The last action's features and the reward clipped to [-1, 1]."""
    memory_readout: int = 0
    """The episodic memory's readout width (beast.memory.readout_size); 0: no memory."""
    memory_key_size: int = 0
    """The memory's key width d: the model owns the key encoder g (features -> d), so actors
    get its weights with the model's."""


def act_step(model: nn.Module, obs: torch.Tensor, core_state: torch.Tensor | None,
             done: torch.Tensor, inputs: dict[str, torch.Tensor] | None = None) -> AgentOutput:
    """One time step for B envs, as actors, PolyBeast's inference and `--eval` take it.

    obs [B, *obs_shape]; done [B]: o_t ended an episode (the state after this step is cleared
    there); `core_state` is the state entering this step, None for a feed-forward model.
    Returns one AgentOutput (not a pair): `policy_params` [B, dist.param_size], `baseline`
    [B], `core_state` the state entering the next step (None for a feed-forward model) and
    `extras` (name -> [B, ...], or None). `inputs`: the model's `step_inputs` for this step
    ([B, ...] each), for a recurrent model that declares some.
    """
    if core_state is None:
        return model(obs)
    if inputs:
        output = model(obs[None], core_state, done[None], {k: v[None] for k, v in inputs.items()})
    else:
        output = model(obs[None], core_state, done[None])
    extras = {k: v[0] for k, v in output.extras.items()} if output.extras else None
    return AgentOutput(output.policy_params[0], output.baseline[0], output.core_state, extras)


class PolicyValueNet(nn.Module):
    """A shared torso (features of size `feature_size`), an optional LSTM, policy and value
    heads. `core_inputs` (recurrent models only) widens the core's input (CoreInputs)."""

    extra_outputs: dict[str, tuple[int, ...]] = {}
    step_inputs: tuple[str, ...] = ()

    def __init__(self, torso: nn.Module, feature_size: int, obs_shape: tuple[int, ...],
                 dist: ActionDistribution, lstm_size: int = 0,
                 core_inputs: CoreInputs = CoreInputs()) -> None:
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.dist = dist
        self.torso = torso
        self.feature_size = feature_size
        if core_inputs != CoreInputs() and lstm_size <= 0:
            raise ValueError("the core's extra inputs (last action and reward, the episodic "
                             "memory) need an LSTM core: add --use-lstm")
        self.core_inputs = core_inputs
        core_size = feature_size
        if core_inputs.last_action_reward:
            self.step_inputs = ("reward", LAST_ACTION)
            core_size += action_feature_size(dist) + 1
        self.memory_key: nn.Module | None = None
        # Set by the runtime: queries [N, d] -> readouts [N, memory_readout]; None reads zeros.
        self.memory_reader: Callable[[torch.Tensor], torch.Tensor] | None = None
        if core_inputs.memory_readout:
            from beast.memory import make_key_encoder  # only with the memory on

            self.memory_key = make_key_encoder(feature_size, core_inputs.memory_key_size)
            self.step_inputs = (*self.step_inputs, MEM_READOUT)
            self.extra_outputs = {MEM_READOUT: (core_inputs.memory_readout,)}
            core_size += core_inputs.memory_readout
        self.core = LSTMCore(core_size, lstm_size) if lstm_size > 0 else None
        width = lstm_size or feature_size
        self.policy = policy_head(width, dist)
        self.baseline = linear_head(width, 1, gain=1.0)

    @property
    def core_state_shape(self) -> tuple[int, ...] | None:
        return self.core.state_shape if self.core is not None else None

    def initial_state(self, batch_size: int) -> torch.Tensor | None:
        return self.core.initial_state(batch_size) if self.core is not None else None

    def read_memory(self, features: torch.Tensor) -> torch.Tensor:
        """The memory's readout [N, memory_readout] for torso features [N, F]: what an actor's
        model reads (no grad into the torso); zeros without a reader."""
        from beast.memory import encode_keys

        assert self.memory_key is not None
        with torch.no_grad():
            queries = encode_keys(self.memory_key, features.detach())
            if self.memory_reader is None:
                return features.new_zeros(len(features), self.core_inputs.memory_readout)
            return self.memory_reader(queries).to(features.dtype)

    def _core_input(self, features: torch.Tensor, inputs: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[N, F] features → the core's [N, core_size] input and the readout (None: no memory)."""
        n = len(features)
        parts, readout = [features], None
        try:
            if self.core_inputs.last_action_reward:
                parts.append(inputs[LAST_ACTION].reshape(n, -1).to(features.dtype))
                parts.append(inputs["reward"].reshape(n, 1).to(features.dtype).clamp(-1.0, 1.0))
        except KeyError as exc:
            raise ValueError(f"this model reads {', '.join(self.step_inputs)} at each step; "
                             f"inputs has no {exc}") from None
        if self.memory_key is not None:
            given = inputs.get(MEM_READOUT)
            readout = (self.read_memory(features) if given is None
                       else given.reshape(n, -1).to(features.dtype))
            parts.append(readout)
        return (torch.cat(parts, dim=-1) if len(parts) > 1 else features), readout

    def forward(self, obs: torch.Tensor, core_state: torch.Tensor | None = None,
                done: torch.Tensor | None = None,
                inputs: dict[str, torch.Tensor] | None = None) -> AgentOutput:
        lead = obs.shape[: obs.dim() - len(self.obs_shape)]
        features = self.torso(obs.reshape(math.prod(lead), *self.obs_shape))
        new_state, extras = None, None
        if self.core is not None:
            if len(lead) != 2:
                raise ValueError(f"a recurrent model needs [T, B, ...] observations, got lead {tuple(lead)}")
            if core_state is None:
                core_state = features.new_zeros(lead[1], *self.core.state_shape)
            if done is None:
                done = torch.zeros(lead, dtype=torch.bool, device=obs.device)
            core_in, readout = self._core_input(features, inputs or {})
            if readout is not None:
                extras = {MEM_READOUT: readout.reshape(*lead, -1)}
            features, new_state = self.core(core_in.reshape(*lead, -1), core_state, done.bool())
        features = features.reshape(*lead, -1)
        return AgentOutput(self.policy(features), self.baseline(features).squeeze(-1), new_state,
                           extras)
