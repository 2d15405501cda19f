"""Periodic evaluation while training (--eval-every), in a process of its own.

The learner never waits for it: the training loop hands over a copy of the weights when an
evaluation is due and the evaluator is idle, and picks the result up on a later iteration.
The child builds its own envs and model once, plays `--eval-episodes` games per request (one
thread, so it takes no more than one core), and can record the first game of a request.

    evaluator = PeriodicEvaluator(config, run_dir, log)
    while training:
        evaluator.maybe_submit(env_steps, learner.model)  # when due and idle
        result = evaluator.poll()                          # an EvalResult, or None
    result = evaluator.finish(timeout)                     # the one still running, if any
    evaluator.close()

Weights travel as NumPy arrays over a multiprocessing pipe between this run's own processes.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from beast.config import Config
from beast.evaluate import EVAL_SEED



@dataclasses.dataclass
class EvalResult:
    env_steps: int
    """The env step count at which the evaluated weights were taken."""
    metrics: dict[str, float]
    weights: dict[str, np.ndarray]
    """The evaluated weights (what checkpoint_best.pt stores if they are the best so far)."""


def _record(model: nn.Module, config: Config, run_dir: Path, env_steps: int) -> str | None:
    """Record one game to RUN/videos/step-N-episode-0.mp4; the reason if that failed."""
    from beast.evaluate import play_episodes, video_env

    try:
        recorder = video_env(config, run_dir / "videos", f"step-{env_steps}")
        try:
            play_episodes(model, recorder, 1, EVAL_SEED, config.eval.eval_greedy)
        finally:
            recorder.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def _child(conn: Connection, config_dict: dict[str, Any], run_dir: str) -> None:
    """The evaluator process: wait for (env_steps, weights, record) and answer with metrics."""
    import torch

    from beast.evaluate import eval_envs, play_episodes
    from beast.models.factory import build_configured_model

    torch.set_num_threads(1)
    config = Config.from_dict(config_dict)
    episodes = config.eval.eval_episodes
    try:
        envs = eval_envs(config, episodes)
        model = build_configured_model(envs.single_observation_space, envs.single_action_space,
                                       config.model, config.memory)
        model.eval()
        while (request := conn.recv()) is not None:
            env_steps, weights, record = request
            model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
            stats = play_episodes(model, envs, episodes, EVAL_SEED, config.eval.eval_greedy)
            video_error = _record(model, config, Path(run_dir), env_steps) if record else None
            conn.send(("ok", env_steps, stats.metrics(), video_error))
        envs.close()
    except (EOFError, KeyboardInterrupt):
        pass
    except Exception as exc:  # an env that raises, a video that cannot be recorded
        first = f"{type(exc).__name__}: {exc}".splitlines()[0]
        try:
            conn.send(("error", first, traceback.format_exc()))
        except OSError:
            pass


class PeriodicEvaluator:
    """Evaluates the current weights every `config.eval.eval_every` env steps (see above)."""

    def __init__(self, config: Config, run_dir: Path, log: Callable[[str], None]) -> None:
        self.every = int(config.eval.eval_every)
        self.video_every = config.eval.eval_video_every
        self.log = log
        self.next_eval = 0  # evaluate the first weights too: the curve starts at the start
        self.next_video = 0
        self._pending: tuple[int, dict[str, np.ndarray]] | None = None
        context = multiprocessing.get_context("spawn")  # no state inherited from the learner
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=_child, name="beast-evaluator", daemon=True,
                                        args=(child_conn, config.to_dict(), str(run_dir)))
        self._process.start()
        child_conn.close()
        self.failed = False

    def maybe_submit(self, env_steps: int, model: nn.Module) -> bool:
        """Hand over a copy of `model`'s weights if an evaluation is due and none is running."""
        if self.failed or self._pending is not None or env_steps < self.next_eval:
            return False
        weights = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
        record = self.video_every is not None and env_steps >= self.next_video
        if record:
            self.next_video = (env_steps // self.video_every + 1) * self.video_every
        try:
            self._conn.send((env_steps, weights, record))
        except OSError:
            return self._fail("the evaluator process is gone")
        self._pending = (env_steps, weights)
        self.next_eval = (env_steps // self.every + 1) * self.every
        return True

    def poll(self) -> EvalResult | None:
        """The finished evaluation's result, if one has arrived (never blocks)."""
        if self._pending is None or self.failed:
            return None
        try:
            if not self._conn.poll():
                if not self._process.is_alive():
                    self._fail(f"the evaluator process died (exit code "
                               f"{self._process.exitcode})")
                return None
            message = self._conn.recv()
        except (EOFError, OSError):
            self._fail("the evaluator process is gone")
            return None
        if message[0] == "error":
            self._fail(message[1])
            return None
        _, env_steps, metrics, video_error = message
        if video_error is not None:
            self.video_every = None
            self.log(f"[beast] evaluation videos stopped: {video_error} (evaluation goes on)")
        _, weights = self._pending
        self._pending = None
        return EvalResult(env_steps, {**metrics, "eval/env_steps": float(env_steps)}, weights)

    def finish(self, timeout: float) -> EvalResult | None:
        """At the end of a run: wait up to `timeout` s for the evaluation still running."""
        if self._pending is not None and not self.failed:
            try:
                self._conn.poll(timeout)
            except (EOFError, OSError):
                pass
        return self.poll()

    def _fail(self, reason: str) -> bool:
        self.failed = True
        self._pending = None
        self.log(f"[beast] periodic evaluation stopped: {reason} (training goes on)")
        return False

    def close(self) -> None:
        """Stop the child (bounded: a child stuck in an env is terminated)."""
        try:
            self._conn.send(None)
        except OSError:
            pass
        self._process.join(timeout=2.0)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=2.0)
        self._conn.close()
