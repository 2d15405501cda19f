"""The training driver shared by the runtimes: batches in, learner steps, logs, checkpoints.

A runtime supplies a `BatchSource` (where batches come from and where weights go); the driver
owns everything else a run needs: the step budget, early stop on a target return, the log
rows, periodic and final checkpoints, resume, and a bounded shutdown on SIGINT / SIGTERM.

Call loop::

    exit_code = run_training(config, run_dir, make_source, resume=False)
        source = make_source(model, spaces..., generation, log)   # actors start
        learner = Learner(model, ...)
        while budget left and no signal:
            batch = source.next_batch(timeout)     # [T+1, B, ...] tensors, or None
            metrics = learner.step(batch)
            source.publish_weights(learner)        # the one place weights leave the learner
            log / checkpoint when due
        source.close(); final checkpoint
"""

from __future__ import annotations

import collections
import json
import math
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from beast.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from beast.config import Config
from beast.envs import make_vector_env_from_config
from beast.learner import Learner
from beast.logger import RunLogger
from beast.models import build_model
from beast.rollout import finished_episodes


class BatchSource(Protocol):
    """Where a runtime's batches come from and where the learner's weights go."""

    restarts: int

    def next_batch(self, timeout: float) -> dict[str, torch.Tensor] | None:
        """The next [T+1, B, ...] batch, or None if none was ready within `timeout`."""

    def publish_weights(self, learner: Learner) -> None:
        """Make the learner's current weights and version available to actors. This is the one
        function a synchronisation controller gates."""

    def metrics(self) -> dict[str, float]:
        """The runtime's own counters for a log row (e.g. weight syncs)."""

    def close(self) -> None:
        """Stop actors and free resources; idempotent and bounded in time."""


