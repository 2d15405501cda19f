"""`--eval RUN_DIR`: play episodes with a run's latest checkpoint (MonoBeast or PolyBeast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from beast.acting import policy_step
from beast.checkpoint import load_checkpoint
from beast.config import Config
from beast.envs import make_vector_env_from_config
from beast.models.factory import build_configured_model
from beast.rollout import game_over


@torch.inference_mode()
def evaluate(run_dir: str | Path, episodes: int, seed: int = 12345) -> list[float]:
    """Returns of `episodes` complete episodes, acting by sampling the trained policy.

    The envs are built as in training (so a recurrent model's state is cleared where it was in
    training, lost lives included under --episodic-life), and returns are whole games, summed
    until `game_over` as the actors do.
    """
    config = Config.from_dict(json.loads((Path(run_dir) / "config.json").read_text()))
    envs = make_vector_env_from_config(config.env, min(episodes, 16))
    model = build_configured_model(envs.single_observation_space, envs.single_action_space,
                                   config.model)
    model.load_state_dict(load_checkpoint(run_dir)["learner"]["model"])
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    obs, _ = envs.reset(seed=seed)
    running = np.zeros(envs.num_envs)
    ended = np.zeros(envs.num_envs, bool)  # o_t ended a (learning) episode
    ended_game = np.zeros(envs.num_envs, bool)
    core_state = model.initial_state(envs.num_envs)  # carried and cleared as in the actors
    returns: list[float] = []
    while len(returns) < episodes:
        agent, core_state = policy_step(model, torch.from_numpy(obs), core_state,
                                        torch.from_numpy(ended), generator, version=0)
        obs, reward, terminated, truncated, info = envs.step(agent["action"].numpy())
        running = np.where(ended_game, 0.0, running + reward)  # next-step autoreset: reset step
        ended = terminated | truncated
        ended_game = game_over(terminated, truncated, info)
        returns.extend(running[ended_game].tolist())
    envs.close()
    return returns[:episodes]
