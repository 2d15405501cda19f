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

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm


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


class RunLogger:
    """Writes each metrics row to TensorBoard, logs.csv and the progress line.

    The progress line is a tqdm bar on a terminal and a plain line per row otherwise (CI logs).
    """

    def __init__(self, run_dir: str | Path, total_steps: int, initial_steps: int = 0) -> None:
        self.run_dir = Path(run_dir)
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
