"""DETACH: a Gymnasium VectorEnv whose environments run on remote env servers.

Existing Gymnasium training code switches to remote environments with one line::

    envs = gym.make_vec("Acrobot-v1", num_envs=8, vectorization_mode="sync")        # local
    envs = RemoteVectorEnv(["10.0.0.5:7000", "10.0.0.6:7000"], env_id="Acrobot-v1")  # remote

Each address is one env server connection hosting K_i environments
(`python -m beast.poly.env_server --env Acrobot-v1 --num-envs 4 --address HOST:PORT`); the
vector env's environments are those of every connection, in address order. Seeding is
SyncVectorEnv's: `reset(seed=s)` gives environment i the seed s + i, `reset(seed=[...])` one
seed (or None) each. Every server env is its own Gymnasium env (never an id's native vector
env), so with the same seeds a remote run gives the trajectories of a local SyncVectorEnv
however its envs are split across servers. Options, numeric infos, get_attr / set_attr / call
and render travel as typed arrays (beast.poly.wire_values): numbers, strings, None and numeric
arrays; anything else raises TypeError rather than being dropped. Autoreset is next-step, as in
local vector envs. Servers that need a token get `auth_token`, or else $BEAST_AUTH_TOKEN.
README.md's DETACH section lists what is identical to SyncVectorEnv and what is not.
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from beast.envs.make import make_env
from beast.envs.spaces import PackedBox
from beast.poly._core import EnvClient
from beast.poly.remote_attr import attr_request, attr_results
from beast.poly.remote_batch import (check_actions, join_infos, seed_arrays, seeds_per_env,
                                     unpack_observations)
from beast.poly.remote_errors import remote_error
from beast.poly.wire_values import decode_info, encode_values


def _own_action_space(env: gym.Env) -> gym.Space:
    """The env's own action space: Beast's ClipAction (beast.envs.spaces) shows an unbounded Box
    outside, but it clips on the server, so the client keeps the bounds."""
    layer = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, gym.wrappers.ClipAction):
            return layer.env.action_space
        layer = layer.env
    return env.action_space


def _spaces_from_spec(client: EnvClient) -> tuple[gym.Space, gym.Space]:
    """Spaces rebuilt from the server's spec (shapes and dtypes; bounds are not sent)."""
    observation = gym.spaces.Box(-np.inf, np.inf, client.observation_shape,
                                 client.observation_dtype)
    if client.num_actions > 0:
        return observation, gym.spaces.Discrete(client.num_actions)
    return observation, gym.spaces.Box(-np.inf, np.inf, client.action_shape, client.action_dtype)


