"""Shared-memory rollout slots and weights for MonoBeast.

The learner process creates both; actor processes attach by name. Only slot indices travel
between processes afterwards, so the data path costs one write (actor) and one copy (learner
stacking a batch), whatever the observation size.
"""

from __future__ import annotations

import dataclasses
import time
from multiprocessing import shared_memory

import numpy as np
import torch
from torch import nn

from beast.rollout import RolloutSpec


def _attach(name: str) -> shared_memory.SharedMemory:
    """Attach to a block the learner owns and unlinks. (Actors share the learner's resource
    tracker, so the registration this adds is the learner's own, removed by its unlink.)"""
    return shared_memory.SharedMemory(name=name)


@dataclasses.dataclass(frozen=True)
class RolloutHandle:
    """What an actor needs to attach to the rollout slots (picklable, names only)."""

    spec: RolloutSpec
    leading: tuple[int, ...]  # (num_slots, T+1, num_envs)
    names: dict[str, str]


class SharedRollouts:
    """`num_slots` rollout slots, one shared block per key shaped [num_slots, T+1, K, ...]."""

    def __init__(self, blocks: dict[str, shared_memory.SharedMemory], handle: RolloutHandle,
                 owner: bool) -> None:
        self._blocks = blocks
        self.handle = handle
        self._owner = owner
        self.arrays = {
            key: np.ndarray(handle.leading + field.shape, field.dtype, buffer=blocks[key].buf)
            for key, field in handle.spec.fields.items()
        }

    @classmethod
    def create(cls, spec: RolloutSpec, num_slots: int, unroll_length: int,
               num_envs: int) -> "SharedRollouts":
        leading = (num_slots, unroll_length + 1, num_envs)
        blocks = {key: shared_memory.SharedMemory(create=True, size=max(1, f.nbytes(leading)))
                  for key, f in spec.fields.items()}
        handle = RolloutHandle(spec, leading, {k: b.name for k, b in blocks.items()})
        rollouts = cls(blocks, handle, owner=True)
        for key, field in spec.fields.items():
            rollouts.arrays[key].fill(field.poison)
        return rollouts

    @classmethod
    def attach(cls, handle: RolloutHandle) -> "SharedRollouts":
        return cls({k: _attach(n) for k, n in handle.names.items()}, handle, owner=False)

    def slot(self, index: int) -> dict[str, np.ndarray]:
        """Views [T+1, K, ...] of one slot (no copy)."""
        return {key: array[index] for key, array in self.arrays.items()}

    def close(self) -> None:
        self.arrays.clear()
        for block in self._blocks.values():
            block.close()
            if self._owner:
                block.unlink()


@dataclasses.dataclass(frozen=True)
class WeightsHandle:
    size: int
    data_name: str
    header_name: str


class SharedWeights:
    """The learner's latest flat float32 weights plus their policy version, behind a seqlock.

    One writer (the learner) and many readers (actors). The writer makes the sequence number odd,
    copies, then makes it even again; a reader retries if it saw an odd number or the number
    changed under it. No lock is shared, so an actor killed mid-read cannot block the learner.
    Version -1 means nothing was published yet.
    """

    def __init__(self, data: shared_memory.SharedMemory, header: shared_memory.SharedMemory,
                 size: int, owner: bool) -> None:
        self._data, self._header, self._owner = data, header, owner
        self.flat = np.ndarray((size,), np.float32, buffer=data.buf)
        self._seq_version = np.ndarray((2,), np.int64, buffer=header.buf)
        self.handle = WeightsHandle(size, data.name, header.name)

    @classmethod
    def create(cls, model: nn.Module) -> "SharedWeights":
        size = sum(p.numel() for p in model.parameters())
        data = shared_memory.SharedMemory(create=True, size=max(4, 4 * size))
        header = shared_memory.SharedMemory(create=True, size=16)
        weights = cls(data, header, size, owner=True)
        weights._seq_version[:] = (0, -1)
        return weights

    @classmethod
    def attach(cls, handle: WeightsHandle) -> "SharedWeights":
        return cls(_attach(handle.data_name), _attach(handle.header_name), handle.size,
                   owner=False)

    @property
    def version(self) -> int:
        return int(self._seq_version[1])

    def publish(self, model: nn.Module, version: int) -> None:
        flat = nn.utils.parameters_to_vector(model.parameters()).detach().cpu().numpy()
        self._seq_version[0] += 1
        self.flat[:] = flat
        self._seq_version[1] = version
        self._seq_version[0] += 1

    def read_into(self, model: nn.Module) -> int:
        """Copy the published weights into `model`; returns their version (-1: none yet)."""
        while True:
            before = int(self._seq_version[0])
            if before % 2 == 0:
                flat = self.flat.copy()
                version = int(self._seq_version[1])
                if int(self._seq_version[0]) == before:
                    break
            time.sleep(0)
        if version >= 0:
            with torch.no_grad():
                nn.utils.vector_to_parameters(torch.from_numpy(flat), model.parameters())
        return version

    def close(self) -> None:
        del self.flat, self._seq_version
        for block in (self._data, self._header):
            block.close()
            if self._owner:
                block.unlink()


@dataclasses.dataclass(frozen=True)
class SyncBoardHandle:
    num_actors: int
    name: str


class SyncBoard:
    """Per-actor sync flags and versions in shared memory: the learner's sync controller
    raises an actor's flag; the actor, at its next unroll boundary, copies the weights,
    records their version and its sync count, and lowers the flag.

    Each field has one writer except the flag (learner raises, actor lowers). If a raise
    lands between the actor's copy and its lowering, it is lost, but harmlessly: the actor
    just took the newest weights, and the controller raises it again when needed.
    """

    FLAG, VERSION, SYNCS = range(3)

    def __init__(self, block: shared_memory.SharedMemory, num_actors: int, owner: bool) -> None:
        self._block, self._owner = block, owner
        self.table = np.ndarray((num_actors, 3), np.int64, buffer=block.buf)
        self.handle = SyncBoardHandle(num_actors, block.name)

    @classmethod
    def create(cls, num_actors: int) -> "SyncBoard":
        board = cls(shared_memory.SharedMemory(create=True, size=num_actors * 3 * 8),
                    num_actors, owner=True)
        board.table[:] = (0, -1, 0)
        return board

    @classmethod
    def attach(cls, handle: SyncBoardHandle) -> "SyncBoard":
        return cls(_attach(handle.name), handle.num_actors, owner=False)

    def raise_flag(self, actor: int) -> None:
        self.table[actor, self.FLAG] = 1

    def flagged(self, actor: int) -> bool:
        return bool(self.table[actor, self.FLAG])

    def version(self, actor: int) -> int:
        return int(self.table[actor, self.VERSION])

    def synced(self, actor: int, version: int) -> None:
        """Actor side: record the version just copied and lower the flag."""
        self.table[actor, self.VERSION] = version
        self.table[actor, self.SYNCS] += 1
        self.table[actor, self.FLAG] = 0

    def reset(self, actor: int) -> None:
        """A (re)started actor holds no weights yet."""
        self.table[actor] = (0, -1, self.table[actor, self.SYNCS])

    def close(self) -> None:
        del self.table
        self._block.close()
        if self._owner:
            self._block.unlink()
