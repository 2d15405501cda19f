"""Observation and action spaces as Beast's runtimes carry them.

Every runtime (shared-memory slots, the C++ actor pool, the wire) carries one observation
array per step. Envs with structured observations get one: `PackObservation` packs a Dict,
Tuple or Discrete observation into a flat `PackedBox` (each entry's values, flattened, in
order; a Discrete entry as its index), losslessly, in the narrowest dtype that holds every
entry (uint8 images and small Discrete entries stay uint8). The packed space keeps the
original space and the layout, and the model unpacks it into one torso per entry
(beast.models.encoders): a Discrete entry one-hot, an image entry through a CNN.

    env = adapt_spaces(gym.make("MiniGrid-Empty-5x5-v0"))   # Dict obs -> PackedBox, as-is otherwise
    env.observation_space.entries                           # [Entry("image", Box, 0, 147), ...]

Box actions are clipped into their bounds here too (Gymnasium's ClipAction): a Gaussian
policy's samples are unbounded, and the rollout keeps the unclipped sample (see
beast.distributions for why).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import gymnasium as gym
import numpy as np


@dataclasses.dataclass(frozen=True)
class Entry:
    """One observation entry inside a packed vector: [offset, offset + size)."""

    name: str
    space: gym.spaces.Box | gym.spaces.Discrete
    offset: int
    size: int

    @property
    def is_discrete(self) -> bool:
        return isinstance(self.space, gym.spaces.Discrete)


def _entries_of(space: gym.Space) -> list[tuple[str, gym.Space]]:
    if isinstance(space, gym.spaces.Dict):
        return list(space.spaces.items())
    if isinstance(space, gym.spaces.Tuple):
        return [(str(i), s) for i, s in enumerate(space.spaces)]
    return [("obs", space)]


def _entry_dtype(space: gym.spaces.Box | gym.spaces.Discrete) -> np.dtype:
    if isinstance(space, gym.spaces.Discrete):
        first, last = int(space.start), int(space.start + space.n - 1)
        return np.result_type(np.min_scalar_type(first), np.min_scalar_type(last))
    return np.dtype(space.dtype)


_WIDER = {np.dtype(np.uint16): np.dtype(np.int32), np.dtype(np.uint32): np.dtype(np.int64)}


class PackedBox(gym.spaces.Box):
    """A flat Box standing for a structured observation space (`original`, laid out as
    `entries`); it compares equal to a Box of the same shape, dtype and bounds."""

    def __init__(self, original: gym.Space) -> None:
        entries, offset = [], 0
        for name, space in _entries_of(original):
            if not isinstance(space, (gym.spaces.Box, gym.spaces.Discrete)):
                raise ValueError(f"unsupported observation entry {name!r}: {space} (Beast takes "
                                 f"Box and Discrete entries) in observation space {original}")
            size = 1 if isinstance(space, gym.spaces.Discrete) else math.prod(space.shape)
            entries.append(Entry(name, space, offset, size))
            offset += size
        if offset == 0:
            raise ValueError(f"observation space {original} has no entries")
        dtype = np.result_type(*(_entry_dtype(e.space) for e in entries))
        dtype = _WIDER.get(dtype, dtype)  # the wire and the C++ core carry no uint16 / uint32
        low = np.concatenate([self._bound(e.space, "low") for e in entries]).astype(dtype)
        high = np.concatenate([self._bound(e.space, "high") for e in entries]).astype(dtype)
        super().__init__(low=low, high=high, shape=(offset,), dtype=dtype)
        self.original = original
        self.entries = tuple(entries)

    @staticmethod
    def _bound(space: gym.spaces.Box | gym.spaces.Discrete, which: str) -> np.ndarray:
        if isinstance(space, gym.spaces.Discrete):
            value = space.start if which == "low" else space.start + space.n - 1
            return np.array([value], np.float64)
        return np.asarray(getattr(space, which), np.float64).reshape(-1)

    def pack(self, obs: Any) -> np.ndarray:
        """One observation of `original` as a flat array of this space."""
        if isinstance(self.original, gym.spaces.Dict):
            parts = [obs[e.name] for e in self.entries]
        elif isinstance(self.original, gym.spaces.Tuple):
            parts = list(obs)
        else:
            parts = [obs]
        return np.concatenate([np.asarray(p).reshape(-1) for p in parts]).astype(self.dtype)


def observation_space_error(space: gym.Space) -> str | None:
    """Why Beast cannot take this observation space, in one line; None when it can."""
    if isinstance(space, gym.spaces.Box):
        return None
    try:
        PackedBox(space)
    except ValueError as exc:
        return str(exc)
    return None


class PackObservation(gym.ObservationWrapper):
    """A Dict / Tuple / Discrete observation as one flat `PackedBox` array."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = PackedBox(env.observation_space)

    def observation(self, observation: Any) -> np.ndarray:
        return self.observation_space.pack(observation)


def adapt_spaces(env: gym.Env) -> gym.Env:
    """`env` with the adapters its spaces need (none for Box observations and Discrete actions).
    Raises ValueError (one line, naming the space and entry) for a space Beast cannot take."""
    from beast.distributions import action_distribution  # a ValueError for unsupported actions

    action_distribution(env.action_space)
    reason = observation_space_error(env.observation_space)
    if reason is not None:
        raise ValueError(reason)
    if isinstance(env.action_space, gym.spaces.Box):
        env = gym.wrappers.ClipAction(env)
    if not isinstance(env.observation_space, gym.spaces.Box):
        env = PackObservation(env)
    return env


def needs_adapting(observation_space: gym.Space, action_space: gym.Space) -> bool:
    return (not isinstance(observation_space, gym.spaces.Box)
            or isinstance(action_space, gym.spaces.Box))
