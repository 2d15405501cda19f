"""`--episodic-memory` from the command line: off, its flags change nothing; on, the run
trains with it, checkpoints it, resumes it and `--eval` plays with it frozen."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tests.conftest import FAST, run_cli

SERIAL = [*FAST, "--num-actors", "0", "--seed", "2"]
MEMORY = ["--env", "ZipfGridworld-v0", "--use-lstm", "--episodic-memory",
          "--memory-refresh-every", "2", "--memory-buffer-size", "128", "--memory-capacity", "32"]


def train(run_dir: Path, *flags: str) -> dict:
    result = run_cli("beast.mono", *SERIAL, *flags, "--savedir", str(run_dir.parent),
                     "--run-name", run_dir.name)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["learner"]


def test_memory_flags_without_the_switch_change_nothing(tmp_path: Path) -> None:
    common = ["--env", "ZipfGridworld-v0", "--use-lstm", "--total-steps", "2000"]
    plain = train(tmp_path / "plain", *common)["model"]
    off = train(tmp_path / "off", *common, "--memory-key-size", "8", "--memory-top-k", "2",
                "--memory-capacity", "7", "--no-memory-mask-duplicates")["model"]
    assert plain.keys() == off.keys()
    assert all(torch.equal(plain[k], off[k]) for k in plain)


def test_a_memory_run_checkpoints_resumes_and_evaluates_with_its_memory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = train(run_dir, *MEMORY, "--total-steps", "2000")
    memory = first["memory"]
    assert memory["store"]["valid"].any() and memory["steps"] == first["version"]
    assert any(k.startswith("memory_key.") for k in first["model"])  # g travels with the model
    refused = run_cli("beast.mono", "--resume", str(run_dir), "--memory-capacity", "64")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"beast.mono: error: --memory-capacity cannot change on --resume: {run_dir}'s "
        "checkpoint holds a memory of the trained sizes (see --help)"]
    resumed = run_cli("beast.mono", "--resume", str(run_dir), "--total-steps", "4000")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = torch.load(run_dir / "checkpoint.pt", weights_only=True)["learner"]
    assert after["memory"]["steps"] == after["version"] > first["version"]  # it went on
    evaluation = run_cli("beast.mono", "--eval", str(run_dir), "--eval-episodes", "20")
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert "mean return over 20 episodes" in evaluation.stdout
    sets = re.findall(r"(Zipfian|Uniform|Rare) ([\d.]+) ± ([\d.]+) \(20 games\)",
                      evaluation.stdout)
    assert [name for name, _, _ in sets] == ["Zipfian", "Uniform", "Rare"]
    assert all(0 <= float(mean) <= 1 for _, mean, _ in sets)
    # frozen: playing left the memory as the checkpoint holds it
    final = torch.load(run_dir / "checkpoint.pt", weights_only=True)["learner"]["memory"]
    assert torch.equal(final["store"]["key"], after["memory"]["store"]["key"])


def test_the_memory_without_an_lstm_is_one_line(tmp_path: Path) -> None:
    result = run_cli("beast.mono", "--env", "ZipfGridworld-v0", "--episodic-memory",
                     "--savedir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "beast.mono: error: --episodic-memory feeds its readout to the LSTM core: add "
        "--use-lstm (see --help)"]
    assert not any(tmp_path.iterdir())
