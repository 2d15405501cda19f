"""EpisodicStore: the learner's prioritised episodic memory, the checkpointed truth that
MemoryBanks copies out to the actors.

    store = EpisodicStore(capacity, key_size, value_size, feature_size)
    each refresh (EpisodicMemory.refresh):
        store.decay(rho)                        # old rarities fade
        store.reencode(lambda p: encode_keys(g, p))   # keys follow the trained encoder
        store.insert(keys, values, features, returns, priorities, step, duplicate_cosine)
        banks.publish(store)

Each entry keeps the torso features its key came from, so keys can be re-encoded as g
learns. Insertion deduplicates (one state is one entry: the higher return target wins, the
higher priority is kept) and evicts the lowest priority when full (the oldest on ties).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from beast.memory.state import load_tensor_state, tensor_state

_TENSORS = ("key", "value", "feature", "return_target", "priority", "insert_step", "valid")


class InsertCounts(NamedTuple):
    """What one `insert` did with its items."""

    added: int        # written to a free or an evicted slot
    overwritten: int  # replaced a duplicate entry (their return target was higher)
    merged: int       # a duplicate (in the batch or stored) with a lower or equal return:
                      # only its priority was kept
    rejected: int     # store full and its priority below every stored one's


class EpisodicStore:
    """C entries: key [C, d] (unit norm), value [C, v], feature [C, P], return_target [C],
    priority [C], insert_step [C] (the learner step that wrote it), valid [C]. Learner only."""

    def __init__(self, capacity: int, key_size: int, value_size: int, feature_size: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 (got {capacity})")
        self.capacity = capacity
        self.key = torch.zeros(capacity, key_size)
        self.value = torch.zeros(capacity, value_size)
        self.feature = torch.zeros(capacity, feature_size)
        self.return_target = torch.zeros(capacity)
        self.priority = torch.zeros(capacity)
        self.insert_step = torch.zeros(capacity, dtype=torch.int64)
        self.valid = torch.zeros(capacity, dtype=torch.bool)

    @property
    def fill_ratio(self) -> float:
        return int(self.valid.sum()) / self.capacity

    def insert(self, keys: torch.Tensor, values: torch.Tensor, features: torch.Tensor,
               returns: torch.Tensor, priorities: torch.Tensor, step: int,
               duplicate_cosine: float) -> InsertCounts:
        """Insert N items. First the batch is deduplicated (items with cosine above
        `duplicate_cosine` are one state: the highest return target is kept, with the group's
        highest priority). Then each kept item, highest return first: if a valid entry is a
        duplicate (the most similar one), it takes the item's key, value, feature, return and
        step only if the item's return target is higher, and max(both priorities) either way.
        Otherwise it goes to a free slot, or, when full, evicts the lowest-priority entry (the
        oldest insert_step on ties); an item whose priority is lower than every stored one is
        not inserted."""
        n = keys.shape[0]
        for name, tensor, like in (("keys", keys, self.key), ("values", values, self.value),
                                   ("features", features, self.feature)):
            if tuple(tensor.shape) != (n, like.shape[1]):
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected "
                                 f"{(n, like.shape[1])}")
        for name, tensor in (("returns", returns), ("priorities", priorities)):
            if tuple(tensor.shape) != (n,):
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected ({n},)")
        leaders, priority = _dedup_batch(keys, returns, priorities, duplicate_cosine)
        unit_keys = F.normalize(keys, dim=1)
        stored = F.normalize(self.key, dim=1)  # kept in step with self.key below
        added = overwritten = rejected = 0
        merged = n - len(leaders)
        for i, p in zip(leaders, priority):
            slot = self._duplicate_of(stored, unit_keys[i], duplicate_cosine)
            if slot is not None:
                if returns[i] > self.return_target[slot]:
                    self._write(slot, keys[i], values[i], features[i], returns[i], step)
                    stored[slot] = unit_keys[i]
                    overwritten += 1
                else:
                    merged += 1
                self.priority[slot] = max(float(self.priority[slot]), p)
                continue
            slot = self._free_or_evictable(p)
            if slot is None:
                rejected += 1
                continue
            self._write(slot, keys[i], values[i], features[i], returns[i], step)
            stored[slot] = unit_keys[i]
            self.priority[slot] = p
            added += 1
        return InsertCounts(added, overwritten, merged, rejected)

    def decay(self, rho: float) -> None:
        """Multiply every stored priority by rho."""
        self.priority *= rho

    @torch.no_grad()
    def reencode(self, encoder: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """keys <- encoder(features) for the valid entries (encoder returns unit-norm keys)."""
        index = self.valid.nonzero().squeeze(1)
        if index.numel():
            self.key[index] = encoder(self.feature[index]).float()

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors (torch.load(..., weights_only=True) reads it back)."""
        return tensor_state(self, _TENSORS)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_tensor_state(self, _TENSORS, state, "store")

    def _duplicate_of(self, stored: torch.Tensor, unit_key: torch.Tensor,
                      threshold: float) -> int | None:
        """The most similar valid entry if its cosine with `unit_key` exceeds threshold
        (`stored`: the normalised keys)."""
        sims = (stored @ unit_key).masked_fill(~self.valid, float("-inf"))
        best = int(sims.argmax())
        return best if sims[best] > threshold else None

    def _free_or_evictable(self, priority: float) -> int | None:
        """The first free slot; else the lowest-priority entry (oldest on ties) unless the
        new priority is lower than every stored one."""
        free = (~self.valid).nonzero()
        if free.numel():
            return int(free[0])
        lowest = self.priority.min()
        if priority < lowest:
            return None
        candidates = (self.priority == lowest).nonzero().squeeze(1)
        return int(candidates[self.insert_step[candidates].argmin()])

    def _write(self, slot: int, key: torch.Tensor, value: torch.Tensor, feature: torch.Tensor,
               return_target: torch.Tensor, step: int) -> None:
        self.key[slot], self.value[slot], self.feature[slot] = key, value, feature
        self.return_target[slot] = return_target
        self.insert_step[slot] = step
        self.valid[slot] = True


def _dedup_batch(keys: torch.Tensor, returns: torch.Tensor, priorities: torch.Tensor,
                 threshold: float) -> tuple[list[int], list[float]]:
    """Greedy grouping of a batch by cosine, highest return first: the indices of the items
    kept (each the highest-return member of its group, in that order) and each group's
    highest priority."""
    order = torch.sort(returns, descending=True, stable=True).indices.tolist()
    unit = F.normalize(keys, dim=1)
    duplicate = (unit @ unit.T > threshold).tolist()
    item_priority = priorities.tolist()
    leaders: list[int] = []
    priority: list[float] = []
    for i in order:
        group = next((g for g, leader in enumerate(leaders) if duplicate[i][leader]), None)
        if group is None:
            leaders.append(i)
            priority.append(item_priority[i])
        else:
            priority[group] = max(priority[group], item_priority[i])
    return leaders, priority
