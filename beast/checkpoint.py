"""Atomic checkpoints: write a temporary file, fsync it, rename it over the old one.

A crash mid-write leaves the previous checkpoint intact; a reader never sees a partial file.
A checkpoint holds what `--resume` needs to continue as if never stopped: the learner's
model, optimiser and counters, the RNG states, the config and the runtime's own counters.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write `state` (plus the RNG states) to RUN_DIR/checkpoint.pt."""
    path = Path(run_dir) / CHECKPOINT_NAME
    tmp = path.with_suffix(".pt.tmp")
    with tmp.open("wb") as f:
        torch.save({**state, "rng": rng_state()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)
    return path


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The latest checkpoint of a run; a clear error if the run has none."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint in {run_dir} (expected {path})")
    # weights_only=False: the file also holds RNG states and config; it is our own file.
    return torch.load(path, map_location="cpu", weights_only=False)
