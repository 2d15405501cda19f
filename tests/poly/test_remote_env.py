"""RemoteVectorEnv: remote env servers reproduce a local SyncVectorEnv exactly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from beast.poly.remote_env import RemoteVectorEnv
from tests.poly.test_env_server import Server


@pytest.fixture(scope="module")
def acrobot_servers():
    servers = [Server("Acrobot-v1", 2), Server("Acrobot-v1", 3)]
    yield servers
    for server in servers:
        assert server.stop() == 0


def test_same_seeds_give_exactly_the_local_sync_vector_env_trajectories(acrobot_servers) -> None:
    remote = RemoteVectorEnv([s.address for s in acrobot_servers], env_id="Acrobot-v1")
    local = gym.vector.SyncVectorEnv([lambda: gym.make("Acrobot-v1")] * 5)
    assert remote.num_envs == 5
    assert remote.single_observation_space == local.single_observation_space
    assert remote.single_action_space == local.single_action_space
    assert remote.metadata["autoreset_mode"] == local.metadata["autoreset_mode"]
    obs_r, _ = remote.reset(seed=7)
    obs_l, _ = local.reset(seed=7)
    np.testing.assert_array_equal(obs_r, obs_l)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(505):  # past Acrobot's 500-step time limit: truncation and autoreset
        actions = rng.integers(0, 3, size=5)
        remote_step, local_step = remote.step(actions), local.step(actions)
        for r, l in zip(remote_step[:4], local_step[:4]):
            np.testing.assert_array_equal(r, l)
            assert r.dtype == l.dtype
        ended += int(np.sum(remote_step[2] | remote_step[3]))
    assert ended >= 5  # every env ended an episode at least once
    remote.close()
    local.close()


def test_spaces_come_from_the_server_spec_without_env_id(acrobot_servers) -> None:
    remote = RemoteVectorEnv([acrobot_servers[0].address])
    assert remote.num_envs == 2
    assert remote.single_action_space == gym.spaces.Discrete(3)
    assert remote.single_observation_space.shape == (6,)
    obs, _ = remote.reset(seed=1)
    assert obs.shape == (2, 6) and remote.observation_space.contains(obs)
    remote.close()


def test_no_address_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RemoteVectorEnv([])


def test_game_over_reaches_the_info_under_episodic_life() -> None:
    """A lost life is `terminated`; only the third one (the game's end) has game_over set."""
    server = Server("tests.envs.counting_env:CountingLives-v0", 2)
    env = RemoteVectorEnv([server.address])
    try:
        env.reset(seed=0)
        terminated, game_over = [], []
        for _ in range(18):  # three 5-step lives, each followed by its reset step
            _, _, term, _, info = env.step(np.zeros(2, np.int64))
            terminated.append(term[0])
            game_over.append(info["game_over"][0])
    finally:
        env.close()
        assert server.stop() == 0
    assert sum(terminated) == 3 and game_over.count(True) == 1 and game_over[16]
