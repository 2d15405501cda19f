"""Adaptive Policy Synchronization (APS): when should an actor take the learner's new weights?

Pure decision logic: no clocks, no processes, no I/O (the caller passes `now`). The learner
measures, for free, how far each actor's behaviour policy mu has drifted from its own policy
pi — D_i = mean KL(mu || pi) over the actor's valid steps in a batch — smooths it (D^_i, an
average with weight 1/2 on the new measurement), extrapolates it linearly in the lag from the
version it was measured at to the current version, and flags the actor to sync when the
estimate reaches delta, when its lag reaches max_lag versions, or when max_seconds passed
since its last sync. A flagged actor copies the newest weights at its next unroll boundary.

Call loop (learner side; beast.sync.driver.SyncDriver.after_step runs it)::

    controller = APSController(num_actors, delta=0.01, max_lag=32)
    for each learner step (it makes learner_version from learner_version - 1):
        for each actor i whose unroll is in the batch:
            controller.observe(i, divergence=kl_mean[i], measured_version=learner_version - 1,
                               behaviour_version=unroll_version[i])
        controller.on_learner_step()
        for each actor i:
            trigger = controller.decide(i, learner_version, actor_version[i], now)
            if trigger: flag actor i; controller.record_sync(i, trigger, learner_version, now)

Degenerate settings reproduce the classic baselines exactly (controller_from_config):
--sync every-step is delta = inf, max_lag = 1: an actor is flagged after every learner step
that left it behind (trigger `lag`), so it takes the newest weights at each unroll boundary;
--sync periodic is delta = inf, max_lag = N: flagged once it lags N versions.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import torch

from beast.config import SyncConfig


class SyncTrigger(str, enum.Enum):
    """Why an actor synced; the first condition that held is recorded."""

    INITIAL = "initial"
    KL = "kl"
    LAG = "lag"
    TIME = "time"


@dataclasses.dataclass
class _ActorState:
    smoothed_kl: float | None = None  # None: no measurement of the weights it holds yet
    measured_version: int = -1  # learner version when smoothed_kl was last updated
    synced_version: int = -1  # the version the actor was last told to take
    last_sync_time: float | None = None


class APSController:
    """Per-actor divergence estimates and the sync decision (see the module docstring).

    Budget mode (`target_rate` syncs per learner step per actor): every `adapt_every` learner
    steps delta is multiplied by 1.5 if the measured rate exceeds 1.5 x target, divided by 1.5
    if it is below target / 1.5, and clamped to [1e-4, 0.1].
    """

    DELTA_RANGE = (1e-4, 0.1)

    def __init__(self, num_actors: int, delta: float = 0.01, max_lag: int = 32,
                 max_seconds: float | None = None, target_rate: float | None = None,
                 adapt_every: int = 100) -> None:
        if num_actors < 1:
            raise ValueError(f"num_actors must be >= 1 (got {num_actors})")
        if not delta >= 0:
            raise ValueError(f"delta must be >= 0 (got {delta})")
        if max_lag < 1:
            raise ValueError(f"max_lag must be >= 1 (got {max_lag})")
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0 or None (got {max_seconds})")
        if target_rate is not None and not target_rate > 0:
            raise ValueError(f"target_rate must be > 0 or None (got {target_rate})")
        self.delta = delta
        self.max_lag = max_lag
        self.max_seconds = max_seconds
        self.target_rate = target_rate
        self.adapt_every = adapt_every
        self._actors = [_ActorState() for _ in range(num_actors)]
        self.trigger_counts = {trigger: 0 for trigger in SyncTrigger}
        self.learner_steps = 0
        self._syncs_at_adapt = 0

    @property
    def num_actors(self) -> int:
        return len(self._actors)

    @property
    def syncs_total(self) -> int:
        return sum(self.trigger_counts.values())

    def observe(self, actor: int, divergence: float, measured_version: int,
                behaviour_version: int) -> None:
        """Fold a measurement D_i (mean KL per valid state, from an unroll acted with
        `behaviour_version`, measured by the learner at `measured_version`) into D^_i.

        Unrolls acted with weights older than the actor's last sync are ignored: they measure
        drift from weights the actor no longer holds (they were in flight during the sync).
        """
        if not math.isfinite(divergence) or divergence < 0:
            raise ValueError(f"divergence must be a finite KL >= 0 (got {divergence})")
        state = self._actors[actor]
        if behaviour_version < state.synced_version:
            return
        previous = divergence if state.smoothed_kl is None else state.smoothed_kl
        state.smoothed_kl = 0.5 * previous + 0.5 * divergence
        state.measured_version = measured_version

    def estimate(self, actor: int, learner_version: int, actor_version: int) -> float:
        """D~_i: the smoothed KL scaled from the lag it was measured at to the lag now."""
        state = self._actors[actor]
        if state.smoothed_kl is None:
            return 0.0
        lag_now = learner_version - actor_version
        lag_measured = max(1, state.measured_version - actor_version)
        return state.smoothed_kl * lag_now / lag_measured

    def decide(self, actor: int, learner_version: int, actor_version: int,
               now: float) -> SyncTrigger | None:
        """The reason actor `actor` should sync at this unroll boundary, or None.

        `actor_version` < 0 means the actor holds no weights yet. An actor already at the
        learner's version never syncs: there is nothing new to copy.
        """
        if actor_version < 0:
            return SyncTrigger.INITIAL
        if learner_version <= actor_version:
            return None
        if self.estimate(actor, learner_version, actor_version) >= self.delta:
            return SyncTrigger.KL
        if learner_version - actor_version >= self.max_lag:
            return SyncTrigger.LAG
        last = self._actors[actor].last_sync_time
        if self.max_seconds is not None and last is not None and now - last >= self.max_seconds:
            return SyncTrigger.TIME
        return None

    def record_sync(self, actor: int, trigger: SyncTrigger, version: int, now: float) -> None:
        """Note that `actor` was told to take `version`. Its estimate restarts with the next
        measurement of those weights (the old one measured weights it no longer holds)."""
        self.trigger_counts[trigger] += 1
        state = self._actors[actor]
        state.last_sync_time = now
        state.synced_version = version
        state.smoothed_kl = None

    def on_learner_step(self) -> None:
        """Count a learner step; in budget mode, adapt delta every `adapt_every` steps."""
        self.learner_steps += 1
        if self.target_rate is None or self.learner_steps % self.adapt_every:
            return
        syncs = self.syncs_total - self._syncs_at_adapt
        self._syncs_at_adapt = self.syncs_total
        rate = syncs / (self.adapt_every * len(self._actors))
        if rate > 1.5 * self.target_rate:
            self.delta *= 1.5
        elif rate < self.target_rate / 1.5:
            self.delta /= 1.5
        self.delta = min(max(self.delta, self.DELTA_RANGE[0]), self.DELTA_RANGE[1])


def controller_from_config(config: SyncConfig, num_actors: int) -> APSController:
    """The controller for a sync mode. every-step and periodic are its degenerate settings
    (delta = inf with max_lag 1 or N), so all modes are counted and logged the same way."""
    if config.sync == "every-step":
        return APSController(num_actors, delta=math.inf, max_lag=1)
    if config.sync == "periodic":
        return APSController(num_actors, delta=math.inf, max_lag=config.sync_period)
    return APSController(num_actors, delta=config.aps_delta, max_lag=config.aps_max_lag,
                         max_seconds=config.aps_max_seconds, target_rate=config.aps_target_rate)


def kl_per_slot(kl: torch.Tensor, valid: torch.Tensor, num_slots: int) -> list[float]:
    """Mean KL over the valid steps of each slot of a [T, num_slots * K] batch (clamped at 0:
    float rounding can make the KL of nearly equal policies a hair negative)."""
    time_steps = kl.shape[0]
    kl = kl.reshape(time_steps, num_slots, -1)
    valid = valid.reshape(time_steps, num_slots, -1)
    total = torch.where(valid, kl, 0.0).sum(dim=(0, 2))
    return (total / valid.sum(dim=(0, 2)).clamp(min=1)).clamp(min=0.0).tolist()


def sync_metrics(controller: APSController, syncs: int, bytes_per_sync: int,
                 syncs_before: int, steps_before: int) -> dict[str, float]:
    """The aps/* sync counters of a log row; the rate is over the steps since the last row."""
    steps = controller.learner_steps - steps_before
    row = {"aps/syncs_total": float(syncs),
           "aps/syncs_per_learner_step": (syncs - syncs_before) / max(1, steps),
           "aps/bytes_synced": float(syncs * bytes_per_sync), "aps/delta": controller.delta}
    for trigger, count in controller.trigger_counts.items():
        row[f"aps/trigger_{trigger.value}"] = float(count)
    return row
