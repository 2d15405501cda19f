"""MemoryBanks: the actors' read-only view of the episodic store, double-buffered so the
learner can publish while actors read, without a lock.

    banks = MemoryBanks(capacity, key_size, value_size).share()   # before starting actors
    learner, after each refresh:   banks.publish(store)            # the one writer
    any actor, each step (no grad): readout = banks.read(queries, k, temperature)

What flows: the store's key / value / valid, copied into one of two copies; `version` (int64)
counts publications, and copy `version % 2` is the one to read. This package starts no
process; a runtime shares the tensors (`share`) and hands them to its actors.

Why a reader retries only when the version moved. `publish` from version v writes copy
(v + 1) % 2 (the copy no reader at v uses), then stores v + 1. A reader that loaded v reads
copy v % 2, which the writer touches again only during the publication after the next one,
the one from v + 1 to v + 2. That publication starts right after v + 1 is stored, so seeing
v + 1 at the end of a read does not prove the copy intact (retrying only at v + 2 would
race); seeing v does, since the writer then has not yet stored v + 1. So `read` loads the
version, reads, loads it again and retries if it changed. Publications happen once per
refresh (every R learner steps), so a retry is rare and a reader never waits on the writer.
This relies on stores (writer) and loads (reader) not being reordered, as on x86; there is
exactly one writer.
"""

from __future__ import annotations

import torch

from beast.memory.readout import knn_readout
from beast.memory.store import EpisodicStore


class MemoryBanks:
    """Two copies of keys [2, C, d], values [2, C, v] and valid [2, C], plus version [1]."""

    def __init__(self, capacity: int, key_size: int, value_size: int) -> None:
        self.keys = torch.zeros(2, capacity, key_size)
        self.values = torch.zeros(2, capacity, value_size)
        self.valid = torch.zeros(2, capacity, dtype=torch.bool)
        self.version = torch.zeros(1, dtype=torch.int64)

    def share(self) -> MemoryBanks:
        """Move every tensor to shared memory (so a process started later can read them)."""
        for tensor in (self.keys, self.values, self.valid, self.version):
            tensor.share_memory_()
        return self

    def publish(self, store: EpisodicStore) -> None:
        """Writer (the learner only): copy the store into the copy readers are not using, then
        make it current by incrementing the version."""
        if store.key.shape != self.keys.shape[1:] or store.value.shape != self.values.shape[1:]:
            raise ValueError(f"store holds keys {tuple(store.key.shape)} and values "
                             f"{tuple(store.value.shape)}, the banks {tuple(self.keys.shape[1:])}"
                             f" and {tuple(self.values.shape[1:])}")
        inactive = (int(self.version) + 1) % 2
        self.keys[inactive].copy_(store.key)
        self.values[inactive].copy_(store.value)
        self.valid[inactive].copy_(store.valid)
        self.version += 1

    @torch.no_grad()
    def read(self, queries: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
        """Any reader: the [B, v + 2] knn_readout of unit-norm queries [B, d] from the
        current copy (retried if a publication may have overwritten it meanwhile)."""
        while True:
            version = int(self.version)
            copy = version % 2
            out = knn_readout(self.keys[copy], self.values[copy], self.valid[copy], queries,
                              k, temperature)
            if int(self.version) == version:
                return out


class MemoryReader:
    """What an actor's model calls (`model.memory_reader = MemoryReader(banks, k, tau)`):
    queries [B, d] -> readouts [B, v + 2] from the banks with the run's --memory-top-k and
    --memory-readout-temperature. Picklable with shared banks, so a runtime can hand it to an
    actor process."""

    def __init__(self, banks: MemoryBanks, k: int, temperature: float) -> None:
        self.banks, self.k, self.temperature = banks, k, temperature

    def __call__(self, queries: torch.Tensor) -> torch.Tensor:
        return self.banks.read(queries, self.k, self.temperature)

    def __deepcopy__(self, memo: dict) -> MemoryReader:
        """A copy of a model (PolyBeast's inference copy, a target network) reads the same
        banks: copying them would freeze the copy's memory at the time of the copy."""
        return self
