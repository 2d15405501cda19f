"""Checkpoints are atomic and restore RNG state; logs.csv keeps rows aligned as columns grow."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from beast import checkpoint
from beast.logger import CsvLog


def test_checkpoint_round_trip_restores_rng(tmp_path: Path) -> None:
    torch.manual_seed(1)
    checkpoint.save_checkpoint(tmp_path, {"counter": 7})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    state = checkpoint.load_checkpoint(tmp_path)
    assert state["counter"] == 7
    checkpoint.set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path: Path, monkeypatch) -> None:
    checkpoint.save_checkpoint(tmp_path, {"counter": 1})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint(tmp_path, {"counter": 2})
    monkeypatch.undo()
    assert checkpoint.load_checkpoint(tmp_path)["counter"] == 1


def test_missing_checkpoint_names_the_run(tmp_path: Path) -> None:
    with pytest.raises(checkpoint.CheckpointError, match=str(tmp_path)):
        checkpoint.load_checkpoint(tmp_path)


def test_csv_header_widens_and_rows_stay_aligned(tmp_path: Path) -> None:
    log = CsvLog(tmp_path / "logs.csv")
    log.append({"env_steps": 1, "sps": 10})
    log.append({"env_steps": 2, "sps": 20, "loss": 0.5})
    CsvLog(tmp_path / "logs.csv").append({"env_steps": 3, "loss": 0.25})  # resumed writer
    with (tmp_path / "logs.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["env_steps"] for r in rows] == ["1", "2", "3"]
    assert [r["loss"] for r in rows] == ["", "0.5", "0.25"]
    assert [r["sps"] for r in rows] == ["10", "20", ""]


def test_a_non_finite_state_never_replaces_a_checkpoint(tmp_path: Path) -> None:
    good = {"learner": {"model": {"w": torch.ones(3)}}}
    checkpoint.save_checkpoint(tmp_path, good)
    bad = {"learner": {"model": {"w": torch.tensor([1.0, float("nan"), 2.0])}}}
    with pytest.raises(checkpoint.CheckpointError, match="learner/model/w is not finite"):
        checkpoint.save_checkpoint(tmp_path, bad)
    assert torch.equal(checkpoint.load_checkpoint(tmp_path)["learner"]["model"]["w"], torch.ones(3))


def test_rng_state_round_trips_through_weights_only(tmp_path: Path) -> None:
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    checkpoint.save_checkpoint(tmp_path, {})
    expected = (random.random(), np.random.rand(), torch.rand(1))
    checkpoint.set_rng_state(checkpoint.load_checkpoint(tmp_path)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
