"""Serial MonoBeast runs (--num-actors 0) with one seed are reproducible: the same log rows
(timing columns aside) and the same final weights. The README says what the parallel runtimes
do not reproduce."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from tests.conftest import FAST, run_cli

TIMING_COLUMNS = {"wall_time", "sps"}


def serial_run(savedir: Path, name: str, seed: int) -> tuple[list[dict[str, str]], dict]:
    result = run_cli("beast.mono", *FAST[:4], "--hidden-sizes", "16", "--num-actors", "0",
                     "--seed", str(seed), "--total-steps", "12000", "--log-steps", "2048",
                     "--savedir", str(savedir), "--run-name", name)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[beast] done: " in result.stdout and f"python -m beast.plot {savedir / name}" in \
        result.stdout
    with (savedir / name / "logs.csv").open(newline="") as f:
        rows = [{k: v for k, v in row.items() if k not in TIMING_COLUMNS}
                for row in csv.DictReader(f)]
    weights = torch.load(savedir / name / "checkpoint.pt", weights_only=True)["learner"]["model"]
    return rows, weights


def test_two_serial_runs_with_one_seed_are_identical(tmp_path: Path) -> None:
    rows_a, weights_a = serial_run(tmp_path, "a", seed=3)
    rows_b, weights_b = serial_run(tmp_path, "b", seed=3)
    assert len(rows_a) >= 5  # one per 2048 steps (the batch is 8 x 16), plus the final row
    assert [float(r["env_steps"]) for r in rows_a[:-1]] == [
        2048.0 * k for k in range(1, len(rows_a))]
    assert rows_a == rows_b
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    # and the check can fail: another seed gives other weights and other rows
    rows_c, weights_c = serial_run(tmp_path, "c", seed=4)
    assert rows_c != rows_a
    assert not all(torch.equal(weights_a[k], weights_c[k]) for k in weights_a)
