"""One Gymnasium env as a vector env of size 1, without SyncVectorEnv's per-step bookkeeping.

An env server with one env per connection, or an actor with one env, pays the vector env's
fixed cost on every step: SyncVectorEnv spends ~13 µs per step on iteration, info merging and
copies around a ~7 µs CartPole step, and CartPole's numpy-vectorised env ~40 µs whatever its
size. This adapter keeps exactly SyncVectorEnv's next-step autoreset semantics and seeding (a
test steps the two side by side) at a fraction of that cost. It handles array (Box)
observations, which is every env Beast trains on; other spaces go through SyncVectorEnv.
Of the env's info it keeps only `game_over` (episodic life, beast.envs.atari), as a [1] array.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space


class SingleEnvVector(gym.vector.VectorEnv):
    """`env` as a `num_envs == 1` vector env in next-step autoreset mode; infos are dropped
    except `game_over`."""

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, env: gym.Env) -> None:
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

    def _batch(self, obs: Any) -> np.ndarray:
        # A copy, since envs may hand out a buffer they overwrite on the next step.
        return np.array(obs, dtype=self._obs_dtype)[None]

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, _ = self.env.reset(seed=seed, options=options)
        self._needs_reset = False
        return self._batch(obs), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._needs_reset:  # the placeholder step: the action is ignored
            obs, info = self.env.reset()
            reward, terminated, truncated = 0.0, False, False
        else:
            obs, reward, terminated, truncated, info = self.env.step(actions[0])
        self._needs_reset = bool(terminated or truncated)
        kept = {"game_over": np.array([info["game_over"]], np.bool_)} if "game_over" in info else {}
        return (self._batch(obs), np.array([reward], dtype=np.float64),
                np.array([terminated], dtype=np.bool_), np.array([truncated], dtype=np.bool_), kept)

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()
