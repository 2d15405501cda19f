"""The training driver shared by the runtimes: batches in, learner steps, logs, checkpoints.

A runtime supplies a `BatchSource` (where batches come from, where weights go, and what it
counted); the driver owns everything else a run needs: the step budget, early stop on a
target return, the log rows, periodic and final checkpoints, resume, and a bounded shutdown
on SIGINT / SIGTERM.

Call loop::

    exit_code, started = run_training(config, run_dir, make_source, build_env_model(config),
                                      state=None)
        source = make_source(model, spaces..., generation, log)   # actors start
        objective = build_objective(config.loss, model, ...)     # --loss impala|impact|vmpo
        learner = Learner(model, objective, ...)
        while source's env steps < budget and no signal:
            batch = source.next_batch(timeout)                 # a Batch, or None
            result = learner.step(batch.data, env_steps)
            source.publish_weights(learner)                    # only publishes
            source.sync.after_step(result, batch.owners, ...)  # observe -> decide -> record
            log / checkpoint when due
        source.close(); final checkpoint

Env steps and finished episodes come from the source's counter (beast.rollout.EpisodeCounter),
which counts each unroll once, when it is produced: reusing a batch changes neither.
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

from beast.checkpoint import (BEST_CHECKPOINT_NAME, CheckpointError, save_checkpoint,
                              set_rng_state)
from beast.config import Config
from beast.envs import make_vector_env_from_config
from beast.evaluator import EvalResult, PeriodicEvaluator
from beast.learner import Learner, NonFiniteError
from beast.logger import LogSchedule, RunLogger
from beast.memory.feed import build_memory, check_memory_model
from beast.models.factory import build_configured_model
from beast.objectives import build_objective
from beast.replay import ReuseBuffer
from beast.rollout import Batch, EpisodeCounter
from beast.summary import RunOutcome, run_summary
from beast.sync import SyncDriver


class SourceFailure(RuntimeError):
    """A runtime lost what it acts with for a reason outside the code (actors that keep dying,
    no env server reachable, an env that raised): the run stops with this message, which says
    what failed (with the env's or actor's own traceback, if any), and no traceback of ours."""


class BatchSource(Protocol):
    """Where a runtime's batches come from and where the learner's weights go."""

    restarts: int
    counter: EpisodeCounter
    """Env steps and episodes of the unrolls produced so far (each counted once)."""
    sync: SyncDriver | None
    """The weight-sync driver of the source's policy copies; None when it needs none."""

    def next_batch(self, timeout: float) -> Batch | None:
        """The next batch, or None if none was ready within `timeout`. A timeout of 0 is a
        poll (beast.replay asks before every reuse): it returns at once, a whole batch or
        None."""

    def publish_weights(self, learner: Learner) -> None:
        """Make the learner's current weights and version available to the policy copies
        (which take them when the sync driver asks)."""

    def metrics(self) -> dict[str, float]:
        """The runtime's own counters for a log row (e.g. weight syncs)."""

    def close(self) -> None:
        """Stop actors and free resources; idempotent and bounded in time."""


class TrainingStats:
    """Running counters and the metrics averaged between two log rows."""

    COUNTERS = frozenset({"version"})

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        self.returns: collections.deque[float] = collections.deque(state.get("returns", []),
                                                                    maxlen=100)
        self.episodes = int(state.get("episodes", 0))
        self.env_steps_before = int(state.get("env_steps", 0))  # earlier sessions of this run
        self.wall_before = float(state.get("wall_time", 0.0))
        self.best_return = float(state.get("best_return", math.nan))  # best row's mean return
        self.best_eval: float | None = state.get("best_eval")  # best periodic eval return
        self.best_eval_steps: int | None = state.get("best_eval_steps")
        self.resumes = int(state.get("resumes", -1)) + 1
        self.started = time.monotonic()
        self._sums: dict[str, float] = collections.defaultdict(float)
        self._latest: dict[str, float] = {}
        self._count = 0
        self._last_time = self.started
        self._last_steps = self.env_steps_before
        self.env_steps = self.env_steps_before

    def state_dict(self) -> dict[str, Any]:
        return {"returns": list(self.returns), "episodes": self.episodes,
                "env_steps": self.env_steps, "wall_time": self.wall_time(),
                "resumes": self.resumes, "best_return": self.best_return,
                "best_eval": self.best_eval, "best_eval_steps": self.best_eval_steps}

    def wall_time(self) -> float:
        return self.wall_before + time.monotonic() - self.started

    def count(self, counter: EpisodeCounter) -> None:
        """Take the source's counts: its env steps, and the episodes finished since last time."""
        returns = counter.take_returns()
        self.returns.extend(returns)
        self.episodes += len(returns)
        self.env_steps = self.env_steps_before + counter.env_steps

    def add(self, metrics: dict[str, float]) -> None:
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

    def row(self, restarts: int) -> dict[str, float]:
        """Averages since the previous row plus the run's counters; resets the averages."""
        now = time.monotonic()
        sps = (self.env_steps - self._last_steps) / max(now - self._last_time, 1e-9)
        row = {name: total / max(self._count, 1) for name, total in self._sums.items()}
        row.update(self._latest)  # counters are reported as they are now, not averaged
        if not math.isnan(self.mean_return):
            self.best_return = max(self.mean_return, self.best_return
                                   if not math.isnan(self.best_return) else -math.inf)
        row.update({"env_steps": float(self.env_steps), "wall_time": self.wall_time(),
                    "sps": sps, "mean_return": self.mean_return, "episodes": float(self.episodes),
                    "actor_restarts": float(restarts)})
        self._sums.clear()
        self._count = 0
        self._last_time, self._last_steps = now, self.env_steps
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
    """The model for this config's env, and the env's (adapted) observation and action spaces.
    Making one env here is also the check that it can be made at all. Seeds every RNG first:
    the model's initial weights follow --seed."""
    seed_everything(config.run.seed)
    probe = make_vector_env_from_config(config.env, 1)
    spaces = probe.single_observation_space, probe.single_action_space
    probe.close()
    model = build_configured_model(*spaces, config.model, config.memory)
    check_memory_model(config.memory, model)
    return model, *spaces


