"""Atomic checkpoints: write a temporary file, fsync it, rename it over the old one.

A crash mid-write leaves the previous checkpoint intact; a reader never sees a partial file.
A checkpoint holds what `--resume` needs to continue as if never stopped: the learner's
model, optimiser and counters, the RNG states, the config and the runtime's own counters.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"
BEST_CHECKPOINT_NAME = "checkpoint_best.pt"  # the weights of the best periodic evaluation


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not finite; the message names the file."""


def rng_state() -> dict[str, Any]:
    """The RNG states as tensors and plain types only (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def non_finite_tensor(state: Any, path: str = "") -> str | None:
    """The name of the first tensor in `state` holding a NaN or inf, or None."""
    if isinstance(state, torch.Tensor):
        return path if state.is_floating_point() and not torch.isfinite(state).all() else None
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return None
    for key, value in items:
        found = non_finite_tensor(value, f"{path}/{key}" if path else str(key))
        if found is not None:
            return found
    return None


def save_checkpoint(run_dir: str | Path, state: dict[str, Any], name: str = CHECKPOINT_NAME
                    ) -> Path:
    """Atomically write `state` (plus the RNG states) to RUN_DIR/`name`. The previous
    checkpoint stays in place until the new one is complete, and a state holding a non-finite
    tensor never replaces it (CheckpointError)."""
    bad = non_finite_tensor(state)
    if bad is not None:
        raise CheckpointError(f"not writing {Path(run_dir) / name}: {bad} is not "
                              "finite (the previous checkpoint is kept)")
    path = Path(run_dir) / name
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


def load_checkpoint(run_dir: str | Path, name: str = CHECKPOINT_NAME) -> dict[str, Any]:
    """A run's checkpoint (by default the latest). Only tensors and plain types are read
    (weights_only: nothing in the file can run code); CheckpointError, naming the file, if it
    is missing or cannot be read."""
    path = Path(run_dir) / name
    if not path.is_file():
        what = ("no periodic evaluation has run (--eval-every)" if name == BEST_CHECKPOINT_NAME
                else "nothing to resume or evaluate yet")
        raise CheckpointError(f"no checkpoint in {run_dir} (expected {path}): {what}")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file, a crafted pickle, another format
        reason = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"cannot load {path}: {type(exc).__name__}: {reason}") from exc
