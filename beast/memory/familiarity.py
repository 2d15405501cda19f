"""FamiliarityBuffer: the ring of recent transitions the contrastive loss trains on, with each
row's momentum loss (how unfamiliar it still is) and whether it was already stored.

    buffer = FamiliarityBuffer(capacity, obs_shape, feature_size, value_size)
    buffer.push(obs, features, values, returns)      # each learner step: S sampled transitions
    rows = buffer.size                               # rows 0 .. size-1 hold data
    ... contrastive epochs update buffer.momentum[rows] and buffer.epochs_seen[rows] ...
    ... the highest priorities go to the store; buffer.inserted[rows] marks them ...

Everything is a float32 CPU tensor (observations too: the views are augmented with Gaussian
noise anyway). The value row is what the store will hold for the transition; the caller builds
it (EpisodicMemory.value_vector).
"""

from __future__ import annotations

from typing import Any

import torch

from beast.memory.state import load_tensor_state, tensor_state

_TENSORS = ("obs", "features", "value", "return_target", "momentum", "epochs_seen", "inserted")


class FamiliarityBuffer:
    """A ring of `capacity` rows; `push` overwrites the oldest once full. Learner side only."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], feature_size: int,
                 value_size: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 (got {capacity})")
        self.capacity = capacity
        self.obs = torch.zeros((capacity, *obs_shape))
        self.features = torch.zeros(capacity, feature_size)
        self.value = torch.zeros(capacity, value_size)
        self.return_target = torch.zeros(capacity)
        self.momentum = torch.zeros(capacity)
        self.epochs_seen = torch.zeros(capacity, dtype=torch.int64)
        self.inserted = torch.zeros(capacity, dtype=torch.bool)
        self.size = 0
        self.cursor = 0  # the next row to write

    def push(self, obs: torch.Tensor, features: torch.Tensor, values: torch.Tensor,
             returns: torch.Tensor) -> None:
        """Write N rows (only the last `capacity` if N is larger), overwriting the oldest. New
        rows start unseen: momentum 0, epochs_seen 0, not inserted."""
        n = obs.shape[0]
        for name, tensor, row in (("obs", obs, self.obs), ("features", features, self.features),
                                  ("values", values, self.value),
                                  ("returns", returns, self.return_target)):
            if tuple(tensor.shape) != (n, *row.shape[1:]):
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected "
                                 f"{(n, *row.shape[1:])} (N rows like obs)")
        keep = min(n, self.capacity)
        rows = (self.cursor + torch.arange(keep)) % self.capacity
        self.obs[rows] = obs[n - keep:].detach().float()
        self.features[rows] = features[n - keep:].detach().float()
        self.value[rows] = values[n - keep:].detach().float()
        self.return_target[rows] = returns[n - keep:].detach().float()
        self.momentum[rows] = 0.0
        self.epochs_seen[rows] = 0
        self.inserted[rows] = False
        self.cursor = (self.cursor + keep) % self.capacity
        self.size = min(self.size + keep, self.capacity)

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and ints (torch.load(..., weights_only=True) reads it back)."""
        return {**tensor_state(self, _TENSORS), "size": self.size, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_tensor_state(self, _TENSORS, state, "buffer")
        self.size, self.cursor = int(state["size"]), int(state["cursor"])
