"""Runs attacked as a careless user or an attacker would: crafted checkpoints, NaN, hung envs,
kill -9, failed resumes. Each reproduces what broke before the fix."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
from pathlib import Path

import torch

from tests.conftest import FAST, run_cli, start_cli, wait_for

ENVS = "tests.envs.counting_env"


class _RunsShell:
    """A pickle that runs a shell command when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def trained_run(tmp_path: Path, *flags: str) -> Path:
    run_dir = tmp_path / "run"
    result = run_cli("beast.mono", *FAST, "--total-steps", "3000", *flags,
                     "--savedir", str(tmp_path), "--run-name", "run")
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    run_dir = trained_run(tmp_path)
    marker = tmp_path / "pwned"
    (run_dir / "checkpoint.pt").write_bytes(pickle.dumps({"learner": _RunsShell(marker)}))
    config_before = (run_dir / "config.json").read_text()
    for mode in ("--resume", "--eval"):
        result = run_cli("beast.mono", mode, str(run_dir))
        assert result.returncode == 2, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot load" in lines[0] and "checkpoint.pt" in lines[0]
        assert not marker.exists()
    assert (run_dir / "config.json").read_text() == config_before


def test_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    run_dir = trained_run(tmp_path)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["stats"]["env_steps"] >= 3000 and "numpy" in state["rng"]


def test_a_failed_resume_leaves_config_json_as_it_was(tmp_path: Path) -> None:
    run_dir = trained_run(tmp_path)
    checkpoint = run_dir / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # truncated
    before = (run_dir / "config.json").read_text()
    result = run_cli("beast.mono", "--resume", str(run_dir), "--learning-rate", "7")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "cannot load" in result.stderr
    assert (run_dir / "config.json").read_text() == before
    assert json.loads(before)["optim"]["learning_rate"] != 7


def test_resume_without_a_checkpoint_is_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "empty"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({}))
    result = run_cli("beast.mono", "--resume", str(run_dir))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no checkpoint" in lines[0]


def test_a_run_killed_early_can_be_resumed(tmp_path: Path) -> None:
    """The first checkpoint is written right after the first learner step, not after
    --checkpoint-minutes."""
    run_dir = tmp_path / "run"
    process = start_cli("beast.mono", *FAST, "--total-steps", "100000000", "--savedir",
                        str(tmp_path), "--run-name", "run")
    try:
        assert wait_for(lambda: (run_dir / "checkpoint.pt").exists(), timeout=60)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
    result = run_cli("beast.mono", "--resume", str(run_dir), "--total-steps", "4000")
    assert result.returncode == 0, result.stderr[-2000:]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["stats"]["resumes"] == 1


def final_checkpoint_is_finite(run_dir: Path) -> None:
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    for name, tensor in state["learner"]["model"].items():
        assert torch.isfinite(tensor).all(), name


def test_nan_rewards_stop_the_run_naming_them_and_keep_a_finite_checkpoint(tmp_path: Path) -> None:
    result = run_cli("beast.mono", *FAST, "--env", f"{ENVS}:NanReward-v0", "--total-steps",
                     "1000000", "--savedir", str(tmp_path), "--run-name", "run")
    assert result.returncode == 1
    assert "stopped: env reward is not finite" in result.stderr
    assert "Traceback" not in result.stderr
    assert "divergence must be a finite KL" not in result.stderr
    final_checkpoint_is_finite(tmp_path / "run")


def test_a_diverging_learning_rate_never_writes_a_nan_checkpoint(tmp_path: Path) -> None:
    result = run_cli("beast.mono", *FAST, "--learning-rate", "1e30", "--lr-decay", "none",
                     "--max-grad-norm", "0", "--total-steps", "1000000", "--savedir",
                     str(tmp_path), "--run-name", "run")
    assert result.returncode == 1
    assert "stopped: the loss is not finite" in result.stderr or "gradient norm" in result.stderr
    final_checkpoint_is_finite(tmp_path / "run")


def test_a_hung_env_is_treated_as_a_dead_actor(tmp_path: Path) -> None:
    result = run_cli("beast.mono", *FAST, "--env", f"{ENVS}:Hanging-v0", "--actor-timeout", "2",
                     "--max-actor-restarts", "1", "--total-steps", "1000000", "--savedir",
                     str(tmp_path), "--run-name", "run", timeout=90)
    assert result.returncode == 1
    assert "delivered no unroll for 2 s" in result.stderr
    assert "restarting (restart 1 of at most 1)" in result.stderr
