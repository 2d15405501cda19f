"""envpool (C++ batched environments) behind Beast's `gymnasium.vector.VectorEnv` contract.

envpool's Gymnasium object steps K envs in C++ threads, but does not behave as Beast's vector
envs must: its `observation_space` is one env's space (not batched), `reset(seed=...)` is ignored
with a warning (envpool seeds at construction), rewards are float32 and its info holds nested
dicts. `EnvPoolVectorEnv` wraps it so the runtimes cannot tell it from a SyncVectorEnv:

    env = EnvPoolVectorEnv("Pong-v5", num_envs=8, options=atari_options(...), ...)
    obs, info = env.reset(seed=s)         # env i gets seed s + i, as in Gymnasium
    while training:
        obs, reward, terminated, truncated, info = env.step(actions)   # [K, ...] arrays

Facts checked by experiment on envpool 1.2.5 (and asserted in tests/beast/test_env_suite.py):
- autoreset is next-step: the step after an end returns the first observation of the next
  episode with reward 0 and both flags False; the action is ignored.
- envpool's `terminated` is `done & ~trunc`. Atari info has `lives` and `terminated` (int32):
  with `episodic_life`, a life loss gives terminated=True but info["terminated"] == 0 and the
  next reset continues the game (lives unchanged, elapsed_step not reset); info["terminated"]
  is 1 only when the game really ended. So game_over = info["terminated"] | truncated.
- env i of a pool built with seed s is seeded s + i.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

ALE_PREFIX = "ALE/"
# Task families whose envpool image observations are [H, W, C]; Beast transposes them.
CHANNELS_LAST_PREFIXES = ("gfootball/",)


def list_tasks() -> list[str]:
    """Every envpool task id (ImportError if envpool is not installed)."""
    import envpool

    return list(envpool.list_all_envs())


def task_id_for(env_id: str) -> str:
    """Beast id → envpool task id: `ALE/Pong-v5` → `Pong-v5`; every other id is passed through
    (classic control, Procgen `CoinrunEasy-v0`, `gfootball/...`, ...)."""
    return env_id.removeprefix(ALE_PREFIX)


def is_atari_task(task_id: str) -> bool:
    """Whether an envpool task is an Atari game (it takes the Atari preprocessing options)."""
    import envpool

    return "episodic_life" in envpool.make_spec(task_id).config._fields


def atari_options(*, episodic_life: bool, sticky_actions: bool) -> dict[str, Any]:
    """envpool Atari options giving the Gymnasium path's preprocessing (beast/envs/atari.py):
    30 no-ops, frame skip 4 with max-pooling, 84x84 grey (area resize), stack 4, no fire on
    reset, no reward clipping, minimal action set, 27000 agent steps (108000 frames) at most."""
    return {
        "noop_max": 30, "frame_skip": 4, "img_height": 84, "img_width": 84, "stack_num": 4,
        "gray_scale": True, "use_inter_area_resize": True, "use_fire_reset": False,
        "reward_clip": False, "full_action_space": False, "max_episode_steps": 27000,
        "episodic_life": episodic_life, "zero_discount_on_life_loss": False,
        "repeat_action_probability": 0.25 if sticky_actions else 0.0,
    }


def _channels_first(space: gym.spaces.Box) -> gym.spaces.Box:
    return gym.spaces.Box(np.moveaxis(space.low, -1, 0), np.moveaxis(space.high, -1, 0),
                          dtype=space.dtype)


class EnvPoolVectorEnv(gym.vector.VectorEnv):
    """An envpool pool of `num_envs` copies of `task_id` as a next-step autoreset VectorEnv.

    Seeding: envpool seeds only at construction, so `reset(seed=s)` rebuilds the pool with seed
    s (tens of milliseconds; runtimes seed once) unless the pool was just built with s and not
    used yet (a new pool has seed 0). The same seed therefore gives the same episodes whatever
    ran before; `reset()` without a seed resets every env and continues its random stream.

    Step returns obs in the single space's dtype (channels first), reward float64 (cast from
    envpool's float32, as Gymnasium's vector envs return), terminated / truncated bool, and
    envpool's info (per-env arrays such as `lives`, `elapsed_step`; the nested `players` dict is
    dropped). With `report_game_over`, info also has `game_over` (bool [K]: the game really
    ended or was truncated; False after a mere life loss and on reset steps) and its Gymnasium
    mask `_game_over`, exactly as SyncVectorEnv merges the Gymnasium path's per-env infos.
    """

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, task_id: str, num_envs: int, options: dict[str, Any], *,
                 report_game_over: bool = False, channels_last: bool = False) -> None:
        self._task_id, self._options = task_id, dict(options)
        self._report_game_over, self._channels_last = report_game_over, channels_last
        self.num_envs = num_envs
        self._seed = 0
        self._pool = self._make_pool(self._seed)
        self._fresh = True  # built with self._seed, not reset or stepped since
        space = self._pool.observation_space  # envpool's is one env's space
        if not isinstance(space, gym.spaces.Box):
            self._pool.close()
            raise TypeError(f"{task_id}: Beast needs Box observations, envpool gives {space}")
        self.single_observation_space = _channels_first(space) if channels_last else space
        self.single_action_space = self._pool.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._all_true = np.ones(num_envs, dtype=np.bool_)

    def _make_pool(self, seed: int) -> Any:
        import envpool

        with warnings.catch_warnings():  # envpool's float64 bounds → float32 Box spaces
            warnings.filterwarnings("ignore", message=".*precision lowered.*")
            pool = envpool.make_gymnasium(self._task_id, num_envs=self.num_envs, seed=seed,
                                          **self._options)
            _ = pool.observation_space, pool.action_space  # built (and cached) on first access
        return pool

    @property
    def config(self) -> dict[str, Any]:
        """envpool's settings for this pool (task, seed, preprocessing), for inspection."""
        return dict(self._pool.config)

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(obs, -1, 1)) if self._channels_last else obs

    def _info(self, info: dict[str, Any], game_over: np.ndarray | None) -> dict[str, Any]:
        info = {key: value for key, value in info.items() if key != "players"}
        if self._report_game_over:
            info["game_over"], info["_game_over"] = game_over, self._all_true
        return info

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if options:
            raise ValueError(f"EnvPoolVectorEnv.reset takes no options, got {options}")
        if seed is not None and not (self._fresh and seed == self._seed):
            self._pool.close()
            self._pool, self._seed = self._make_pool(seed), seed
        self._fresh = False
        obs, info = self._pool.reset()
        return self._obs(obs), self._info(info, np.zeros(self.num_envs, dtype=np.bool_))

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                           dict[str, Any]]:
        self._fresh = False
        obs, reward, terminated, truncated, info = self._pool.step(np.asarray(actions))
        game_over = None
        if self._report_game_over:
            game_over = info["terminated"].astype(np.bool_) | truncated
        return (self._obs(obs), reward.astype(np.float64), terminated, truncated,
                self._info(info, game_over))

    def close_extras(self, **kwargs: Any) -> None:
        self._pool.close()