def run_dir_for(config: Config) -> Path:
    """Where a new run goes: --savedir/--run-name (default: env id and time). The name must be
    one plain folder name, so a run never lands outside the savedir."""
    name = config.run.run_name or f"{config.env.env}-{time.strftime('%Y%m%d-%H%M%S')}"
    name = name.replace("/", "_").replace(":", "_")
    if name in ("", ".", "..") or Path(name).name != name:
        raise ValueError(f"--run-name {config.run.run_name!r} is not a plain folder name")
    return Path(config.run.savedir) / name


def prepare_run_dir(config: Config, resume: bool, run_dir: str | Path | None = None
                    ) -> tuple[Path, bool]:
    """Create (or, when resuming, reuse) the run directory; returns it and whether this call
    created it (so a run that fails before it starts can remove it again)."""
    path = Path(run_dir) if run_dir is not None else run_dir_for(config)
    if path.exists() and not resume and any(path.iterdir()):
        raise FileExistsError(f"run directory {path} exists; use --resume {path} to continue it")
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    return path, created


def write_config(run_dir: Path, config: Config) -> None:
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")


SourceFactory = Callable[[nn.Module, gym.Space, gym.Space, int, Callable[[str], None]],
                         BatchSource]
EVAL_FINISH_SECONDS = 60.0  # how long a finished run waits for its last periodic evaluation


