"""Momentum-boosted episodic memory for long-tailed tasks: pure, runtime-free pieces (no
processes, threads or sockets; the runtimes share `MemoryBanks` with their actors).

config: `MemoryConfig` (--episodic-memory, --memory-*). contrastive: augmentation, NT-Xent with
the duplicate mask, momentum losses and priorities. familiarity: the ring buffer they train
on. store: the prioritised, deduplicating `EpisodicStore`. readout: the k-NN readout the core
consumes. banks: the actors' double-buffered copy and its `MemoryReader`. episodic:
`EpisodicMemory`, the learner side; feed: what a learner step hands it.

Names are imported on first use, so `beast.config` (which holds MemoryConfig) stays free of
torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "EpisodicMemory": "beast.memory.episodic",
    "EpisodicStore": "beast.memory.store",
    "FamiliarityBuffer": "beast.memory.familiarity",
    "InsertCounts": "beast.memory.store",
    "MemoryBanks": "beast.memory.banks",
    "MemoryConfig": "beast.memory.config",
    "MemoryReader": "beast.memory.banks",
    "augment": "beast.memory.contrastive",
    "build_memory": "beast.memory.feed",
    "duplicate_mask": "beast.memory.contrastive",
    "encode_keys": "beast.memory.episodic",
    "feed_batch": "beast.memory.feed",
    "knn_readout": "beast.memory.readout",
    "make_key_encoder": "beast.memory.episodic",
    "momentum_update": "beast.memory.contrastive",
    "nt_xent": "beast.memory.contrastive",
    "priorities": "beast.memory.contrastive",
    "readout_size": "beast.memory.readout",
    "value_size": "beast.memory.episodic",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'beast.memory' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
