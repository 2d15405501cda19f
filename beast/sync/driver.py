"""The sync driver: the observe -> decide -> record loop of weight synchronisation, written
once for both runtimes.

A runtime has one or more *policy copies* that act (MonoBeast: one per actor process;
PolyBeast: the one central inference model). It tells the driver how to read the version a
copy holds, how to ask a copy to take the learner's weights, and (optionally) whether a copy
was already asked and has not taken them yet. The training driver (beast.training) calls:

    driver = SyncDriver(controller, weight_bytes, held_version=..., request=..., pending=...)
    driver.copy_started(copy, version, now)         # a (re)started copy holds no weights
    for each learner step:
        result = learner.step(batch.data, env_steps)
        source.publish_weights(learner)              # make the weights available (no decision)
        driver.after_step(result, batch.owners, batch.data["policy_version"], learner.version, now)
    driver.metrics(syncs_done)                       # aps/* counters for a log row

Each copy's drift is the mean KL(mu || pi) the learner measured over that copy's columns of the
batch (`StepResult.drift`), at the version the batch was acted with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch

from beast.sync.aps import APSController, SyncTrigger, kl_per_slot, sync_metrics

if TYPE_CHECKING:
    from beast.learner import StepResult


class SyncDriver:
    """Feeds the controller each copy's drift, raises its decisions, counts them."""

    def __init__(self, controller: APSController, weight_bytes: int,
                 held_version: Callable[[int], int], request: Callable[[int], None],
                 pending: Callable[[int], bool] = lambda copy: False) -> None:
        self.controller = controller
        self.weight_bytes = weight_bytes
        self.held_version = held_version
        self.request = request
        self.pending = pending
        self.num_copies = controller.num_actors
        self._logged = (0, 0)  # syncs and learner steps at the previous log row

    def copy_started(self, copy: int, version: int, now: float) -> None:
        """A (re)started copy holds no weights: it must sync before acting."""
        self.request(copy)
        self.controller.record_sync(copy, SyncTrigger.INITIAL, version, now)

    def after_step(self, result: StepResult, owners: Sequence[int], policy_version: torch.Tensor,
                   learner_version: int, now: float) -> None:
        """After the learner step that made `learner_version` from a batch whose column groups
        (equal-sized, in order) were acted by the copies `owners`; `result` is its StepResult
        and `policy_version` the batch's [T+1, B] versions."""
        if owners:
            drifts = kl_per_slot(result.drift, result.valid, len(owners))
            acted = policy_version[1:].reshape(policy_version.shape[0] - 1, len(owners), -1)
            behaviour = acted.amin(dim=2).amin(dim=0).tolist()
            for copy, drift, version in zip(owners, drifts, behaviour):
                self.controller.observe(copy, drift, learner_version - 1, int(version))
        self.controller.on_learner_step()
        for copy in range(self.num_copies):
            if self.pending(copy):
                continue  # told already; it copies at its next chance
            trigger = self.controller.decide(copy, learner_version, self.held_version(copy), now)
            if trigger is not None:
                self.request(copy)
                self.controller.record_sync(copy, trigger, learner_version, now)

    def metrics(self, syncs: int) -> dict[str, float]:
        """aps/* counters for a log row; `syncs`: copies actually made so far."""
        row = sync_metrics(self.controller, syncs, self.weight_bytes, *self._logged)
        self._logged = (syncs, self.controller.learner_steps)
        return row