def run_training(config: Config, run_dir: Path, make_source: SourceFactory,
                 probe: tuple[nn.Module, gym.Space, gym.Space],
                 state: dict[str, Any] | None = None) -> tuple[int, bool]:
    """Train until the step budget, the target return or a signal. `probe` is what
    `build_env_model` returned; `state` a checkpoint to resume from (`load_checkpoint`).
    Returns the exit code and whether training started (a first learner step was taken)."""
    model, obs_space, action_space = probe
    stats = TrainingStats(state["stats"] if state else None)
    sinks = []
    if config.run.wandb:
        from beast.wandb_log import WandbSink

        try:
            sinks.append(WandbSink(config, run_dir))
        except Exception as exc:  # not logged in, no network in online mode, a bad setting
            print(f"[beast] --wandb: W&B did not start: {exc}".splitlines()[0], file=sys.stderr)
            return 2, False
    logger = RunLogger(run_dir, config.run.total_steps, stats.env_steps, sinks)
    signals = StopSignals()
    source: BatchSource | None = None
    learner: Learner | None = None
    evaluator: PeriodicEvaluator | None = None
    eval_row: dict[str, float] = {}  # the latest periodic evaluation, for the next log row
    started = False
    exit_code = 0

    def checkpoint() -> bool:
        try:
            save_checkpoint(run_dir, {"learner": learner.state_dict(),
                                      "stats": stats.state_dict(), "config": config.to_dict()})
            return True
        except CheckpointError as exc:
            logger.message(f"[beast] {exc}")
            return False

    def write_row(now: float) -> None:
        logger.write({**stats.row(source.restarts), **source.metrics(), **eval_row})
        eval_row.clear()
        schedule.advance(now, stats.env_steps)

    def take_eval(result: EvalResult) -> None:
        """Log a finished periodic evaluation; keep its weights if they are the best so far."""
        eval_row.update(result.metrics)
        value = result.metrics["eval/return_mean"]
        if stats.best_eval is not None and value <= stats.best_eval:
            return
        try:
            save_checkpoint(run_dir, {"learner": {"model": {k: torch.from_numpy(v) for k, v
                                                             in result.weights.items()}},
                                      "eval": result.metrics, "config": config.to_dict()},
                            BEST_CHECKPOINT_NAME)
            stats.best_eval, stats.best_eval_steps = value, result.env_steps
        except CheckpointError as exc:
            logger.message(f"[beast] {exc}")

    try:
        # The episodic memory comes before the actors, which read its banks through the
        # model's reader (their copies of the model keep it; beast.memory.banks).
        memory = build_memory(config.memory, model, config.loss.discount, config.run.seed)
        if memory is not None:
            model.memory_reader = memory.reader()
        # Actors start first: their start-up overlaps the learner's (the first optimiser
        # built in a process imports torch._dynamo, over a second here).
        source = make_source(model, obs_space, action_space, stats.resumes, logger.message)
        if config.loss.loss == "impact":  # IMPACT reuses each batch up to K times
            source = ReuseBuffer(source, config.impact.reuse_buffer_size,
                                 config.impact.reuse_max_uses)
        objective = build_objective(config.loss, model, impact=config.impact, vmpo=config.vmpo)
        learner = Learner(model, objective, config.optim, config.run.total_steps,
                          config.run.device, memory)
        if state is not None:
            learner.load_state_dict(state["learner"])
            set_rng_state(state["rng"])
        write_config(run_dir, config)
        source.publish_weights(learner)
        if config.eval.eval_every is not None:
            evaluator = PeriodicEvaluator(config, run_dir, logger.message)
        schedule = LogSchedule(config.run.log_seconds, config.run.log_steps,
                               config.run.total_steps, stats.env_steps, time.monotonic())
        # The first checkpoint comes after the first learner step, so a run killed early
        # still has one to resume from; then one every --checkpoint-minutes.
        next_checkpoint = time.monotonic()
        target = config.run.target_return
        while stats.env_steps < config.run.total_steps and signals.received is None:
            batch = source.next_batch(timeout=0.5)
            if batch is not None:
                result = learner.step(batch.data, stats.env_steps)
                started = True
                source.publish_weights(learner)
                if source.sync is not None:
                    source.sync.after_step(result, batch.owners, batch.data["policy_version"],
                                           learner.version, time.monotonic())
                stats.add(result.metrics)
                stats.count(source.counter)
                if evaluator is not None:
                    evaluator.maybe_submit(stats.env_steps, learner.model)
                if target is not None and len(stats.returns) == 100 and stats.mean_return >= target:
                    logger.message(f"[beast] mean return {stats.mean_return:.1f} >= {target} at "
                                   f"{stats.env_steps:,} steps, {stats.wall_time():.1f} s")
                    break
            now = time.monotonic()
            if evaluator is not None and (evaluated := evaluator.poll()) is not None:
                if eval_row:  # the previous evaluation is not logged yet: its row comes now
                    write_row(now)
                take_eval(evaluated)
            if schedule.due(now, stats.env_steps):
                write_row(now)
            if started and now >= next_checkpoint:
                checkpoint()
                next_checkpoint = now + 60 * config.run.checkpoint_minutes
        if signals.received is not None:
            logger.message(f"[beast] {signal.Signals(signals.received).name}: stopping")
            exit_code = 128 + signals.received
    except NonFiniteError as exc:
        logger.message(f"[beast] stopped: {exc}")
        exit_code = 1
    except SourceFailure as exc:
        logger.message(f"[beast] run failed: {exc}")
        exit_code = 1
    except Exception:
        logger.message(f"[beast] run failed:\n{traceback.format_exc()}")
        exit_code = 1
    finally:
        final_row = {}
        if started:
            final_row = {**stats.row(source.restarts), **source.metrics(), **eval_row}
        if source is not None:
            source.close()
        if evaluator is not None:
            # A run that ended normally waits (bounded) for the evaluation still running.
            if started and exit_code == 0 and signals.received is None and (
                    evaluated := evaluator.finish(EVAL_FINISH_SECONDS)) is not None:
                take_eval(evaluated)
                final_row.update(eval_row)
            evaluator.close()
        if started:
            logger.write(final_row)
            if checkpoint():
                logger.message(f"[beast] checkpoint written to {run_dir} at "
                               f"{stats.env_steps:,} steps")
        logger.close()
        signals.restore()
    if started:
        print(run_summary(run_dir, RunOutcome(stats.env_steps, stats.wall_time(),
                                              stats.mean_return, stats.best_return,
                                              stats.best_eval, stats.best_eval_steps)))
    sys.stdout.flush()
    return exit_code, started