class TrainingStats:
    """Running counters and the metrics averaged between two log rows."""

    COUNTERS = frozenset({"version", "env_steps"})

    def __init__(self, env_steps: int, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        self.returns: collections.deque[float] = collections.deque(state.get("returns", []),
                                                                    maxlen=100)
        self.episodes = int(state.get("episodes", 0))
        self.wall_before = float(state.get("wall_time", 0.0))  # earlier sessions of this run
        self.resumes = int(state.get("resumes", -1)) + 1
        self.started = time.monotonic()
        self._sums: dict[str, float] = collections.defaultdict(float)
        self._latest: dict[str, float] = {}
        self._count = 0
        self._last_time = self.started
        self._last_steps = env_steps

    def state_dict(self) -> dict[str, Any]:
        return {"returns": list(self.returns), "episodes": self.episodes,
                "wall_time": self.wall_time(), "resumes": self.resumes}

    def wall_time(self) -> float:
        return self.wall_before + time.monotonic() - self.started

    def add(self, batch: dict[str, torch.Tensor], metrics: dict[str, float]) -> None:
        returns, _ = finished_episodes({k: batch[k].numpy()
                                        for k in ("terminated", "truncated", "episode_return",
                                                  "episode_step")})
        self.returns.extend(returns.tolist())
        self.episodes += len(returns)
        for name, value in metrics.items():
            if name in self.COUNTERS:
                self._latest[name] = value
            else:
                self._sums[name] += value
        self._count += 1

    @property
    def mean_return(self) -> float:
        """Mean return of the last 100 episodes (NaN before the first)."""
        return float(np.mean(self.returns)) if self.returns else math.nan

    def row(self, env_steps: int, restarts: int) -> dict[str, float]:
        """Averages since the previous row plus the run's counters; resets the averages."""
        now = time.monotonic()
        sps = (env_steps - self._last_steps) / max(now - self._last_time, 1e-9)
        row = {name: total / max(self._count, 1) for name, total in self._sums.items()}
        row.update(self._latest)  # counters are reported as they are now, not averaged
        row.update({"env_steps": float(env_steps), "wall_time": self.wall_time(), "sps": sps,
                    "mean_return": self.mean_return, "episodes": float(self.episodes),
                    "actor_restarts": float(restarts)})
        self._sums.clear()
        self._count = 0
        self._last_time, self._last_steps = now, env_steps
        return row


class StopSignals:
    """Turns SIGINT / SIGTERM into a flag the loop checks, so shutdown runs in order."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous = {sig: signal.signal(sig, self._handle)
                          for sig in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_env_model(config: Config) -> tuple[nn.Module, gym.Space, gym.Space]:
    """The model for this config's env, and the env's observation and action spaces."""
    probe = make_vector_env_from_config(config.env, 1)
    spaces = probe.single_observation_space, probe.single_action_space
    probe.close()
    return build_model(*spaces, config.model), *spaces


def prepare_run_dir(config: Config, resume: bool, run_dir: str | Path | None = None) -> Path:
    """Create (or, when resuming, reuse) the run directory and write config.json."""
    if run_dir is None:
        name = config.run.run_name or f"{config.env.env}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(config.run.savedir) / name.replace("/", "_").replace(":", "_")
    path = Path(run_dir)
    if path.exists() and not resume and any(path.iterdir()):
        raise FileExistsError(f"run directory {path} exists; use --resume {path} to continue it")
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return path


def run_training(config: Config, run_dir: Path,
                 make_source: Callable[[nn.Module, gym.Space, gym.Space, int,
                                        Callable[[str], None]], BatchSource],
                 resume: bool = False) -> int:
    """Train until the step budget, the target return or a signal; returns the exit code."""
    seed_everything(config.run.seed)
    model, obs_space, action_space = build_env_model(config)
    state = load_checkpoint(run_dir) if resume else None
    stats = TrainingStats(state["learner"]["env_steps"] if state else 0,
                          state["stats"] if state else None)
    logger = RunLogger(run_dir, config.run.total_steps, state["learner"]["env_steps"] if state else 0)
    signals = StopSignals()
    source: BatchSource | None = None
    learner: Learner | None = None
    exit_code = 0

    def checkpoint() -> None:
        save_checkpoint(run_dir, {"learner": learner.state_dict(), "stats": stats.state_dict(),
                                  "config": config.to_dict()})

    try:
        # Actors start first: their start-up overlaps the learner's (the first optimiser
        # built in a process imports torch._dynamo, over a second here).
        source = make_source(model, obs_space, action_space, stats.resumes, logger.message)
        learner = Learner(model, config.loss, config.optim, config.run.total_steps,
                          config.run.device)
        if state is not None:
            learner.load_state_dict(state["learner"])
            set_rng_state(state["rng"])
        source.publish_weights(learner)
        next_log = time.monotonic() + config.run.log_seconds
        next_checkpoint = time.monotonic() + 60 * config.run.checkpoint_minutes
        target = config.run.target_return
        while learner.env_steps < config.run.total_steps and signals.received is None:
            batch = source.next_batch(timeout=0.5)
            if batch is not None:
                metrics = learner.step(batch)
                source.publish_weights(learner)
                stats.add(batch, metrics)
                if target is not None and len(stats.returns) == 100 and stats.mean_return >= target:
                    logger.message(f"[beast] mean return {stats.mean_return:.1f} >= {target} at "
                                   f"{learner.env_steps:,} steps, {stats.wall_time():.1f} s")
                    break
            now = time.monotonic()
            if now >= next_log:
                logger.write({**stats.row(learner.env_steps, source.restarts),
                              **source.metrics()})
                next_log = now + config.run.log_seconds
            if now >= next_checkpoint:
                checkpoint()
                next_checkpoint = now + 60 * config.run.checkpoint_minutes
        if signals.received is not None:
            logger.message(f"[beast] {signal.Signals(signals.received).name}: stopping")
            exit_code = 128 + signals.received
    except Exception:
        logger.message(f"[beast] run failed:\n{traceback.format_exc()}")
        exit_code = 1
    finally:
        final_row = {}
        if learner is not None:
            final_row = {**stats.row(learner.env_steps, source.restarts if source else 0),
                         **(source.metrics() if source else {})}
        if source is not None:
            source.close()
        if learner is not None:
            logger.write(final_row)
            checkpoint()
            logger.message(f"[beast] checkpoint written to {run_dir} at "
                           f"{learner.env_steps:,} steps")
        logger.close()
        signals.restore()
    sys.stdout.flush()
    return exit_code
