"""MonoBeast under failure, with real processes: killed actors, raising envs, signals, bad flags."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FAST, alive, children, descendants, run_cli, start_cli, wait_for


def actor_pids(main_pid: int) -> list[int]:
    """Actors are the forkserver's children, i.e. the grandchildren of the main process."""
    return [pid for child in children(main_pid) for pid in children(child)]


def last_row(run_dir: Path) -> dict[str, str]:
    with (run_dir / "logs.csv").open(newline="") as f:
        return list(csv.DictReader(f))[-1]


def finish(process: subprocess.Popen, timeout: float) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        pytest.fail(f"process did not exit within {timeout} s:\n{stderr[-3000:]}")
    return process.returncode, stderr


def test_killed_actor_is_detected_restarted_and_counted(run_dir: Path) -> None:
    process = start_cli("beast.mono", *FAST, "--num-actors", "2", "--total-steps", "150000",
                        "--savedir", str(run_dir.parent), "--run-name", run_dir.name)
    try:
        assert wait_for(lambda: (run_dir / "logs.csv").exists(), timeout=60)
        victims = actor_pids(process.pid)
        assert len(victims) == 2, f"expected 2 actor processes, found {victims}"
        os.kill(victims[0], signal.SIGKILL)
        killed_at = time.monotonic()
        assert wait_for(lambda: not alive(victims[0]), timeout=5)
        # A replacement appears within 5 s of the kill, and the run goes on to its budget.
        assert wait_for(lambda: len(set(actor_pids(process.pid)) - set(victims)) == 1,
                        timeout=5 - (time.monotonic() - killed_at) + 0.5)
        code, stderr = finish(process, timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert code == 0, stderr[-3000:]
    assert "actor 0 died" in stderr and "restarting" in stderr
    row = last_row(run_dir)
    assert float(row["actor_restarts"]) == 1
    assert float(row["env_steps"]) >= 150000


def test_env_that_raises_reports_traceback_and_fails_nonzero(run_dir: Path) -> None:
    result = run_cli("beast.mono", *FAST, "--env", "tests.envs.counting_env:Faulty-v0",
                     "--max-actor-restarts", "1", "--total-steps", "10000000",
                     "--savedir", str(run_dir.parent), "--run-name", run_dir.name, timeout=90)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "RuntimeError: faulty env" in result.stderr  # the env's own traceback
    assert "restarting (restart 1" in result.stderr  # first failure: the actor is restarted
    assert "exceed --max-actor-restarts 1" in result.stderr  # second: the run stops
    assert (run_dir / "checkpoint.pt").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_writes_final_checkpoint_and_leaves_no_child(run_dir: Path, signum: int) -> None:
    process = start_cli("beast.mono", *FAST, "--total-steps", "100000000",
                        "--savedir", str(run_dir.parent), "--run-name", run_dir.name)
    try:
        assert wait_for(lambda: (run_dir / "logs.csv").exists(), timeout=60)
        family = descendants(process.pid)
        assert family, "the run should have child processes (forkserver, actors)"
        os.killpg(process.pid, signum)  # like Ctrl-C in a terminal: the whole process group
        sent = time.monotonic()
        code, stderr = finish(process, timeout=10)
        assert wait_for(lambda: not any(alive(pid) for pid in family),
                        timeout=max(0.1, 10 - (time.monotonic() - sent)))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert code == 128 + signum, stderr[-3000:]
    assert (run_dir / "checkpoint.pt").exists()
    assert f"{signal.Signals(signum).name}: stopping" in stderr


@pytest.mark.parametrize("flags, expected", [
    (["--num-envs", "0"], "--num-envs must be >= 1"),
    (["--learning-rate", "abc"], "--learning-rate"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--env", "CartPol-v1"], "python -m beast.envs"),
    (["--optimizer", "sgd"], "--optimizer must be adam or rmsprop"),
])
def test_bad_flags_give_one_line_error(flags: list[str], expected: str) -> None:
    result = run_cli("beast.mono", *flags, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
