"""Deterministic test envs registered with Gymnasium (import this module to register them).

`Counting-v0`: the observation is [step within episode, env marker]; the reward of a step is
the step number it arrives at; an episode terminates after `episode_length` steps, or is
truncated by the TimeLimit at `max_episode_steps`. Every value in a rollout is therefore
predictable, which makes data-path checks exact.

`CountingLives-v0`: Counting with three "lives" per game, like an Atari game under episodic
life: each 5-step life ends with terminated=True, and `info["game_over"]` is True only at the
end of the third life.

`Painting-v0`: Counting that renders rgb_array frames [3, 4, 3] uint8 filled with its step count
and marker (render_mode="rgb_array"), with render_fps 4.
`DictCounting-v0`: Counting with a Dict observation {"count": Box [1] float32, "parity":
Discrete(2)} (served packed, beast.envs.spaces).
`Faulty-v0`: CartPole that raises RuntimeError("faulty env") after `fail_after` steps.
`NanReward-v0`: CartPole whose rewards turn NaN after `after` steps.
`Hanging-v0`: CartPole that hangs (sleeps for an hour) after `after` steps.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np


class CountingEnv(gym.Env):
    metadata: dict = {"render_modes": []}

    def __init__(self, episode_length: int = 5, marker: float = 0.0) -> None:
        self.episode_length = episode_length
        self.marker = marker
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.count = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.count, self.marker], np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.count = 0
        return self._obs(), {}

    def step(self, action):
        self.count += 1
        return self._obs(), float(self.count), self.count >= self.episode_length, False, {}


class PaintingEnv(CountingEnv):
    metadata: dict = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, marker: float = 0.0) -> None:
        super().__init__(marker=marker)
        self.render_mode = render_mode

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        frame = np.full((3, 4, 3), self.count, np.uint8)
        frame[..., 2] = int(self.marker)
        return frame


class DictCountingEnv(CountingEnv):
    def __init__(self) -> None:
        super().__init__()
        self.observation_space = gym.spaces.Dict({
            "count": gym.spaces.Box(0, 100, (1,), np.float32), "parity": gym.spaces.Discrete(2)})

    def _obs(self) -> dict:
        return {"count": np.array([self.count], np.float32), "parity": self.count % 2}


class CountingLivesEnv(CountingEnv):
    LIVES = 3

    def __init__(self) -> None:
        super().__init__()
        self.lives_lost = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self.lives_lost == self.LIVES:
            self.lives_lost = 0
        obs, _ = super().reset(seed=seed, options=options)
        return obs, {"game_over": False}

    def step(self, action):
        obs, reward, terminated, truncated, _ = super().step(action)
        self.lives_lost += int(terminated)
        return obs, reward, terminated, truncated, {"game_over": self.lives_lost == self.LIVES}


class FaultyEnv(gym.Wrapper):
    def __init__(self, fail_after: int = 50) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.fail_after = fail_after
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps > self.fail_after:
            raise RuntimeError("faulty env")
        return self.env.step(action)


class NanRewardEnv(gym.Wrapper):
    def __init__(self, after: int = 300) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.after, self.steps = after, 0

    def step(self, action):
        self.steps += 1
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, (float("nan") if self.steps > self.after else reward), terminated, truncated, info


class HangingEnv(NanRewardEnv):
    def step(self, action):
        if self.steps >= self.after:
            time.sleep(3600)
        return super().step(action)


if "Counting-v0" not in gym.registry:
    gym.register("NanReward-v0", entry_point=NanRewardEnv)
    gym.register("Hanging-v0", entry_point=HangingEnv, kwargs={"after": 40})
    gym.register("Counting-v0", entry_point=CountingEnv, max_episode_steps=100)
    gym.register("Faulty-v0", entry_point=FaultyEnv)
    gym.register("Painting-v0", entry_point=PaintingEnv, max_episode_steps=100)
    gym.register("DictCounting-v0", entry_point=DictCountingEnv, max_episode_steps=100)
    gym.register("CountingLives-v0", entry_point=CountingLivesEnv)
    gym.register("FaultyAtOnce-v0", entry_point=FaultyEnv, kwargs={"fail_after": 0})
    gym.register("CountingTruncated-v0", entry_point=CountingEnv,
                 kwargs={"episode_length": 1000}, max_episode_steps=6)
