"""The APS controller: degenerate settings reproduce the baselines exactly; triggers; budget."""

from __future__ import annotations

import math

import pytest
import torch

from beast.sync import APSController, SyncTrigger, kl_per_slot


def simulate(controller: APSController, steps: int, kl_per_version: float = 0.0,
             num_actors: int = 1) -> list[list[int]]:
    """Learner versions 1..steps; every actor reaches an unroll boundary once per version and
    reports the drift of its last unroll. Returns, per actor, the versions it synced at."""
    actor_version = [-1] * num_actors
    synced: list[list[int]] = [[] for _ in range(num_actors)]
    for version in range(steps + 1):
        if version > 0:
            for actor in range(num_actors):
                lag = version - 1 - actor_version[actor]
                controller.observe(actor, kl_per_version * max(lag, 0), version - 1,
                                   actor_version[actor])
            controller.on_learner_step()
        for actor in range(num_actors):
            trigger = controller.decide(actor, version, actor_version[actor], now=float(version))
            if trigger is not None:
                controller.record_sync(actor, trigger, version, now=float(version))
                actor_version[actor] = version
                synced[actor].append(version)
    return synced


def test_delta_zero_max_lag_one_syncs_at_every_learner_step() -> None:
    synced = simulate(APSController(2, delta=0.0, max_lag=1), steps=50, kl_per_version=0.0,
                      num_actors=2)
    assert synced == [list(range(51))] * 2


@pytest.mark.parametrize("period", [1, 4, 16])
def test_delta_infinite_max_lag_n_syncs_every_n_versions(period: int) -> None:
    controller = APSController(1, delta=math.inf, max_lag=period)
    synced = simulate(controller, steps=64, kl_per_version=1.0)
    assert synced == [list(range(0, 65, period))]
    assert controller.trigger_counts[SyncTrigger.LAG] == 64 // period
    assert controller.trigger_counts[SyncTrigger.INITIAL] == 1


def test_kl_trigger_fires_when_extrapolated_drift_reaches_delta() -> None:
    # Each version adds 0.004 nats of drift. The learner sees lag L-1 when the actor is at lag
    # L; smoothed measurements 0, .002, .005, .0085 extrapolate to 0, .004, .0075, .0113 at
    # lags 1..4, so with delta = 0.01 the actor syncs every 4 versions, for reason "kl".
    controller = APSController(1, delta=0.01, max_lag=100)
    synced = simulate(controller, steps=32, kl_per_version=0.004)
    assert synced == [list(range(0, 33, 4))]
    assert controller.trigger_counts[SyncTrigger.KL] == 8
    slower = simulate(APSController(1, delta=0.03, max_lag=100), 32, kl_per_version=0.004)
    assert len(slower[0]) < len(synced[0])  # a larger delta syncs less often


def test_estimate_smooths_and_extrapolates_to_the_current_lag() -> None:
    controller = APSController(1)
    controller.record_sync(0, SyncTrigger.INITIAL, version=10, now=0.0)
    controller.observe(0, 0.02, measured_version=12, behaviour_version=10)
    controller.observe(0, 0.04, measured_version=14, behaviour_version=10)
    smoothed = 0.5 * 0.02 + 0.5 * 0.04  # first measurement seeds the average
    assert controller.estimate(0, learner_version=16, actor_version=10) == pytest.approx(
        smoothed * (16 - 10) / (14 - 10))
    # measured at the actor's own version: the lag is floored at 1
    controller.observe(0, 0.04, measured_version=10, behaviour_version=10)
    assert controller.estimate(0, 11, 10) == pytest.approx(0.5 * smoothed + 0.5 * 0.04)


def test_stale_unrolls_from_before_a_sync_are_ignored() -> None:
    controller = APSController(1, delta=0.01)
    controller.record_sync(0, SyncTrigger.KL, version=20, now=0.0)
    controller.observe(0, 5.0, measured_version=21, behaviour_version=15)  # in flight
    assert controller.estimate(0, 22, 20) == 0.0
    assert controller.decide(0, 22, 20, now=1.0) is None


def test_time_trigger_and_first_reason_wins() -> None:
    controller = APSController(1, delta=0.5, max_lag=5, max_seconds=10.0)
    assert controller.decide(0, 3, -1, now=0.0) is SyncTrigger.INITIAL
    controller.record_sync(0, SyncTrigger.INITIAL, 3, now=0.0)
    assert controller.decide(0, 3, 3, now=100.0) is None  # nothing new to copy
    assert controller.decide(0, 4, 3, now=9.9) is None
    assert controller.decide(0, 4, 3, now=10.0) is SyncTrigger.TIME
    assert controller.decide(0, 8, 3, now=10.0) is SyncTrigger.LAG  # lag checked before time
    controller.observe(0, 1.0, measured_version=4, behaviour_version=3)
    assert controller.decide(0, 8, 3, now=10.0) is SyncTrigger.KL  # kl checked before lag


def test_budget_mode_moves_delta_towards_the_target_rate() -> None:
    busy = APSController(1, delta=0.01, max_lag=10**6, target_rate=0.1)
    simulate(busy, steps=100, kl_per_version=1.0)  # syncs every step: rate 1 > 1.5 * 0.1
    assert busy.delta == pytest.approx(0.015)
    idle = APSController(1, delta=0.01, max_lag=10**6, target_rate=0.5)
    simulate(idle, steps=200, kl_per_version=1e-9)  # no syncs: rate 0 < 0.5 / 1.5
    assert idle.delta == pytest.approx(0.01 / 1.5 ** 2)
    floor = APSController(1, delta=1e-4, max_lag=10**6, target_rate=0.5)
    simulate(floor, steps=100, kl_per_version=0.0)
    assert floor.delta == 1e-4  # clamped to [1e-4, 0.1]


@pytest.mark.parametrize("kwargs, message", [
    ({"num_actors": 0}, "num_actors"), ({"num_actors": 1, "delta": -1}, "delta"),
    ({"num_actors": 1, "max_lag": 0}, "max_lag"),
    ({"num_actors": 1, "max_seconds": 0}, "max_seconds"),
    ({"num_actors": 1, "target_rate": -1}, "target_rate"),
])
def test_bad_settings_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        APSController(**kwargs)


def test_kl_per_slot_averages_valid_steps_of_each_slot() -> None:
    kl = torch.tensor([[1.0, 3.0, 10.0, 20.0], [5.0, 7.0, 30.0, 40.0]])  # T=2, 2 slots x K=2
    valid = torch.tensor([[True, True, True, False], [True, False, True, True]])
    assert kl_per_slot(kl, valid, 2) == pytest.approx([(1 + 3 + 5) / 3, (10 + 30 + 40) / 3])
    rounding = torch.full((2, 4), -1e-9)  # equal policies, float rounding
    assert kl_per_slot(rounding, valid, 2) == [0.0, 0.0]
