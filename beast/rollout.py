"""RolloutSpec: the one schema of a rollout — names, per-step shapes and dtypes.

It is built once, from the env's spaces and what the model declares it outputs per step
(`RolloutSpec.build`), and every runtime takes it as data: MonoBeast's shared slots and
workers, PolyBeast's inference thread and the C++ actor pool (which gets the agent half as
key -> (dtype, shape)). No other file lists rollout keys.

Both runtimes store unrolls as dicts of arrays shaped [T+1, B, *shape] (time-major; step 0
repeats the last step of the previous unroll). Entry t holds the observation o_t with the
reward / terminated / truncated of the transition that produced it (the env half, `ENV_KEYS`),
and the agent's output at o_t (the agent half: action a_t, the policy's distribution
parameters, the baseline, the policy version that chose it, the core state a recurrent model
acted from, the last action's features for a core that reads them (`last_action`), and any
extra output the model declares, e.g. the episodic memory's `mem_readout`). So the learner's transition t is
(o_t, a_t, reward[t+1], terminated[t+1], o_{t+1}); `beast.algo.align_rollout` is the one place
that turns an unroll into such per-transition tensors.

Buffers start poisoned (NaN for floats, -1 for integers) so reading a step nobody wrote shows.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from beast.distributions import action_feature_size


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One rollout key: shape per step and environment, dtype."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def poison(self) -> float | int | bool:
        if np.issubdtype(self.dtype, np.floating):
            return np.nan
        if np.issubdtype(self.dtype, np.signedinteger):
            return -1
        if np.issubdtype(self.dtype, np.unsignedinteger):
            return np.iinfo(self.dtype).max
        return False  # bool has no spare value; every writer sets these at every step

    def nbytes(self, leading: tuple[int, ...]) -> int:
        return math.prod(leading + self.shape) * self.dtype.itemsize


F32, I64 = np.dtype(np.float32), np.dtype(np.int64)
# The env half of every entry: what the env (or the runtime's running sums) wrote.
ENV_KEYS = ("obs", "reward", "terminated", "truncated", "episode_return", "episode_step")
# Agent outputs carried from step to step (fed back as the next step's input, recorded as
# the value entering each step): a recurrent model's state, and the last action's features
# for a model whose core reads them (beast.models.agent, `step_inputs`).
CORE_STATE = "core_state"
LAST_ACTION = "last_action"
# The episodic memory's readout an actor's model computed (beast.memory): an extra output,
# replayed to the learner's model as an input so that it sees what the actor saw.
MEM_READOUT = "mem_readout"

ENV_STEP_FIELDS = {
    "reward": FieldSpec((), F32),
    "terminated": FieldSpec((), np.dtype(bool)),
    "truncated": FieldSpec((), np.dtype(bool)),
    "episode_return": FieldSpec((), F32),
    "episode_step": FieldSpec((), np.dtype(np.int32)),
}
"""The env half's per-step scalars (ENV_KEYS but obs, whose spec comes from the space)."""


def agent_fields(model: nn.Module) -> dict[str, FieldSpec]:
    """The agent half of an entry, from what `model` declares (beast.models.agent)."""
    dist = model.dist
    fields = {
        "action": FieldSpec(tuple(dist.action_shape), np.dtype(dist.action_dtype)),
        "policy_params": FieldSpec((dist.param_size,), F32),
        "baseline": FieldSpec((), F32),
        "policy_version": FieldSpec((), I64),
    }
    if model.core_state_shape is not None:
        fields[CORE_STATE] = FieldSpec(tuple(model.core_state_shape), F32)
    if LAST_ACTION in getattr(model, "step_inputs", ()):
        fields[LAST_ACTION] = FieldSpec((action_feature_size(dist),), F32)
    for name, shape in model.extra_outputs.items():
        if name in fields or name in ENV_KEYS:
            raise ValueError(f"the model's extra output {name!r} clashes with a rollout key")
        fields[name] = FieldSpec(tuple(shape), F32)
    return fields


