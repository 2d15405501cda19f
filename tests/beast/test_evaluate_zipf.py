"""ZipfGridworld's three accuracies (beast.evaluate_zipf) and the per-game infos of
play_episodes they and bench/memory_experiment.py read."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

import beast  # noqa: F401  (registers ZipfGridworld-v0)
from beast.envs import make_vector_env
from beast.evaluate import play_episodes
from beast.evaluate_zipf import accuracy, is_zipf_gridworld
from beast.models import build_model
from beast.config import ModelConfig


def test_zipf_ids_are_recognised_by_their_entry_point() -> None:
    assert is_zipf_gridworld("ZipfGridworld-v0")
    assert not is_zipf_gridworld("CartPole-v1")
    assert not is_zipf_gridworld("no_such_module:ZipfGridworld-v0")
    gym.register("TestZipfVariant-v0", entry_point="beast.envs.zipf_gridworld:ZipfGridworld",
                 kwargs={"alpha": 2.0})
    try:
        assert is_zipf_gridworld("TestZipfVariant-v0")
    finally:
        del gym.registry["TestZipfVariant-v0"]


def test_accuracy_is_the_success_rate_with_a_normal_interval() -> None:
    returns = [1.0] * 30 + [0.0] * 70
    result = accuracy("Rare", returns)
    assert result.mean == 0.3 and result.games == 100
    assert math.isclose(result.half_width, 1.96 * math.sqrt(0.3 * 0.7 / 100))
    assert str(result) == f"Rare 0.300 ± {result.half_width:.3f} (100 games)"


def test_play_episodes_keeps_the_infos_of_each_game() -> None:
    envs = make_vector_env("ZipfGridworld-v0", 4, env_kwargs={"dist": "uniform_rare"})
    torch.manual_seed(0)
    model = build_model(envs.single_observation_space, envs.single_action_space,
                        ModelConfig(hidden_sizes=(8,)))
    stats = play_episodes(model, envs, 12, seed=0, info_keys=("map", "target", "is_rare"))
    envs.close()
    assert len(stats.infos) == len(stats.returns) == 12
    # uniform_rare draws only the rarest fifth: map 4 of 5, targets 8 and 9 of 10
    assert {info["map"] for info in stats.infos} == {4}
    assert {info["target"] for info in stats.infos} <= {8, 9}
    assert all(info["is_rare"] for info in stats.infos)
    assert np.isin(stats.returns, [0.0, 1.0]).all()
