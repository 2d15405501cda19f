"""Gymnasium ids → vector environments with Beast's step semantics.

Every runtime steps environments through a `gymnasium.vector.VectorEnv` in next-step autoreset
mode: the step after a terminal or truncated observation returns the first observation of the
next episode with reward 0 and the action ignored. Keeping that (rather than same-step reset)
keeps the final observation of a truncated episode in the rollout, so the learner can bootstrap
from its value exactly; the learner masks the placeholder transition out of the loss.
"""

from __future__ import annotations

import difflib
import importlib

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from beast.envs.single import SingleEnvVector


class UnknownEnvError(ValueError):
    """The environment id is not registered with Gymnasium."""


def _import_namespace(env_id: str) -> str:
    """Gymnasium's `module:EnvId` form imports `module` (which registers ids); return the id."""
    if ":" not in env_id:
        return env_id
    module, _, name = env_id.partition(":")
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise UnknownEnvError(f"cannot import {module!r} for env id {env_id!r}: {exc}") from exc
    return name


def resolve_env_id(env_id: str) -> str:
    """Return the registered id for `env_id`, or raise UnknownEnvError saying how to list ids."""
    name = _import_namespace(env_id)
    if name in gym.registry:
        return name
    close = difflib.get_close_matches(name, list(gym.registry), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownEnvError(
        f"unknown environment id {env_id!r}.{hint} List valid ids with `python -m beast.envs`.")


def make_vector_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """`num_envs` copies of `env_id` as one vector env (native vectorised if the id has one).

    Seed it with `env.reset(seed=s)`: environment i then gets seed s + i. A single env with
    array observations comes as a SingleEnvVector, the cheapest wrapper with the same semantics.
    """
    name = resolve_env_id(env_id)
    if num_envs == 1:
        env = gym.make(name)
        if isinstance(env.observation_space, gym.spaces.Box):
            return SingleEnvVector(env)
        env.close()
    spec = gym.spec(name)
    mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    env = gym.make_vec(name, num_envs=num_envs, vectorization_mode=mode)
    autoreset = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if autoreset != AutoresetMode.NEXT_STEP:
        env.close()
        raise ValueError(f"{env_id}: Beast needs next-step autoreset vector envs, got {autoreset}")
    return env


def make_env(env_id: str) -> gym.Env:
    """One environment, for evaluation."""
    return gym.make(resolve_env_id(env_id))
