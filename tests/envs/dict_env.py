"""Structured-observation test envs (import this module to register them).

`DictDirection-v0`, MiniGrid-style: a Dict observation with a channels-last uint8 image,
a Discrete direction and a float position. The reward is 1 when the action equals the
observed direction (so a policy must read the Discrete entry to earn it), episodes last 10
steps: a random policy averages 2.5, a learned one 10.

`DiscreteObs-v0`: a Discrete(5) observation; reward 1 when the action is the observation mod 2.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

EPISODE = 10


class DictDirectionEnv(gym.Env):
    metadata: dict = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (5, 5, 3), np.uint8),
            "direction": gym.spaces.Discrete(4),
            "position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        })
        self.action_space = gym.spaces.Discrete(4)
        self.t = 0
        self.direction = 0

    def _obs(self) -> dict:
        self.direction = int(self.np_random.integers(4))
        return {"image": self.np_random.integers(0, 256, (5, 5, 3), dtype=np.uint8),
                "direction": self.direction,
                "position": self.np_random.uniform(-1, 1, 2).astype(np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(int(action) == self.direction)
        self.t += 1
        return self._obs(), reward, self.t >= EPISODE, False, {}


class DiscreteObsEnv(gym.Env):
    metadata: dict = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Discrete(5)
        self.action_space = gym.spaces.Discrete(2)
        self.state = 0
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t, self.state = 0, int(self.np_random.integers(5))
        return self.state, {}

    def step(self, action):
        reward = float(int(action) == self.state % 2)
        self.t += 1
        self.state = int(self.np_random.integers(5))
        return self.state, reward, self.t >= EPISODE, False, {}


if "DictDirection-v0" not in gym.registry:
    gym.register("DictDirection-v0", entry_point=DictDirectionEnv)
    gym.register("DiscreteObs-v0", entry_point=DiscreteObsEnv)


class TextObsEnv(gym.Env):
    """An observation space Beast cannot take (Text), for the one-line error."""

    observation_space = gym.spaces.Dict({"words": gym.spaces.Text(8)})
    action_space = gym.spaces.Discrete(2)


class MultiBinaryActionEnv(gym.Env):
    """An action space Beast cannot act in."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.MultiBinary(3)


class BrokenConstructorEnv(gym.Env):
    def __init__(self) -> None:
        raise RuntimeError("this env cannot be built")


if "TextObs-v0" not in gym.registry:
    gym.register("TextObs-v0", entry_point=TextObsEnv)
    gym.register("MultiBinaryAction-v0", entry_point=MultiBinaryActionEnv)
    gym.register("BrokenConstructor-v0", entry_point=BrokenConstructorEnv)
