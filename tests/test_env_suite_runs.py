"""Smoke runs of both runtimes on the env suite (MinAtar, Atari through Gymnasium and envpool)
and with the LSTM core: each trains for a few thousand steps, checkpoints, and evaluates whole
games. CI installs the extras these need (see the README's test command)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import run_cli

SMALL = ["--num-envs", "4", "--unroll-length", "8", "--log-seconds", "0.3", "--num-actors", "1"]
CASES = {
    "minatar-lstm": ["--env", "MinAtar/Breakout-v1", "--use-lstm", "--total-steps", "1500"],
    "atari-gymnasium": ["--env", "ALE/Pong-v5", "--reward-clip", "abs_one", "--total-steps", "300"],
    "atari-envpool-episodic": ["--env", "ALE/Breakout-v5", "--env-backend", "envpool",
                               "--episodic-life", "--sticky-actions", "--total-steps", "300"],
    "envpool-cartpole-lstm": ["--env", "CartPole-v1", "--env-backend", "envpool", "--use-lstm",
                              "--hidden-sizes", "16", "--total-steps", "3000"],
}


@pytest.mark.parametrize("runtime", ["beast.mono", "beast.poly"])
@pytest.mark.parametrize("case", list(CASES))
def test_runtime_trains_checkpoints_and_evaluates(runtime: str, case: str, run_dir: Path) -> None:
    args = [*SMALL, *CASES[case], "--savedir", str(run_dir.parent), "--run-name", run_dir.name]
    result = run_cli(runtime, *args, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    with (run_dir / "logs.csv").open(newline="") as f:
        last = list(csv.DictReader(f))[-1]
    budget = int(CASES[case][CASES[case].index("--total-steps") + 1])
    assert float(last["env_steps"]) >= budget
    assert float(last["version"]) >= 1 and (run_dir / "checkpoint.pt").exists()
    if case.startswith(("minatar", "envpool-cartpole")):  # games short enough to finish here
        evaluated = run_cli(runtime, "--eval", str(run_dir), "--eval-episodes", "2", timeout=120)
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
        assert "mean return over 2 episodes" in evaluated.stdout
