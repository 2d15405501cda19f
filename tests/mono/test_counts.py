"""Env steps and episodes are counted where unrolls are produced: a learner that uses every
batch twice trains for the same env-step budget (and LR schedule) and reports the same
episodes as one that uses it once."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from beast.checkpoint import load_checkpoint
from beast.config import Config, EnvConfig, ModelConfig, RunConfig
from beast.mono.sources import SerialSource
from beast.rollout import Batch, EpisodeCounter
from beast.training import build_env_model, prepare_run_dir, run_training

COUNTING = "tests.envs.counting_env:Counting-v0"
T, K, BUDGET = 8, 4, 2_000


class RepeatSource:
    """Hands every batch of `inner` to the learner `times` times (as IMPACT's buffer would)."""

    def __init__(self, inner: SerialSource, times: int) -> None:
        self.inner, self.times = inner, times
        self.counter, self.sync, self.restarts = inner.counter, inner.sync, 0
        self._batch: Batch | None = None
        self._left = 0
        self.handed = 0

    def next_batch(self, timeout: float) -> Batch:
        if self._left == 0:
            self._batch, self._left = self.inner.next_batch(timeout), self.times
        self._left -= 1
        self.handed += 1
        return self._batch

    def publish_weights(self, learner) -> None:
        self.inner.publish_weights(learner)

    def metrics(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        self.inner.close()


def train(tmp: Path, times: int) -> tuple[dict, list[float]]:
    config = Config(env=EnvConfig(COUNTING, num_envs=K), model=ModelConfig(hidden_sizes=(8,)),
                    run=RunConfig(num_actors=0, unroll_length=T, total_steps=BUDGET,
                                  savedir=str(tmp), run_name=f"x{times}", log_seconds=0.05))
    probe = build_env_model(config)
    sources = []

    def make_source(model, obs_space, action_space, generation, log):
        sources.append(RepeatSource(SerialSource(config, model, obs_space, action_space,
                                                 generation), times))
        return sources[0]

    run_dir, _ = prepare_run_dir(config, resume=False)
    code, started = run_training(config, run_dir, make_source, probe)
    assert code == 0 and started
    state = load_checkpoint(run_dir)
    with (run_dir / "logs.csv").open(newline="") as f:
        rates = [float(row["learning_rate"]) for row in csv.DictReader(f) if row["learning_rate"]]
    return {**state["stats"], "version": state["learner"]["version"],
            "handed": sources[0].handed}, rates


def test_reusing_batches_changes_neither_the_budget_nor_the_episode_count(tmp_path: Path) -> None:
    once, _ = train(tmp_path, 1)
    twice, rates = train(tmp_path, 2)
    steps_per_batch = T * K
    expected_steps = -(-BUDGET // steps_per_batch) * steps_per_batch  # whole batches
    assert once["env_steps"] == twice["env_steps"] == expected_steps
    # Counting episodes of 5 steps + a reset step: each env finishes one every 6 steps.
    assert once["episodes"] == twice["episodes"] > 0
    assert once["returns"] == twice["returns"]
    assert twice["version"] == 2 * once["version"] - 1  # the last batch is used once: budget met
    assert twice["handed"] == twice["version"]
    # The LR schedule follows env steps: it decays no faster when every batch is used twice
    # (counted per learner step it would reach 0 at half the budget).
    assert rates and min(rates) > 0


def test_the_counter_counts_each_unroll_once() -> None:
    counter = EpisodeCounter()
    unrolls = {"reward": np.zeros((T + 1, K), np.float32),
               "terminated": np.zeros((T + 1, K), bool), "truncated": np.zeros((T + 1, K), bool),
               "episode_return": np.arange((T + 1) * K, dtype=np.float32).reshape(T + 1, K),
               "episode_step": np.ones((T + 1, K), np.int32)}
    unrolls["terminated"][3, 1] = True
    unrolls["episode_step"][4, 1] = 0
    counter.add(unrolls)
    assert counter.env_steps == T * K and counter.episodes == 1
    assert counter.take_returns() == [float(unrolls["episode_return"][3, 1])]
    assert counter.take_returns() == []
