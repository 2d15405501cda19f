"""The few lines printed when a run ends: what it reached and where to look at it.

    print(run_summary(run_dir, RunOutcome(env_steps, wall_time, final_return, best_return)))
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """What a finished run reached (returns are mean-100 returns; NaN before any episode)."""

    env_steps: int
    wall_time: float
    final_return: float
    best_return: float
    best_eval: float | None = None
    """Best mean return of the periodic evaluations (--eval-every), if any ran."""
    best_eval_steps: int | None = None


def _fmt(value: float) -> str:
    return "none yet" if math.isnan(value) else f"{value:.1f}"


def run_summary(run_dir: str | Path, outcome: RunOutcome) -> str:
    """The end-of-run summary; lists only files that exist (videos, the best checkpoint)."""
    run_dir = Path(run_dir)
    sps = outcome.env_steps / outcome.wall_time if outcome.wall_time > 0 else 0.0
    lines = [f"done: {outcome.env_steps:,} env steps in {outcome.wall_time:.1f} s "
             f"({sps:,.0f} steps/s)",
             f"mean return (last 100 episodes): final {_fmt(outcome.final_return)}, "
             f"best {_fmt(outcome.best_return)}"]
    if outcome.best_eval is not None:
        lines.append(f"best eval return: {outcome.best_eval:.1f} at "
                     f"{outcome.best_eval_steps:,} steps")
    lines += [f"run directory: {run_dir}",
              f"  tensorboard: tensorboard --logdir {run_dir / 'tensorboard'}",
              f"  plot:        python -m beast.plot {run_dir}"]
    if (run_dir / "checkpoint_best.pt").is_file():
        lines.append(f"  best:        {run_dir / 'checkpoint_best.pt'} "
                     f"(python -m beast.mono --eval {run_dir} --checkpoint best)")
    videos = run_dir / "videos"
    if videos.is_dir() and any(videos.iterdir()):
        lines.append(f"  videos:      {videos}")
    return "\n".join(f"[beast] {line}" for line in lines)
