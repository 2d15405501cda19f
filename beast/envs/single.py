"""One Gymnasium env as a vector env of size 1, without SyncVectorEnv's per-step bookkeeping.

An env server with one env per connection, or an actor with one env, pays the vector env's
fixed cost on every step: SyncVectorEnv spends ~13 µs per step on iteration, info merging and
copies around a ~7 µs CartPole step, and CartPole's numpy-vectorised env ~40 µs whatever its
size. This adapter keeps exactly SyncVectorEnv's next-step autoreset semantics and seeding (a
test steps the two side by side) at a fraction of that cost. It handles array (Box)
observations, which is every env Beast trains on; other spaces go through SyncVectorEnv.
Of the env's info it keeps only `game_over` (episodic life, beast.envs.atari), as a [1] array,
unless asked to keep it all (`keep_info`, what an env server asks for): then the info is
batched exactly as SyncVectorEnv batches it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space


class SingleEnvVector(gym.vector.VectorEnv):
    """`env` as a `num_envs == 1` vector env in next-step autoreset mode; infos are dropped
    except `game_over`, unless `keep_info`."""

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, env: gym.Env, keep_info: bool = False) -> None:
        if not isinstance(env.observation_space, gym.spaces.Box):
            raise TypeError(f"SingleEnvVector needs a Box observation space, got {env.observation_space}")
        self.env = env
        self.num_envs = 1
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self.observation_space = batch_space(env.observation_space, 1)
        self.action_space = batch_space(env.action_space, 1)
        self.spec = env.spec
        self.render_mode = env.render_mode
        self._obs_dtype = env.observation_space.dtype
        self._needs_reset = False
        self._keep_info = keep_info
        self.metadata = {**env.metadata, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        if self._keep_info:
            return self._add_info({}, info, 0)
        return {"game_over": np.array([info["game_over"]], np.bool_)} if "game_over" in info else {}

    def _batch(self, obs: Any) -> np.ndarray:
        # A copy, since envs may hand out a buffer they overwrite on the next step.
        return np.array(obs, dtype=self._obs_dtype)[None]

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if isinstance(seed, (list, tuple)):  # SyncVectorEnv's per-env form
            if len(seed) != 1:
                raise ValueError(f"If seeds are passed as a list the length must match "
                                 f"num_envs=1 but got length={len(seed)}.")
            seed = seed[0]
        obs, info = self.env.reset(seed=seed, options=options)
        self._needs_reset = False
        return self._batch(obs), (self._add_info({}, info, 0) if self._keep_info else {})

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._needs_reset:  # the placeholder step: the action is ignored
            obs, info = self.env.reset()
            reward, terminated, truncated = 0.0, False, False
        else:
            obs, reward, terminated, truncated, info = self.env.step(actions[0])
        self._needs_reset = bool(terminated or truncated)
        return (self._batch(obs), np.array([reward], dtype=np.float64),
                np.array([terminated], dtype=np.bool_), np.array([truncated], dtype=np.bool_),
                self._info(info))

    def render(self) -> tuple[Any, ...]:
        return (self.env.render(),)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """SyncVectorEnv.call for the one env."""
        function = self.env.get_wrapper_attr(name)
        return (function(*args, **kwargs) if callable(function) else function,)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return self.call(name)

    def set_attr(self, name: str, values: Any) -> None:
        """SyncVectorEnv.set_attr for the one env."""
        if not isinstance(values, (list, tuple)):
            values = [values]
        if len(values) != 1:
            raise ValueError("Values must be a list or tuple with length equal to the number of "
                             f"environments. Got `{len(values)}` values for 1 environments.")
        self.env.set_wrapper_attr(name, values[0])

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()
