"""IMPACT's circular buffer: a batch source that hands the learner each batch up to K times.

Why: IMPALA uses each batch once, so a learner faster than its actors waits for data. IMPACT
(Luo et al., 2019) keeps the last N batches and lets the learner use each of them up to K
times; its target network and clipped surrogate (beast.algo.impact) keep that reuse stable.
A batch leaves the buffer when it has been used K times, or when it is the oldest of N and a
new batch arrives. `ReuseBuffer` wraps any `BatchSource` (beast.training), so both runtimes
and the serial mode get it unchanged.

Call loop (beast.training's, unchanged but for the wrapper)::

    source = ReuseBuffer(make_source(...), capacity=N, max_uses=K)
    while training:
        batch = source.next_batch(timeout)   # fresh if the wrapped source has one ready (a
                                             # poll, timeout 0), else a buffered one, else
                                             # waits up to `timeout` on the wrapped source
        result = learner.step(batch.data, env_steps)
        source.publish_weights(learner)
        source.sync.after_step(result, batch.owners, ...)   # owners only on a first use
        stats.count(source.counter)          # the wrapped source's counts: once per unroll

Choices:
- A fresh batch always goes first: the learner never trains on old data while new data
  waits. So reuse happens exactly when the learner outpaces the actors; with fast actors
  batches are evicted as oldest before their K uses (counted in `reuse/evicted_early`).
  The serial source acts only when waited on (a poll finds nothing), so there every batch
  is used exactly K times, one after the other.
- Otherwise the least-used buffered batch is reused, the oldest of those first: uses spread
  evenly over the buffer (a ring over its batches, like IMPACT's), and the batch nearest to
  eviction by age has its uses taken before a new batch pushes it out.
- Polls must not cost a batch its size: ProcessSource keeps a partial batch's slots for the
  next call, and PolySource answers a poll only once a whole batch is queued.
- A reused batch comes with `owners=()`. The sync driver observes a copy's drift once per
  unroll, at its first use, as without reuse: measured again after the learner trained on
  this very batch, the KL would count the unroll twice in the copy's smoothed drift and be
  biased by that training, not by the copy's staleness.
- No copy on insertion. Every source hands out batches it never writes again: SerialSource
  and ProcessSource stack their slots into new arrays before the slots are refilled or
  released (beast.rollout.stack_slots), PolySource's BatchingQueue.dequeue returns new
  buffers, and the learner does not write to a batch. tests/test_replay_runtimes.py checks
  this for the three sources; a source that hands out views of recycled memory must copy.
- Counts stay the wrapped source's (`counter` is its EpisodeCounter): an unroll is counted
  when the source produces it, never on reuse, so the step budget, LR schedule and episode
  statistics do not depend on K.

Called from the learner's thread only, like any BatchSource.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import TYPE_CHECKING

from beast.rollout import Batch, EpisodeCounter

if TYPE_CHECKING:  # beast.training may import this module to wrap its source
    from beast.learner import Learner
    from beast.sync import SyncDriver
    from beast.training import BatchSource


@dataclasses.dataclass(eq=False)  # compared by identity (remove), never by tensors
class _Held:
    batch: Batch
    uses: int = 0


class ReuseBuffer:
    """A `BatchSource` handing out each batch of `source` up to `max_uses` times, holding at
    most `capacity` batches (N and K of IMPACT). capacity=1, max_uses=1 is `source` itself."""

    def __init__(self, source: BatchSource, capacity: int, max_uses: int) -> None:
        if capacity < 1:
            raise ValueError(f"the reuse buffer's capacity must be >= 1 batch, got {capacity}")
        if max_uses < 1:
            raise ValueError(f"a batch's max uses must be >= 1 (1: each batch once, as IMPALA), "
                             f"got {max_uses}")
        self.source = source
        self.capacity = capacity
        self.max_uses = max_uses
        self._held: collections.deque[_Held] = collections.deque()  # oldest first; uses < K
        self._evicted_early = 0  # batches pushed out as oldest before their K uses
        self._handed = self._reused = 0  # since the previous metrics() row

    @property
    def restarts(self) -> int:
        return self.source.restarts

    @property
    def counter(self) -> EpisodeCounter:
        return self.source.counter

    @property
    def sync(self) -> SyncDriver | None:
        return self.source.sync

    def next_batch(self, timeout: float) -> Batch | None:
        """A fresh batch if the source has one ready, else the least-used buffered batch
        (oldest first, `owners=()`); waits up to `timeout` only when the buffer is empty.
        Every held batch has a use left (one is dropped at its K-th use), so an empty buffer
        is the only case with nothing to hand out."""
        fresh = self.source.next_batch(0.0 if self._held else timeout)
        if fresh is not None:
            if len(self._held) == self.capacity:
                self._held.popleft()
                self._evicted_early += 1
            held, batch = _Held(fresh), fresh
            self._held.append(held)
        elif self._held:
            held = min(self._held, key=lambda h: h.uses)  # the first minimum: the oldest
            batch = Batch(held.batch.data, owners=())
            self._reused += 1
        else:
            return None
        held.uses += 1
        if held.uses == self.max_uses:
            self._held.remove(held)
        self._handed += 1
        return batch

    def publish_weights(self, learner: Learner) -> None:
        self.source.publish_weights(learner)

    def metrics(self) -> dict[str, float]:
        """The source's metrics plus reuse/*: the fraction of the batches handed out since
        the previous row that were reuses (0 without reuse, 1 - 1/K when every batch is used
        K times), the batches held now, and the batches evicted early so far."""
        row = {"reuse/reused_fraction": self._reused / max(self._handed, 1),
               "reuse/buffer_size": float(len(self._held)),
               "reuse/evicted_early": float(self._evicted_early)}
        self._handed = self._reused = 0
        return {**self.source.metrics(), **row}

    def close(self) -> None:
        """Closes the source (idempotent, as the source's close) and drops the held batches."""
        self._held.clear()
        self.source.close()