class RemoteVectorEnv(VectorEnv):
    """`gymnasium.vector.VectorEnv` over env servers; see the module docstring.

    `env_id`, when given, supplies the exact single-env spaces (bounds included), the metadata
    and the spec from a local instance made with `env_kwargs` (which must be the kwargs the
    servers were started with, `--env-kwargs`); without it the spaces are rebuilt from the
    servers' spec. A Dict, Tuple or Discrete observation, which servers send packed
    (beast.envs.spaces), comes back in its own form when `env_id` is given.
    """

    def __init__(self, addresses: Sequence[str], env_id: str | None = None,
                 timeout: float | None = 30.0, auth_token: str | None = None,
                 env_kwargs: dict[str, Any] | None = None) -> None:
        if not addresses:
            raise ValueError("RemoteVectorEnv needs at least one env server address")
        token = auth_token or os.environ.get("BEAST_AUTH_TOKEN") or None
        self.clients = [EnvClient(address, timeout, auth_token=token) for address in addresses]
        self._bounds = [int(b) for b in np.cumsum([0] + [c.num_envs for c in self.clients])]
        self.num_envs = self._bounds[-1]
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
        self._packed: PackedBox | None = None
        if env_id is not None:
            local = make_env(env_id, env_kwargs=env_kwargs)
            self.metadata = {**copy.deepcopy(local.metadata),
                             "autoreset_mode": AutoresetMode.NEXT_STEP}
            self.spec = local.spec
            if isinstance(local.observation_space, PackedBox):
                self._packed = local.observation_space
            self.single_observation_space = getattr(local.observation_space, "original",
                                                    local.observation_space)
            self.single_action_space = _own_action_space(local)
            local.close()
        else:
            self.single_observation_space, self.single_action_space = _spaces_from_spec(
                self.clients[0])
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._last_obs: list[np.ndarray | None] = [None] * len(self.clients)
        # Servers step concurrently (each call releases the GIL while it waits on its socket).
        self._pool = ThreadPoolExecutor(len(self.clients)) if len(self.clients) > 1 else None
        self.render_mode = self._render_mode()

    def _render_mode(self) -> str | None:
        try:
            mode = self.get_attr("render_mode")[0]
        except (RuntimeError, AttributeError, NotImplementedError):  # envs without attributes
            return None
        return mode if isinstance(mode, str) else None

    # --- plumbing -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise gym.error.ClosedEnvironmentError(
                "this RemoteVectorEnv is closed: its server connections are gone")

    def _each(self, call: Callable[[EnvClient, Any], Any], args: Sequence[Any],
              which: Sequence[int] | None = None) -> list[Any]:
        """call(client, arg) for the clients in `which` (all by default), concurrently; an
        env's exception is raised with its own type (beast.poly.remote_errors)."""
        self._check_open()
        which = range(len(self.clients)) if which is None else which
        clients = [self.clients[i] for i in which]
        try:
            if self._pool is None or len(clients) == 1:
                return [call(c, a) for c, a in zip(clients, args)]
            return list(self._pool.map(call, clients, args))
        except RuntimeError as exc:
            mapped = remote_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _slices(self, values: Sequence[Any]) -> list[Sequence[Any]]:
        return [values[lo:hi] for lo, hi in zip(self._bounds[:-1], self._bounds[1:])]

    def _observations(self, obs: np.ndarray) -> Any:
        return obs if self._packed is None else unpack_observations(obs, self._packed)

    # --- the VectorEnv API ----------------------------------------------------------------

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """SyncVectorEnv.reset: seeds as there, `options` to every env (numbers, strings, None
        and numeric arrays; TypeError for others), `options["reset_mask"]` resets only some."""
        self._check_open()
        seeds = seeds_per_env(seed, self.num_envs)
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        which = list(range(len(self.clients)))
        masks: list[Any] = [None] * len(self.clients)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
                raise ValueError(f"`options['reset_mask']` must be a bool array of shape "
                                 f"({self.num_envs},) with at least one True value, got {mask!r}")
            masks = self._slices(mask)
            which = [i for i, m in enumerate(masks) if m.any()]
            if any(self._last_obs[i] is None for i in range(len(self.clients)) if i not in which):
                raise ValueError("reset(options={'reset_mask': ...}) needs a full reset first")
        encoded = encode_values("option/", options, "reset option")
        requests = []
        for i in which:
            arrays = {**seed_arrays(self._slices(seeds)[i]), **encoded}
            if masks[i] is not None and not masks[i].all():
                arrays["option/reset_mask:a"] = np.array(masks[i])
            requests.append(arrays)
        results = self._each(lambda client, arrays: client.reset_with(arrays), requests, which)
        infos: list[dict[str, Any]] = [{} for _ in self.clients]
        for i, result in zip(which, results):
            self._last_obs[i] = np.array(result["obs"])
            infos[i] = decode_info(result)
        obs = np.concatenate(self._last_obs)
        return self._observations(obs), join_infos(infos, self._bounds)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        self._check_open()
        actions = check_actions(actions, self.single_action_space, self.num_envs)
        results = self._each(lambda client, a: client.step(a), self._slices(actions))
        joined = {key: np.concatenate([r[key] for r in results])
                  for key in ("obs", "reward", "terminated", "truncated")}
        self._last_obs = [np.array(r["obs"]) for r in results]
        info = join_infos([decode_info(r) for r in results], self._bounds)
        if "game_over" not in info and all("game_over" in r for r in results):
            info["game_over"] = np.concatenate([r["game_over"] for r in results])
        return (self._observations(joined["obs"]), joined["reward"], joined["terminated"],
                joined["truncated"], info)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """SyncVectorEnv.call: `name` on every env (called if callable), one result each;
        arguments and results must be numbers, strings, None or numeric arrays."""
        request = attr_request("call", name, args, kwargs)
        replies = self._each(lambda client, r: client.attr(r), [request] * len(self.clients))
        return tuple(value for reply in replies for value in attr_results(reply))

    def get_attr(self, name: str) -> tuple[Any, ...]:
        request = attr_request("get", name)
        replies = self._each(lambda client, r: client.attr(r), [request] * len(self.clients))
        return tuple(value for reply in replies for value in attr_results(reply))

    def set_attr(self, name: str, values: Any) -> None:
        """SyncVectorEnv.set_attr: one value for every env, or a list or tuple of one each."""
        self._check_open()
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError("Values must be a list or tuple with length equal to the number of "
                             f"environments. Got `{len(values)}` values for {self.num_envs} "
                             "environments.")
        requests = [attr_request("set", name, values=list(part)) for part in self._slices(values)]
        self._each(lambda client, r: client.attr(r), requests)

    def render(self) -> tuple[Any, ...] | None:
        """Every env's frame (SyncVectorEnv.render), e.g. rgb_array images over the wire."""
        return self.call("render")

    def close_extras(self, **kwargs: Any) -> None:
        for client in self.clients:
            client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
