"""RolloutSpec: the names, per-step shapes and dtypes of a rollout, derived from env spaces.

Both runtimes store unrolls as dicts of arrays shaped [T+1, B, *shape] (time-major; step 0
repeats the last step of the previous unroll). Entry t holds the observation o_t with the
reward / terminated / truncated of the transition that produced it, and the agent's output at
o_t (action a_t, its logits and baseline, the policy version that chose it and, for a
recurrent model, the core state it acted from). So the learner's transition t is
(o_t, a_t, reward[t+1], terminated[t+1], o_{t+1}).

Buffers start poisoned (NaN for floats, -1 for integers) so reading a step nobody wrote shows.
"""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np


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


@dataclasses.dataclass(frozen=True)
class RolloutSpec:
    """The rollout keys for an environment and a discrete-action policy."""

    fields: dict[str, FieldSpec]

    @classmethod
    def from_spaces(cls, observation_space: gym.Space, action_space: gym.Space,
                    core_state_shape: tuple[int, ...] | None = None) -> RolloutSpec:
        """`core_state_shape`: the model's (beast.models.core), or None for feed-forward models."""
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"rollouts support Discrete actions today, got {action_space}")
        num_actions = int(action_space.n)
        f32, i64 = np.dtype(np.float32), np.dtype(np.int64)
        fields = {
            "obs": FieldSpec(tuple(observation_space.shape), np.dtype(observation_space.dtype)),
            "reward": FieldSpec((), f32),
            "terminated": FieldSpec((), np.dtype(bool)),
            "truncated": FieldSpec((), np.dtype(bool)),
            "episode_return": FieldSpec((), f32),
            "episode_step": FieldSpec((), np.dtype(np.int32)),
            "action": FieldSpec((), i64),
            "policy_logits": FieldSpec((num_actions,), f32),
            "baseline": FieldSpec((), f32),
            "policy_version": FieldSpec((), i64),
        }
        if core_state_shape is not None:
            fields["core_state"] = FieldSpec(tuple(core_state_shape), f32)
        return cls(fields)

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
