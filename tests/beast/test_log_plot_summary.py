"""The researcher's loop around a run: when log rows are written, the comparison plot, and the
end-of-run summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from beast.config import Config, RunConfig
from beast.logger import LogSchedule
from beast.plot import group_runs, mean_band, plot_runs
from beast.summary import RunOutcome, run_summary


def rows_written(schedule: LogSchedule, steps_per_second: float, seconds: float) -> list[float]:
    """Times at which a loop polling every 10 ms would write rows, at a constant pace."""
    written = []
    for tick in range(1, int(seconds * 100) + 1):
        now = tick / 100
        steps = int(now * steps_per_second)
        if schedule.due(now, steps):
            written.append(now)
            schedule.advance(now, steps)
    return written


@pytest.mark.parametrize("run_seconds", [20.0, 100.0, 250.0, 2000.0])
def test_auto_rows_aim_at_fifty_per_run_between_one_and_five_seconds(run_seconds: float) -> None:
    total = 1_000_000
    schedule = LogSchedule(None, None, total, 0, now=0.0)
    times = rows_written(schedule, total / run_seconds, run_seconds)
    gaps = np.diff(times)
    assert gaps.min() >= 1.0 - 1e-9 and gaps.max() <= 5.0 + 0.011
    expected = min(max(run_seconds / 50, 1.0), 5.0)  # the pace is constant, so is the gap
    assert gaps[1:] == pytest.approx(expected, abs=0.011)
    if 50 <= run_seconds <= 250:  # where the bounds allow it, about 50 rows
        assert 48 <= len(times) <= 51


def test_explicit_seconds_are_kept_even_below_one_second() -> None:
    times = rows_written(LogSchedule(0.3, None, 10**6, 0, now=0.0), 1e4, 3.0)
    assert np.diff(times) == pytest.approx(0.3, abs=0.011)


def test_step_rows_land_at_the_first_step_past_each_multiple() -> None:
    schedule = LogSchedule(None, 1000, 10**6, start_steps=2500, now=0.0)
    written = []
    for steps in range(2500, 6000, 384):  # a batch of 384 env steps per learner step
        if schedule.due(0.0, steps):
            written.append(steps)
            schedule.advance(0.0, steps)
    # multiples 3000, 4000, 5000 are first reached or passed at these step counts:
    assert written == [3268, 4036, 5188]


def test_config_refuses_both_row_cadences() -> None:
    with pytest.raises(ValueError, match="exclusive"):
        RunConfig(log_seconds=1.0, log_steps=100)
    with pytest.raises(ValueError, match="--log-steps"):
        RunConfig(log_steps=0)


def fake_run(root: Path, name: str, seed: int, lr: float, returns: list[float],
             evals: list[float] | None = None) -> Path:
    run_dir = root / name
    run_dir.mkdir()
    config = Config()
    config.run.seed, config.run.run_name, config.optim.learning_rate = seed, name, lr
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    header = ("env_steps,wall_time,sps,mean_return"
              + (",eval/return_mean,eval/env_steps" if evals else ""))
    lines = [header]
    for i, r in enumerate(returns):
        line = f"{(i + 1) * 1000},{i + 1.5},{1000 + seed},{r}"
        if evals:
            line += f",{evals[i]},{i * 1000}"
        lines.append(line)
    (run_dir / "logs.csv").write_text("\n".join(lines) + "\n")
    return run_dir


def test_runs_that_differ_only_in_seed_form_one_group(tmp_path: Path) -> None:
    a = fake_run(tmp_path, "a", 0, 8e-3, [10, 20, 30])
    b = fake_run(tmp_path, "b", 1, 8e-3, [20, 40, 60])
    c = fake_run(tmp_path, "c", 0, 1e-3, [5, 5, 5])
    groups = group_runs([a, b, c])
    assert sorted(map(sorted, groups.values())) == [[a, b], [c]]
    labels = sorted(groups)
    assert labels == ["learning_rate=0.001", "learning_rate=0.008 (2 seeds)"]
    assert list(group_runs([a, b])) == ["2 seeds"] and list(group_runs([c])) == ["c"]


def test_mean_band_is_the_pointwise_mean_min_and_max_on_the_shared_range() -> None:
    x1, y1 = np.array([0.0, 10.0]), np.array([0.0, 100.0])
    x2, y2 = np.array([5.0, 20.0]), np.array([50.0, 50.0])
    grid, mean, low, high = mean_band([(x1, y1), (x2, y2)])
    assert grid[0] == 5.0 and grid[-1] == 10.0
    for g, m, lo, hi in zip(grid, mean, low, high):
        first = 10.0 * g  # run 1 is the line y = 10 x; run 2 is flat at 50
        assert m == pytest.approx((first + 50.0) / 2)
        assert lo == pytest.approx(min(first, 50.0)) and hi == pytest.approx(max(first, 50.0))


def test_comparison_plot_is_written_for_both_x_axes(tmp_path: Path) -> None:
    runs = [fake_run(tmp_path, f"s{seed}", seed, 8e-3, [1, 2, 3], evals=[2, 3, 4])
            for seed in range(2)]
    for axis in ("env_steps", "wall_time"):
        path = plot_runs(runs, tmp_path / f"{axis}.png", axis)
        assert path.stat().st_size > 10_000  # a drawn figure, not an empty canvas
    assert plot_runs(runs[:1]) == runs[0] / "plot.png"
    with pytest.raises(ValueError, match="x axis"):
        plot_runs(runs, x_axis="episodes")
    with pytest.raises(FileNotFoundError, match="a Beast run directory"):
        plot_runs([tmp_path])


def test_summary_names_what_the_run_reached_and_where_to_look(tmp_path: Path) -> None:
    text = run_summary(tmp_path, RunOutcome(1_000_000, 8.0, 480.0, 500.0, 495.5, 900_000))
    assert "1,000,000 env steps in 8.0 s (125,000 steps/s)" in text
    assert "final 480.0, best 500.0" in text and "best eval return: 495.5 at 900,000" in text
    assert f"python -m beast.plot {tmp_path}" in text and "videos" not in text
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "eval-0.mp4").write_bytes(b"x")
    assert f"videos:      {tmp_path / 'videos'}" in run_summary(
        tmp_path, RunOutcome(10, 1.0, math.nan, math.nan))
    assert "final none yet" in run_summary(tmp_path, RunOutcome(10, 1.0, math.nan, math.nan))
