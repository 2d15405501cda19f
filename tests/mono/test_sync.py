"""MonoBeast's sync modes end to end: actors copy weights only when the controller says so."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests.conftest import FAST, run_cli


def final_row(run_dir: Path) -> dict[str, float]:
    with (run_dir / "logs.csv").open(newline="") as f:
        return {k: float(v) for k, v in list(csv.DictReader(f))[-1].items() if v}


@pytest.mark.parametrize("mode", ["every-step", "periodic", "aps"])
def test_sync_modes_count_and_gate_weight_copies(run_dir: Path, mode: str) -> None:
    result = run_cli("beast.mono", *FAST, "--sync", mode, "--sync-period", "8",
                     "--total-steps", "40000", "--savedir", str(run_dir.parent),
                     "--run-name", run_dir.name)
    assert result.returncode == 0, result.stderr[-3000:]
    row = final_row(run_dir)
    steps, syncs = row["version"], row["aps/syncs_total"]
    assert row["aps/trigger_initial"] == 1
    model = torch.load(run_dir / "checkpoint.pt", weights_only=True)["learner"]["model"]
    assert row["aps/bytes_synced"] == syncs * 4 * sum(t.numel() for t in model.values())
    if mode == "every-step":
        # one actor, two slots: it copies at (nearly) every unroll boundary
        assert syncs >= 0.4 * steps and row["aps/trigger_lag"] >= syncs - 1
    elif mode == "periodic":
        assert steps / 16 <= syncs <= steps / 8 + 2
        assert row["aps/trigger_kl"] == 0
    else:
        assert 1 <= syncs < steps
        assert row["aps/delta"] == 0.01
    assert "syncs" in result.stderr  # the progress line shows them
