"""RemoteVectorEnv's batch plumbing: one vector env's inputs split across servers, their
outputs joined, as SyncVectorEnv would hold them.

    seeds = seeds_per_env(seed, n)                 # Sync's rules: None, s -> s + i, or a list
    actions = check_actions(actions, space, n)     # Sync's error types, naming the whole shape
    info = join_infos(infos, bounds)               # per-server infos -> one Sync-style info
    obs = unpack_observations(obs, packed_space)   # a packed Dict/Tuple/Discrete obs, rebuilt
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from beast.envs.spaces import PackedBox


def seeds_per_env(seed: int | Sequence[int | None] | None, num_envs: int) -> list[int | None]:
    """SyncVectorEnv.reset's seeds: None for all, s + i, or one per env (ValueError otherwise)."""
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return [int(seed) + i for i in range(num_envs)]
    if not isinstance(seed, (list, tuple)):
        raise TypeError(f"reset(seed=...) takes None, an int or a list of num_envs ints or None, "
                        f"got {type(seed).__name__}")
    if len(seed) != num_envs:
        raise ValueError(f"If seeds are passed as a list the length must match "
                         f"num_envs={num_envs} but got length={len(seed)}.")
    for s in seed:
        if s is not None and (not isinstance(s, (int, np.integer)) or isinstance(s, bool)):
            raise TypeError(f"reset(seed=[...]) entries must be int or None, got {s!r}")
    return [None if s is None else int(s) for s in seed]


def seed_arrays(seeds: Sequence[int | None]) -> dict[str, np.ndarray]:
    """RESET's seed / seeded arrays for one server's envs (none when no env is seeded)."""
    if all(s is None for s in seeds):
        return {}
    seeded = np.array([s is not None for s in seeds], np.bool_)
    arrays = {"seed": np.array([0 if s is None else s for s in seeds], np.int64)}
    if not seeded.all():
        arrays["seeded"] = seeded
    return arrays


def check_actions(actions: Any, single_space: gym.Space, num_envs: int) -> np.ndarray:
    """`actions` as an array [num_envs, *single shape], with SyncVectorEnv's error types: a
    scalar is TypeError, a wrong count or shape ValueError; the message names the whole shape."""
    array = np.asarray(actions)
    expected = (num_envs, *single_space.shape)
    if array.ndim == 0:
        raise TypeError(f"step() takes one action per env, an array of shape {expected}; "
                        f"got the scalar {actions!r}")
    if array.shape != expected:
        raise ValueError(f"step() takes one action per env, an array of shape {expected} "
                         f"({num_envs} envs); got shape {array.shape}")
    return array


def join_infos(infos: Sequence[dict[str, Any]], bounds: Sequence[int]) -> dict[str, Any]:
    """Per-server infos (each with arrays [K_i, ...]) as one info over all envs; an entry some
    server lacks is zeros there (and its '_key' mask False), as SyncVectorEnv fills it."""
    num_envs = int(bounds[-1])
    joined: dict[str, Any] = {}
    keys = [k for info in infos for k in info]
    for key in dict.fromkeys(keys):
        present = [(i, info[key]) for i, info in enumerate(infos) if key in info]
        first = present[0][1]
        if isinstance(first, dict):
            parts = [info.get(key, {}) for info in infos]
            joined[key] = join_infos(parts, bounds)
            continue
        out = np.zeros((num_envs, *first.shape[1:]), first.dtype)
        for i, value in present:
            out[bounds[i]:bounds[i + 1]] = value
        joined[key] = out
    return joined


def _unpack_entry(flat: np.ndarray, entry: Any) -> np.ndarray:
    values = flat[:, entry.offset:entry.offset + entry.size]
    if entry.is_discrete:
        return values[:, 0].astype(np.int64)  # batch_space(Discrete) is an int64 MultiDiscrete
    return values.reshape(len(flat), *entry.space.shape).astype(entry.space.dtype)


def unpack_observations(obs: np.ndarray, space: PackedBox) -> Any:
    """A batch of packed observations [n, size] in `space.original`'s batched form."""
    parts = [_unpack_entry(obs, e) for e in space.entries]
    if isinstance(space.original, gym.spaces.Dict):
        return {e.name: p for e, p in zip(space.entries, parts)}
    if isinstance(space.original, gym.spaces.Tuple):
        return tuple(parts)
    return parts[0]
