"""Checkpoint state of the memory's tensor holders (buffer, store): plain tensors, so that
`torch.load(..., weights_only=True)` reads it back, and a shape check that names what changed."""

from __future__ import annotations

from typing import Any

import torch


def tensor_state(owner: object, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Copies of `owner`'s tensors `names`."""
    return {name: getattr(owner, name).clone() for name in names}


def load_tensor_state(owner: object, names: tuple[str, ...], state: dict[str, Any],
                      what: str) -> None:
    """Copy `state`'s tensors into `owner`'s, in place; ValueError if a shape differs (the run's
    memory flags changed since the checkpoint)."""
    for name in names:
        current = getattr(owner, name)
        if state[name].shape != current.shape:
            raise ValueError(f"{what} {name} has shape {tuple(state[name].shape)} in the "
                             f"checkpoint, {tuple(current.shape)} here (config changed?)")
        current.copy_(state[name])
