"""The APS controller driven by hand: simulated actors, their policy versions, their drift.

Adaptive Policy Synchronization (beast.sync.aps) decides per actor when it takes the learner's
new weights. Nothing here trains: each simulated actor holds a policy version, and the KL the
learner would measure on its unroll grows with the actor's lag at a rate of its own (some
states make the policy move fast, some barely at all). The loop is the one
beast.sync.driver.SyncDriver.after_step runs after every learner step:

    controller.observe(actor, divergence, measured_version, behaviour_version)  # each unroll
    controller.on_learner_step()
    trigger = controller.decide(actor, learner_version, actor_version, now)     # each actor
    if trigger: actor takes the weights; controller.record_sync(actor, trigger, version, now)

A fast-drifting actor syncs for `kl` within a few versions; one whose policy does not move
syncs only when its lag reaches max_lag (`lag`), or when max_seconds passed (`time`).
Run: `python examples/aps_by_hand.py --rates 0.004 0.002 0 --delta 0.01 --max-lag 8`.
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

from beast.sync import APSController


class Sync(NamedTuple):
    """One decision: at `version`, `actor` took the learner's weights, because of `trigger`."""

    version: int
    actor: int
    trigger: str
    lag: int  # versions the actor was behind when it synced (0 for `initial`)
    estimate: float  # the controller's extrapolated KL at that moment


def main(rates: tuple[float, ...] = (0.004, 0.002, 0.0), learner_steps: int = 40,
         delta: float = 0.01, max_lag: int = 8, max_seconds: float | None = None,
         seconds_per_step: float = 1.0) -> list[Sync]:
    """Simulate `learner_steps` learner steps over one actor per drift rate (KL per version of
    lag); returns every sync decision in order (the first, `initial`, for each actor)."""
    controller = APSController(len(rates), delta=delta, max_lag=max_lag, max_seconds=max_seconds)
    held = [-1] * len(rates)  # -1: an actor that holds no weights yet
    syncs: list[Sync] = []

    def decide_all(version: int, now: float) -> None:
        for actor in range(len(rates)):
            estimate = controller.estimate(actor, version, held[actor])
            trigger = controller.decide(actor, version, held[actor], now)
            if trigger is not None:  # the actor copies at its next unroll boundary
                lag = version - held[actor] if held[actor] >= 0 else 0
                syncs.append(Sync(version, actor, trigger.value, lag, estimate))
                held[actor] = version
                controller.record_sync(actor, trigger, version, now)

    decide_all(0, now=0.0)  # every actor starts by taking version 0
    for version in range(1, learner_steps + 1):  # the step that made `version`
        now = version * seconds_per_step
        # The batch of this step holds one unroll per actor, acted with the version it holds;
        # the learner measured it at version - 1, i.e. at a lag of version - 1 - held.
        for actor, rate in enumerate(rates):
            controller.observe(actor, divergence=rate * (version - 1 - held[actor]),
                               measured_version=version - 1, behaviour_version=held[actor])
        controller.on_learner_step()
        decide_all(version, now)
    return syncs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.004, 0.002, 0.0],
                        help="each actor's KL per version of lag")
    parser.add_argument("--learner-steps", type=int, default=40)
    parser.add_argument("--delta", type=float, default=0.01)
    parser.add_argument("--max-lag", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=None)
    args = parser.parse_args()
    decisions = main(tuple(args.rates), args.learner_steps, args.delta, args.max_lag,
                     args.max_seconds)
    for sync in decisions:
        print(f"version {sync.version:3d}: actor {sync.actor} syncs ({sync.trigger}, "
              f"lag {sync.lag}, estimated KL {sync.estimate:.4f})")
    for actor, rate in enumerate(args.rates):
        print(f"actor {actor} (rate {rate}): "
              f"{sum(s.actor == actor for s in decisions) - 1} syncs after the first")
