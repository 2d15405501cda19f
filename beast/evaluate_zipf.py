"""The three accuracies of a ZipfGridworld run (the episodic-memory spec's metrics), which
`--eval RUN_DIR` prints beside the mean return:

    Zipfian: success on the training law (dist "zipf", the run's alpha)
    Uniform: every (map, target) pair alike (dist "uniform")
    Rare:    the rarest fifth of maps and of targets only (dist "uniform_rare")

    if is_zipf_gridworld(saved.env.env):
        for accuracy in zipf_accuracies(run_dir, config):   # eval_episodes games per set
            print(accuracy)                                 # "Rare 0.210 ± 0.025 (1000 games)"

An episode succeeds when it reaches the target (return 1; every other ending returns 0), so an
accuracy is the mean return over the set's games, with a 95% normal-approximation interval.
Each set plays the same seeded games for every run, with the policy sampled (or greedy, as
--eval-greedy says) and the memory frozen.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import numpy as np

from beast.config import Config
from beast.envs import make_vector_env_from_config
from beast.envs.make import UnknownEnvError, import_namespace
from beast.evaluate import EVAL_SEED, load_policy, play_episodes, saved_config

ENTRY_POINT = "beast.envs.zipf_gridworld:ZipfGridworld"
SETS = (("Zipfian", "zipf"), ("Uniform", "uniform"), ("Rare", "uniform_rare"))


class Accuracy(NamedTuple):
    name: str
    mean: float
    half_width: float  # of the 95% interval
    games: int

    def __str__(self) -> str:
        return f"{self.name} {self.mean:.3f} ± {self.half_width:.3f} ({self.games} games)"


def is_zipf_gridworld(env_id: str) -> bool:
    """Whether `env_id` (a Gymnasium id, or module:id) is registered as ZipfGridworld."""
    try:
        spec = gym.registry.get(import_namespace(env_id))  # module:id imports the module
    except UnknownEnvError:
        return False
    if spec is None:
        return False
    entry = spec.entry_point
    if isinstance(entry, str):
        return entry == ENTRY_POINT
    return f"{entry.__module__}:{entry.__qualname__}" == ENTRY_POINT


def accuracy(name: str, returns: list[float]) -> Accuracy:
    successes = np.asarray(returns) > 0
    p, n = float(successes.mean()), len(successes)
    return Accuracy(name, p, 1.96 * math.sqrt(p * (1 - p) / n), n)


def zipf_accuracies(run_dir: str | Path, config: Config, seed: int = EVAL_SEED
                    ) -> list[Accuracy]:
    """Zipfian, Uniform and Rare accuracy of the run's checkpoint, `eval_episodes` games each."""
    saved = saved_config(run_dir)
    episodes = config.eval.eval_episodes
    results = []
    model = None
    for name, dist in SETS:
        envs = make_vector_env_from_config(saved.env, min(episodes, 16),
                                           env_kwargs={"dist": dist})
        try:
            if model is None:
                model = load_policy(run_dir, config, envs, saved)
            stats = play_episodes(model, envs, episodes, seed, config.eval.eval_greedy)
        finally:
            envs.close()
        results.append(accuracy(name, stats.returns))
    return results
