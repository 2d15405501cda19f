"""Env adapters: every way Beast builds a vector env keeps SyncVectorEnv's step semantics."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import tests.envs.counting_env  # noqa: F401  (registers the counting envs)
from beast.envs import make_vector_env
from beast.envs.single import SingleEnvVector
from beast.envs.spaces import PackedBox


@pytest.mark.parametrize("env_id", ["CartPole-v1", "CountingTruncated-v0", "Counting-v0"])
def test_single_env_vector_matches_sync_vector_env(env_id: str) -> None:
    """Same seed, same actions → the same arrays, dtypes included, across resets and truncations."""
    single = make_vector_env(env_id, 1)
    assert isinstance(single, SingleEnvVector)
    reference = gym.make_vec(env_id, num_envs=1, vectorization_mode="sync")
    assert single.single_observation_space == reference.single_observation_space
    assert single.observation_space == reference.observation_space
    assert single.action_space == reference.action_space

    obs, _ = single.reset(seed=3)
    ref_obs, _ = reference.reset(seed=3)
    np.testing.assert_array_equal(obs, ref_obs)
    actions = np.random.default_rng(0).integers(0, single.single_action_space.n, (300, 1))
    ends = 0
    for action in actions:
        got = single.step(action)[:4]
        want = reference.step(action)[:4]
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        ends += int(got[2][0] or got[3][0])
    assert ends >= 3  # the comparison crossed several episode boundaries
    single.close()
    reference.close()


def test_single_env_vector_returns_its_own_copy() -> None:
    env = make_vector_env("Counting-v0", 1)
    first, _ = env.reset(seed=0)
    kept = first.copy()
    env.step(np.array([0]))
    np.testing.assert_array_equal(first, kept)


def test_structured_observation_spaces_are_packed_into_a_flat_box() -> None:
    """A Tuple observation (Blackjack) comes packed into one flat PackedBox array, losslessly,
    for one env (the SingleEnvVector fast path) and for several (SyncVectorEnv)."""
    reference = gym.make("Blackjack-v1")
    ref_obs, _ = reference.reset(seed=5)
    for num_envs in (1, 3):
        env = make_vector_env("Blackjack-v1", num_envs)
        assert isinstance(env, SingleEnvVector) == (num_envs == 1)
        assert env.num_envs == num_envs
        space = env.single_observation_space
        assert isinstance(space, PackedBox) and space.shape == (3,)
        assert space.original == reference.observation_space
        obs, _ = env.reset(seed=5)
        assert obs.shape == (num_envs, 3) and obs.dtype == space.dtype
        np.testing.assert_array_equal(obs[0], np.array(ref_obs))  # env 0 has seed 5
        env.close()
    reference.close()


def test_single_env_vector_keeps_game_over() -> None:
    """Episodic life must survive the one-env fast path: game_over only at the game's end."""
    env = make_vector_env("CountingLives-v0", 1)
    assert isinstance(env, SingleEnvVector)
    env.reset(seed=0)
    flags = [bool(env.step(np.array([0]))[4]["game_over"][0]) for _ in range(18)]
    assert flags == [i == 16 for i in range(18)]  # three 5-step lives, each + a reset step
