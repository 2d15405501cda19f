"""Continuous control end to end: the Gaussian head learns Pendulum."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.conftest import run_cli


def test_pendulum_improves_clearly_over_the_random_policy(tmp_path: Path) -> None:
    """The Gaussian head learns (bench/continuous.py has the full curve). Random play averages
    about -1200 with a mean-100 spread of ~30; the serial mode makes the run repeatable."""
    result = run_cli("beast.mono", "--env", "Pendulum-v1", "--num-actors", "0", "--num-envs", "16",
                     "--unroll-length", "16", "--reward-scale", "0.1", "--discount", "0.95",
                     "--entropy-cost", "0", "--learning-rate", "1e-3", "--epsilon", "1e-5", "--hidden-sizes", "64",
                     "64", "--total-steps", "600000", "--log-seconds", "2", "--savedir",
                     str(tmp_path), "--run-name", "run", timeout=230)
    assert result.returncode == 0, result.stderr[-2000:]
    with (tmp_path / "run" / "logs.csv").open(newline="") as f:
        returns = [float(r["mean_return"]) for r in csv.DictReader(f) if r["mean_return"]]
    assert returns[-1] > -1050, returns
