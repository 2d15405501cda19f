"""What every objective returns."""

from __future__ import annotations

from typing import NamedTuple

import torch


class ObjectiveResult(NamedTuple):
    loss: torch.Tensor
    """Scalar to minimise (with grad)."""
    metrics: dict[str, torch.Tensor]
    """Scalar diagnostics (no grad), logged as they are named, e.g. "loss/pg"."""