@dataclasses.dataclass(frozen=True)
class RolloutSpec:
    """The rollout keys for an environment and a model."""

    fields: dict[str, FieldSpec]

    @classmethod
    def build(cls, observation_space: gym.Space, model: nn.Module) -> RolloutSpec:
        """The schema for envs with this (adapted, beast.envs.spaces) observation space and
        this model."""
        obs = FieldSpec(tuple(observation_space.shape), np.dtype(observation_space.dtype))
        return cls({"obs": obs, **ENV_STEP_FIELDS, **agent_fields(model)})

    @property
    def agent(self) -> dict[str, FieldSpec]:
        """The agent half: what an actor's policy writes at each step."""
        return {k: f for k, f in self.fields.items() if k not in ENV_KEYS}

    def allocate(self, leading: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Fresh poisoned arrays shaped [*leading, *field.shape] (e.g. leading = (T+1, B))."""
        return {name: np.full(leading + f.shape, f.poison, dtype=f.dtype)
                for name, f in self.fields.items()}


def game_over(terminated: np.ndarray, truncated: np.ndarray, info: dict) -> np.ndarray:
    """Where a vector env step ended a whole game: the env's `info["game_over"]` under episodic
    life (a lost life is `terminated` while the game goes on), else terminated | truncated."""
    if "game_over" in info:
        return np.asarray(info["game_over"], bool)
    return np.logical_or(terminated, truncated)


def finished_episodes(rollout: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of the episodes that ended at steps 0..T-1 of a [T+1, B] rollout.

    An episode ended at step t when o_t ended it (terminated or truncated) and the running
    sums restart at t+1 (episode_step 0). The second condition is what tells a game's end
    from a lost life under --episodic-life: a life loss is `terminated` for the learner but
    the game, and its reported return, go on. An end at step T is counted by the next unroll,
    whose step 0 repeats it, so every episode is counted once.
    """
    ended = np.logical_or(rollout["terminated"][:-1], rollout["truncated"][:-1])
    done = ended & (rollout["episode_step"][1:] == 0)
    return rollout["episode_return"][:-1][done], rollout["episode_step"][:-1][done]


def stack_slots(arrays: dict[str, np.ndarray], indices: list[int]) -> dict[str, np.ndarray]:
    """Copy slots of [S, T+1, K, ...] arrays into one batch [T+1, len(indices)*K, ...]."""
    return {key: np.concatenate([array[i] for i in indices], axis=1)
            for key, array in arrays.items()}


class EpisodeCounter:
    """Env steps and finished episodes of the fresh unrolls a batch source hands out.

    Counted at the source, once per unroll produced, so a learner that uses a batch twice
    (IMPACT's circular buffer) or samples a replay changes neither the step budget, the LR
    schedule nor the episode statistics.

        counter.add(unrolls)          # every fresh [T+1, B] batch, once
        counter.env_steps             # T * B per batch so far
        counter.take_returns()        # returns finished since the last call
    """

    def __init__(self) -> None:
        self.env_steps = 0
        self.episodes = 0
        self._returns: list[float] = []

    def add(self, unrolls: dict[str, np.ndarray]) -> None:
        returns, _ = finished_episodes(unrolls)
        time_steps, batch = unrolls["reward"].shape[:2]
        self.env_steps += (time_steps - 1) * batch
        self.episodes += len(returns)
        self._returns.extend(returns.tolist())

    def take_returns(self) -> list[float]:
        returns, self._returns = self._returns, []
        return returns


class Batch(NamedTuple):
    """What a batch source hands the learner: the [T+1, B, ...] tensors and, for weight
    sync, which policy copy acted each group of columns (`owners`, equal-sized groups in
    order; empty when the source has nothing to sync, e.g. the serial mode)."""

    data: dict[str, torch.Tensor]
    owners: tuple[int, ...] = ()
