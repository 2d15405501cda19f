"""The learner side of MonoBeast's weight synchronisation.

After each learner step the weights go to shared memory (one memcpy); whether an actor copies
them is decided here: each actor's drift is measured from the KL the loss already computed
on its unrolls, the controller (beast.sync) decides, and a flag on the shared board tells the
actor to copy at its next unroll boundary.
"""

from __future__ import annotations

import numpy as np

from beast.learner import Learner
from beast.sync import APSController, SyncTrigger, kl_per_slot, sync_metrics
from beast.mono.shared import SyncBoard


class ActorSync:
    """Measures each actor's drift, asks the controller, raises flags, counts syncs."""

    def __init__(self, controller: APSController, board: SyncBoard, slots_per_actor: int,
                 weight_bytes: int) -> None:
        self.controller = controller
        self.board = board
        self.slots_per_actor = slots_per_actor
        self.weight_bytes = weight_bytes
        self._last_syncs = 0
        self._last_learner_steps = 0

    def actor_started(self, actor: int, version: int, now: float) -> None:
        """A (re)started actor holds no weights: it syncs before acting."""
        self.board.reset(actor)
        self.board.raise_flag(actor)
        self.controller.record_sync(actor, SyncTrigger.INITIAL, version, now)

    def after_step(self, learner: Learner, slots: list[int], slot_versions: np.ndarray,
                   now: float) -> None:
        """Called after each learner step on the batch made of `slots` (in batch order)."""
        if learner.last_kl is not None and slots:
            divergences = kl_per_slot(learner.last_kl, learner.last_valid, len(slots))
            for slot, divergence, behaviour in zip(slots, divergences, slot_versions):
                self.controller.observe(slot // self.slots_per_actor, divergence,
                                        learner.version - 1, int(behaviour))
        self.controller.on_learner_step()
        for actor in range(self.board.handle.num_actors):
            if self.board.flagged(actor):
                continue  # told already; it copies at its next unroll boundary
            trigger = self.controller.decide(actor, learner.version, self.board.version(actor),
                                             now)
            if trigger is not None:
                self.board.raise_flag(actor)
                self.controller.record_sync(actor, trigger, learner.version, now)

    def metrics(self) -> dict[str, float]:
        """Sync counters for a log row (copies actually made, as counted by the actors)."""
        syncs = int(self.board.table[:, SyncBoard.SYNCS].sum())
        row = sync_metrics(self.controller, syncs, self.weight_bytes, self._last_syncs,
                           self._last_learner_steps)
        self._last_syncs, self._last_learner_steps = syncs, self.controller.learner_steps
        return row
