"""Atari 2600 games through ale-py, with the preprocessing of the DQN / IMPALA papers.

Every Atari id (`ALE/Pong-v5`, and any other id whose entry point is ale-py's AtariEnv) is built
the same way, so results are comparable across ids and with the envpool backend
(beast/envs/envpool.py sets envpool's options to match):

    base env, frameskip=1, repeat_action_probability 0.25 (sticky) or 0.0
    └ AtariPreprocessing: up to 30 no-ops at reset, repeat each action 4 frames, max-pool the
      last two, greyscale, resize to 84x84, uint8 (unscaled: the model divides by 255)
      └ EpisodicLife (optional): a lost life ends the learning episode, not the game
        └ FrameStackObservation(4): obs is uint8 [4, 84, 84], channels first

The flags, not the id's version, choose sticky actions. Rewards are not clipped here: the learner
clips them, so the episode returns the runtime reports are true game scores.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

ALE_ENTRY_POINT = "ale_py.env:AtariEnv"
NOOP = 0  # ale-py's minimal action sets start with NOOP; AtariPreprocessing checks it


def register_atari() -> None:
    """Register the `ALE/...` ids with Gymnasium (importing ale-py does it).

    Raises ImportError if ale-py is not installed; the caller turns that into install advice.
    """
    import ale_py

    gym.register_envs(ale_py)


def try_register_atari() -> bool:
    """Register the Atari ids if ale-py is installed; say whether it is."""
    try:
        register_atari()
    except ImportError:
        return False
    return True


def is_atari(env_id: str) -> bool:
    """Whether a registered id is an ale-py game (and so gets the Atari preprocessing)."""
    return str(gym.spec(env_id).entry_point) == ALE_ENTRY_POINT


class EpisodicLife(gym.Wrapper):
    """A lost life ends the *learning* episode (terminated=True); the game goes on.

    Gymnasium's `AtariPreprocessing(terminal_on_life_loss=True)` reports the life loss too, but
    its next `reset()` restarts the whole game, so the agent would never play past its first
    life. Here `reset()` after a mere life loss returns the last frame and keeps playing the same
    game (like envpool's `episodic_life`, which does not step on that reset either, so no reward
    is lost); only a real game end or a truncation resets the game.

    Every step's and reset's info carries `game_over`: True when the game really ended or was
    truncated, False on a life loss (and on reset). The runtime sums rewards over learning
    episodes until `game_over` to report true game returns.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._lives = 0
        self._game_over = True  # the first reset is a real one
        self._last_obs: Any = None
        self._last_info: dict[str, Any] = {}

    def _ale_lives(self) -> int:
        return int(self.env.unwrapped.ale.lives())

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self._ale_lives()
        life_lost = lives < self._lives
        self._lives = lives
        self._game_over = bool(terminated or truncated)
        self._last_obs, self._last_info = obs, dict(info)
        info["game_over"] = self._game_over
        return obs, reward, bool(terminated or life_lost), truncated, info

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if self._game_over or seed is not None or options:
            obs, info = self.env.reset(seed=seed, options=options)
        else:  # a life was lost: the new learning episode starts where the game is
            obs, info = self._last_obs, dict(self._last_info)
        self._game_over = False
        self._lives = self._ale_lives()
        info["game_over"] = False
        return obs, info


def make_atari(env_id: str, *, episodic_life: bool = False, sticky_actions: bool = False,
               render_mode: str | None = None) -> gym.Env:
    """One preprocessed Atari env (see the module docstring); obs uint8 [4, 84, 84]."""
    env = gym.make(env_id, frameskip=1, render_mode=render_mode,
                   repeat_action_probability=0.25 if sticky_actions else 0.0)
    env = AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84,
                             terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False)
    if episodic_life:
        env = EpisodicLife(env)
    return FrameStackObservation(env, 4)
