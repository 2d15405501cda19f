"""End-to-end MonoBeast runs: learning CartPole, resume, eval and plot on a real run directory."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from tests.conftest import FAST, run_cli

CARTPOLE_BUDGET = 400_000  # env steps; a fixed budget, not a time limit


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "logs.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_cartpole_learns_within_step_budget(run_dir: Path) -> None:
    result = run_cli("beast.mono", "--env", "CartPole-v1", "--num-actors", "1",
                     "--total-steps", str(CARTPOLE_BUDGET), "--target-return", "150",
                     "--log-seconds", "1", "--seed", "1",
                     "--savedir", str(run_dir.parent), "--run-name", run_dir.name, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    last = rows(run_dir)[-1]
    assert float(last["mean_return"]) >= 150, f"mean return {last['mean_return']}"
    assert float(last["env_steps"]) <= CARTPOLE_BUDGET + 64 * 32


def test_serial_run_resume_eval_and_plot(run_dir: Path) -> None:
    common = [*FAST, "--num-actors", "0", "--savedir", str(run_dir.parent),
              "--run-name", run_dir.name]
    first = run_cli("beast.mono", *common, "--total-steps", "3000")
    assert first.returncode == 0, first.stderr[-3000:]
    assert (run_dir / "config.json").exists() and (run_dir / "tensorboard").is_dir()
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    steps, version = saved["stats"]["env_steps"], saved["learner"]["version"]
    assert steps >= 3000 and version == steps // (8 * 16)

    again = run_cli("beast.mono", *common, "--total-steps", "3000")
    assert again.returncode == 2 and "--resume" in again.stderr  # never clobber a run

    resumed = run_cli("beast.mono", "--resume", str(run_dir), "--total-steps", "6000")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert after["stats"]["env_steps"] >= 6000
    assert after["learner"]["version"] == after["stats"]["env_steps"] // (8 * 16)
    assert after["stats"]["resumes"] == 1
    steps_logged = [float(r["env_steps"]) for r in rows(run_dir)]
    assert steps_logged == sorted(steps_logged) and steps_logged[-1] >= 6000
    # the optimiser state came back too (Adam's step count continues)
    adam_steps = [s["step"] for s in after["learner"]["optimizer"]["state"].values()]
    assert all(float(s) == after["learner"]["version"] for s in adam_steps)

    evaluated = run_cli("beast.mono", "--eval", str(run_dir), "--eval-episodes", "3")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "mean return over 3 episodes" in evaluated.stdout

    plotted = run_cli("beast.plot", str(run_dir))
    assert plotted.returncode == 0, plotted.stderr
    png = run_dir / "plot.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_eval_plays_whole_games_with_a_recurrent_model(run_dir: Path) -> None:
    """CountingLives ends a learning episode at each of three lives (reward 1..5 per life) and
    reports game_over at the third: --eval must report whole games (45), not lives (15)."""
    lives = "tests.envs.counting_env:CountingLives-v0"
    trained = run_cli("beast.mono", *FAST, "--env", lives, "--use-lstm", "--num-actors", "1",
                      "--total-steps", "2000", "--savedir", str(run_dir.parent),
                      "--run-name", run_dir.name)
    assert trained.returncode == 0, trained.stderr[-3000:]
    last = rows(run_dir)[-1]
    assert float(last["mean_return"]) == 45.0
    evaluated = run_cli("beast.mono", "--eval", str(run_dir), "--eval-episodes", "4")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "mean return over 4 episodes: 45.00" in evaluated.stdout
