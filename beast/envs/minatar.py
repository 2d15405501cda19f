"""MinAtar (small 10x10 versions of five Atari games) as Gymnasium envs with channels-first obs.

minatar ships `minatar.gym.register_envs()`, which registers `MinAtar/<Game>-v0` (full action
set) and `-v1` (minimal action set) for Asterix, Breakout, Freeway, Seaquest and SpaceInvaders.
Its observations are bool [10, 10, C], channels last. Beast's image models take [C, H, W], so
`ChannelsFirst` transposes them and casts to uint8 (0 or 1): uint8 lets shared rollout buffers
be poisoned with 255, a value no real observation has (bool has no spare value). MinAtar keeps
its own protocol (sticky actions with probability 0.1 built into the game, difficulty ramping).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import gymnasium as gym
import numpy as np

MINATAR_PREFIX = "MinAtar/"
_SENTINEL_ID = "MinAtar/Breakout-v0"  # registered iff register_envs() has run


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Silence warnings logged on the root logger while the block runs, without side effects.

    minatar logs "Cannot import seaborn" on the root logger at import time (seaborn only
    matters for rendering). `logging.warning()` would also install a stderr handler on the root
    logger if it has none; a temporary NullHandler prevents that lasting change.
    """
    root = logging.getLogger()
    null = logging.NullHandler()
    root.addHandler(null)
    previous = root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
        root.removeHandler(null)


def register_minatar() -> None:
    """Register the MinAtar ids with Gymnasium, once.

    Raises ImportError if minatar is not installed; the caller turns that into install advice.
    """
    with _quiet_root_logger():
        import minatar.gym
    if _SENTINEL_ID not in gym.registry:
        minatar.gym.register_envs()


class ChannelsFirst(gym.ObservationWrapper):
    """[H, W, C] observations → contiguous uint8 [C, H, W] in {0, 1}."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        height, width, channels = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 1, (channels, height, width), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(observation, -1, 0), dtype=np.uint8)


def make_minatar(env_id: str, render_mode: str | None = None) -> gym.Env:
    """One MinAtar env (the id must be registered) with uint8 [C, 10, 10] observations."""
    return ChannelsFirst(gym.make(env_id, **({"render_mode": render_mode} if render_mode else {})))
