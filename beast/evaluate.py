"""Playing whole episodes with a policy: `--eval RUN_DIR`, and each periodic evaluation.

    envs = eval_envs(config, episodes)                      # or video_env(config, folder, prefix)
    stats = play_episodes(model, envs, episodes, seed, greedy=False)
    stats.metrics()  # {"eval/return_mean": ..., "eval/return_std": ..., "eval/length_mean": ...}

Both act through `beast.acting.policy_step`, as the actors do: sampling the policy by default,
its most likely action with `greedy`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from beast.acting import initial_carry, policy_step
from beast.checkpoint import BEST_CHECKPOINT_NAME, CHECKPOINT_NAME, load_checkpoint
from beast.config import Config
from beast.envs import make_vector_env_from_config
from beast.envs.make import make_env
from beast.envs.single import SingleEnvVector
from beast.models.factory import build_configured_model
from beast.rollout import game_over

CHECKPOINTS = {"latest": CHECKPOINT_NAME, "best": BEST_CHECKPOINT_NAME}
EVAL_SEED = 12345  # the same games for every evaluation: the figures compare weights


class VideoError(ValueError):
    """Videos cannot be recorded for this env here (one line: why, and what to install)."""


@dataclasses.dataclass
class EpisodeStats:
    """Returns and lengths of whole games (summed until `game_over`, as the actors count)."""

    returns: list[float]
    lengths: list[int]
    infos: list[dict[str, object]] = dataclasses.field(default_factory=list)
    """Per game, the `info_keys` play_episodes was asked for, as its last step reported them."""

    def metrics(self) -> dict[str, float]:
        return {"eval/return_mean": float(np.mean(self.returns)),
                "eval/return_std": float(np.std(self.returns)),
                "eval/length_mean": float(np.mean(self.lengths))}


def eval_envs(config: Config, episodes: int) -> gym.vector.VectorEnv:
    """Envs built exactly as in training (so a recurrent model's state is cleared where it
    was in training, lost lives included under --episodic-life)."""
    return make_vector_env_from_config(config.env, min(episodes, 16))


def check_video_support(config: Config) -> None:
    """VideoError (one line) unless this run's env can be recorded here: the recorder's
    encoder is installed, the env comes from Gymnasium and renders rgb_array frames."""
    envs = video_env(config, None, "")
    try:
        envs.reset(seed=0)
        frame = envs.env.render()
    except Exception as exc:  # e.g. pygame missing for the classic-control renderers
        raise VideoError(f"cannot record {config.env.env}: "
                         f"{' '.join(str(exc).split())[:200]}") from exc
    finally:
        envs.close()
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise VideoError(f"cannot record {config.env.env}: its rgb_array render is not an "
                         "image")


def video_env(config: Config, folder: Path | None, prefix: str) -> gym.vector.VectorEnv:
    """One env that records every game it plays to FOLDER/PREFIX-episode-N.mp4, with
    Gymnasium's RecordVideo; VideoError if the env or the recorder cannot do it here. It plays
    whole games without the --episodic-life cut, so each file is one game. With no folder the
    env is built and checked but records nothing."""
    try:
        import moviepy  # noqa: F401  (RecordVideo's encoder)
    except ImportError as exc:
        raise VideoError("videos need moviepy, which is not installed; install it with "
                         "`pip install -e \".[video]\"`") from exc
    # Render off screen, with no sound: pygame (the classic-control renderer) otherwise looks
    # for a display and an audio device.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    if config.env.env_backend != "gymnasium":
        raise VideoError(f"videos need --env-backend gymnasium (got {config.env.env_backend})")
    try:
        env = make_env(config.env.env, sticky_actions=config.env.sticky_actions,
                       render_mode="rgb_array")
        if env.render_mode != "rgb_array":
            env.close()
            raise ValueError(f"it renders {env.render_mode}, not rgb_array frames")
        if folder is not None:
            env = gym.wrappers.RecordVideo(env, str(folder), episode_trigger=lambda _: True,
                                           name_prefix=prefix, disable_logger=True)
    except Exception as exc:  # an env without rgb_array rendering, or that refuses render_mode
        reason = " ".join(str(exc).split())[:200]
        raise VideoError(f"cannot record {config.env.env}: {reason}") from exc
    return SingleEnvVector(env)


@torch.inference_mode()
def play_episodes(model: nn.Module, envs: gym.vector.VectorEnv, episodes: int, seed: int,
                  greedy: bool = False, info_keys: tuple[str, ...] = ()) -> EpisodeStats:
    """Play until `episodes` games have ended; the first `episodes` to end are kept. A
    recurrent model's state is cleared where training clears it. `info_keys`: the env info
    entries to keep per game (e.g. ZipfGridworld's map and target)."""
    generator = torch.Generator().manual_seed(seed)
    obs, _ = envs.reset(seed=seed)
    running = np.zeros(envs.num_envs)
    length = np.zeros(envs.num_envs, np.int64)
    ended = np.zeros(envs.num_envs, bool)  # o_t ended a (learning) episode
    ended_game = np.zeros(envs.num_envs, bool)
    carry = initial_carry(model, envs.num_envs)  # carried and cleared as in the actors
    reward = np.zeros(envs.num_envs, np.float32)
    stats = EpisodeStats([], [])
    while len(stats.returns) < episodes:
        agent, carry = policy_step(model, torch.from_numpy(obs), carry, torch.from_numpy(ended),
                                   generator, version=0, greedy=greedy,
                                   reward=torch.from_numpy(np.asarray(reward, np.float32)))
        obs, reward, terminated, truncated, info = envs.step(agent["action"].numpy())
        # next-step autoreset: the step after a game's end is its reset (reward 0, no length)
        running = np.where(ended_game, 0.0, running + reward)
        length = np.where(ended_game, 0, length + 1)
        ended = terminated | truncated
        ended_game = game_over(terminated, truncated, info)
        stats.returns.extend(running[ended_game].tolist())
        stats.lengths.extend(length[ended_game].tolist())
        stats.infos.extend({key: info[key][i].item() for key in info_keys}
                           for i in np.flatnonzero(ended_game))
    return EpisodeStats(stats.returns[:episodes], stats.lengths[:episodes],
                        stats.infos[:episodes])


def load_policy(run_dir: str | Path, config: Config, envs: gym.vector.VectorEnv,
                saved: Config) -> nn.Module:
    """The run's model with `config.eval.checkpoint`'s weights, for `envs`' spaces; with the
    episodic memory, reading the memory that checkpoint holds, frozen."""
    state = load_checkpoint(run_dir, CHECKPOINTS[config.eval.checkpoint])
    model = build_configured_model(envs.single_observation_space, envs.single_action_space,
                                   saved.model, saved.memory)
    model.load_state_dict(state["learner"]["model"])
    if saved.memory.episodic_memory:
        from beast.memory.feed import frozen_reader

        model.memory_reader = frozen_reader(saved.memory, model, state["learner"]["memory"])
    return model.eval()


def saved_config(run_dir: str | Path) -> Config:
    return Config.from_dict(json.loads((Path(run_dir) / "config.json").read_text()))


def evaluate(run_dir: str | Path, config: Config, seed: int = EVAL_SEED) -> EpisodeStats:
    """`--eval RUN_DIR`: play `config.eval.eval_episodes` games with the run's checkpoint
    (`config.eval.checkpoint`: latest or best), greedy or sampled as `config.eval.eval_greedy`
    says; with `config.eval.video`, one env records each game to RUN_DIR/videos."""
    saved = saved_config(run_dir)
    episodes = config.eval.eval_episodes
    if config.eval.video:
        envs = video_env(saved, Path(run_dir) / "videos", f"eval-{config.eval.checkpoint}")
    else:
        envs = eval_envs(saved, episodes)
    try:
        model = load_policy(run_dir, config, envs, saved)
        return play_episodes(model, envs, episodes, seed, config.eval.eval_greedy)
    finally:
        envs.close()
