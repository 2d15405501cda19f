"""DETACH: a Gymnasium VectorEnv whose environments run on remote env servers.

Existing Gymnasium training code switches to remote environments with one line::

    envs = gym.make_vec("Acrobot-v1", num_envs=8, vectorization_mode="sync")        # local
    envs = RemoteVectorEnv(["10.0.0.5:7000", "10.0.0.6:7000"], env_id="Acrobot-v1")  # remote

Each address is one env server connection hosting K_i environments
(`python -m beast.poly.env_server --env Acrobot-v1 --num-envs 4 --address HOST:PORT`); the
vector env's environments are those of every connection, in address order. Seeding matches
Gymnasium's: `reset(seed=s)` gives environment i the seed s + i, so a remote run reproduces a
local `SyncVectorEnv` run exactly. Autoreset is next-step, as in local vector envs. Servers that
need a token get `auth_token`, or else $BEAST_AUTH_TOKEN.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from beast.envs.make import make_env
from beast.poly._core import EnvClient


def _spaces_from_spec(client: EnvClient) -> tuple[gym.Space, gym.Space]:
    """Spaces rebuilt from the server's spec (shapes and dtypes; bounds are not sent)."""
    observation = gym.spaces.Box(-np.inf, np.inf, client.observation_shape,
                                 client.observation_dtype)
    if client.num_actions > 0:
        return observation, gym.spaces.Discrete(client.num_actions)
    return observation, gym.spaces.Box(-np.inf, np.inf, client.action_shape, client.action_dtype)


class RemoteVectorEnv(VectorEnv):
    """`gymnasium.vector.VectorEnv` over env servers; see the module docstring.

    `env_id`, when given, supplies the exact single-env spaces (bounds included) from a local
    instance; without it the spaces are rebuilt from the servers' spec.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, addresses: Sequence[str], env_id: str | None = None,
                 timeout: float | None = 30.0, auth_token: str | None = None) -> None:
        if not addresses:
            raise ValueError("RemoteVectorEnv needs at least one env server address")
        token = auth_token or os.environ.get("BEAST_AUTH_TOKEN") or None
        self.clients = [EnvClient(address, timeout, auth_token=token) for address in addresses]
        self._bounds = np.cumsum([0] + [c.num_envs for c in self.clients])
        self.num_envs = int(self._bounds[-1])
        if env_id is not None:
            local = make_env(env_id)
            self.single_observation_space = local.observation_space
            self.single_action_space = local.action_space
            local.close()
        else:
            self.single_observation_space, self.single_action_space = _spaces_from_spec(
                self.clients[0])
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        # Servers step concurrently (each call releases the GIL while it waits on its socket).
        self._pool = ThreadPoolExecutor(len(self.clients)) if len(self.clients) > 1 else None

    def _each(self, call: Any, args: list[Any]) -> list[dict[str, np.ndarray]]:
        if self._pool is None:
            return [call(self.clients[0], args[0])]
        return list(self._pool.map(call, self.clients, args))

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[np.ndarray, dict]:
        seeds = [None if seed is None else seed + int(lo) for lo in self._bounds[:-1]]
        results = self._each(lambda client, s: client.reset(s), seeds)
        return np.concatenate([r["obs"] for r in results]), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray, dict]:
        actions = np.asarray(actions)
        chunks = [actions[lo:hi] for lo, hi in zip(self._bounds[:-1], self._bounds[1:])]
        results = self._each(lambda client, a: client.step(a), chunks)
        joined = {key: np.concatenate([r[key] for r in results])
                  for key in ("obs", "reward", "terminated", "truncated")}
        info = {}
        if all("game_over" in r for r in results):  # episodic life (see beast.envs.atari)
            info["game_over"] = np.concatenate([r["game_over"] for r in results])
        return (joined["obs"], joined["reward"], joined["terminated"], joined["truncated"], info)

    def close_extras(self, **kwargs: Any) -> None:
        for client in self.clients:
            client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
