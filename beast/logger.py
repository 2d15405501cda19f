"""Run logging behind one call: TensorBoard events, logs.csv and a progress line.

Call loop::

    logger = RunLogger(run_dir, total_steps)
    logger.write({"env_steps": ..., "sps": ..., "mean_return": ..., ...})   # one row each time
    logger.close()

logs.csv gets one column per metric name; a metric that first appears later widens the file
(the header is rewritten), so every row stays aligned with the header.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from pathlib import Path
from typing import Protocol

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm


class LogSchedule:
    """When the next log row is due: every `seconds`, every `steps` env steps, or (both None)
    about 50 rows per run, spaced by the run's measured pace but between 1 and 5 s apart.

        schedule = LogSchedule(seconds, steps, total_steps, start_steps, now)
        if schedule.due(now, env_steps):
            write the row; schedule.advance(now, env_steps)
    """

    ROWS_PER_RUN = 50
    AUTO_BOUNDS = (1.0, 5.0)

    def __init__(self, seconds: float | None, steps: int | None, total_steps: int,
                 start_steps: int, now: float) -> None:
        self.seconds, self.steps, self.total_steps = seconds, steps, total_steps
        self.start_steps, self.start_time = start_steps, now
        self.next_time = now + (seconds if seconds is not None else self.AUTO_BOUNDS[0])
        self.next_step = self._step_after(start_steps)

    def _step_after(self, env_steps: int) -> int:
        return (env_steps // self.steps + 1) * self.steps if self.steps else 0

    def due(self, now: float, env_steps: int) -> bool:
        if self.steps is not None:
            return env_steps >= self.next_step
        return now >= self.next_time

    def advance(self, now: float, env_steps: int) -> None:
        """Schedule the row after the one just written (at `now`, `env_steps`)."""
        if self.steps is not None:
            self.next_step = self._step_after(env_steps)
            return
        self.next_time = now + (self.seconds if self.seconds is not None
                                else self.auto_interval(now, env_steps))

    def auto_interval(self, now: float, env_steps: int) -> float:
        """1/50 of the run's expected length at its pace so far, clamped to AUTO_BOUNDS."""
        low, high = self.AUTO_BOUNDS
        done, elapsed = env_steps - self.start_steps, now - self.start_time
        if done <= 0 or elapsed <= 0:
            return low
        expected = elapsed * (self.total_steps - self.start_steps) / done
        return min(max(expected / self.ROWS_PER_RUN, low), high)


def progress_text(metrics: dict[str, float]) -> str:
    """The short summary shown on the progress line."""
    parts = [f"SPS {metrics.get('sps', 0):,.0f}"]
    if not math.isnan(metrics.get("mean_return", math.nan)):
        parts.append(f"return {metrics['mean_return']:.1f}")
    if "loss/total" in metrics:
        parts.append(f"loss {metrics['loss/total']:.3f}")
    if "aps/syncs_total" in metrics:
        parts.append(f"syncs {metrics['aps/syncs_total']:,.0f}")
    if "learner/lag_mean" in metrics:
        parts.append(f"lag {metrics['learner/lag_mean']:.1f}")
    if "learner/kl_mean" in metrics:
        parts.append(f"KL {metrics['learner/kl_mean']:.4f}")
    if metrics.get("actor_restarts"):
        parts.append(f"restarts {metrics['actor_restarts']:.0f}")
    return " | ".join(parts)


class CsvLog:
    """Append-only CSV whose header grows when new metric names appear."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] = []
        if path.exists():  # resuming: keep appending under the existing header
            with path.open(newline="") as f:
                self.columns = next(csv.reader(f), [])

    def append(self, row: dict[str, float]) -> None:
        new = [k for k in row if k not in self.columns]
        if new:
            self._widen(self.columns + new)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(row)

    def _widen(self, columns: list[str]) -> None:
        rows: list[dict[str, str]] = []
        if self.path.exists():
            with self.path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)
        self.columns = columns


class MetricSink(Protocol):
    """Another place rows go (e.g. beast.wandb_log.WandbSink)."""

    def write(self, metrics: dict[str, float], env_steps: int) -> None: ...

    def close(self) -> None: ...


class RunLogger:
    """Writes each metrics row to TensorBoard, logs.csv and the progress line.

    The progress line is a tqdm bar on a terminal and a plain line per row otherwise (CI logs).
    """

    def __init__(self, run_dir: str | Path, total_steps: int, initial_steps: int = 0,
                 sinks: list[MetricSink] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.sinks = list(sinks or [])
        self.csv = CsvLog(self.run_dir / "logs.csv")
        self.tensorboard = SummaryWriter(str(self.run_dir / "tensorboard"))
        self.interactive = sys.stderr.isatty()
        self.bar = tqdm(total=total_steps, initial=initial_steps, unit="step", unit_scale=True,
                        dynamic_ncols=True, disable=not self.interactive)

    def write(self, metrics: dict[str, float]) -> None:
        steps = int(metrics.get("env_steps", 0))
        for name, value in metrics.items():
            self.tensorboard.add_scalar(name, value, steps)
        self.csv.append(metrics)
        for sink in self.sinks:
            sink.write(metrics, steps)
        text = progress_text(metrics)
        if self.interactive:
            self.bar.update(steps - self.bar.n)
            self.bar.set_postfix_str(text, refresh=True)
        else:
            print(f"[beast] steps {steps:,} | {text}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        """A one-off line (restarts, checkpoints) that does not break the progress bar."""
        if self.interactive:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()
        self.tensorboard.close()
        for sink in self.sinks:
            sink.close()
