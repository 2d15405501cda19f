"""IMPACT's circular buffer (beast.replay) on a deterministic source of numbered batches."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from beast.replay import ReuseBuffer
from beast.rollout import Batch, EpisodeCounter

T, B = 2, 2
OWNERS = (3, 5)
WAIT = 0.5  # the caller's timeout


class NumberedSource:
    """Batch n holds n in `number`, and B episodes of return n ending at step 0. Call i of
    next_batch, `since` calls after the one that made the last batch, finds a batch ready
    when `ready(i, since)`; a call with a timeout waits for one (gets it) when `patient`,
    else returns None like a poll."""

    restarts = 7
    sync = None

    def __init__(self, ready: Callable[[int, int], bool], patient: bool = True) -> None:
        self.ready, self.patient = ready, patient
        self.counter = EpisodeCounter()
        self.timeouts: list[float] = []
        self.made = 0
        self._last = -10**9  # the call that made the last batch
        self.published: list[object] = []
        self.closed = 0

    def next_batch(self, timeout: float) -> Batch | None:
        call = len(self.timeouts)
        self.timeouts.append(timeout)
        if not self.ready(call, call - self._last) and (timeout <= 0 or not self.patient):
            return None
        n, self.made, self._last = self.made, self.made + 1, call
        step = torch.ones(T + 1, B, dtype=torch.int32)
        step[1] = 0  # the episode that ended at step 0 restarts at step 1
        ended = torch.zeros(T + 1, B, dtype=torch.bool)
        ended[0] = True
        data = {"number": torch.full((T + 1, B), n),
                "reward": torch.zeros(T + 1, B),
                "terminated": ended,
                "truncated": torch.zeros(T + 1, B, dtype=torch.bool),
                "episode_return": torch.full((T + 1, B), float(n)),
                "episode_step": step}
        self.counter.add({k: v.numpy() for k, v in data.items()})
        return Batch(data, OWNERS)

    def publish_weights(self, learner: object) -> None:
        self.published.append(learner)

    def metrics(self) -> dict[str, float]:
        return {"source/x": 1.0}

    def close(self) -> None:
        self.closed += 1


def number(batch: Batch | None) -> int | None:
    return None if batch is None else int(batch.data["number"][0, 0])


def every(period: int) -> Callable[[int, int], bool]:
    """Actors that make a batch in `period` calls of the learner (the first call finds one)."""
    return lambda call, since: since >= period


def test_one_batch_used_once_is_the_plain_source() -> None:
    schedule = lambda call, since: call % 3 != 1  # noqa: E731 (some calls find nothing)
    plain, inner = NumberedSource(schedule, patient=False), NumberedSource(schedule, patient=False)
    buffer = ReuseBuffer(inner, capacity=1, max_uses=1)
    for _ in range(12):
        expected, got = plain.next_batch(WAIT), buffer.next_batch(WAIT)
        assert number(got) == number(expected)
        assert (got is None) or got.owners == expected.owners == OWNERS
    assert inner.timeouts == plain.timeouts == [WAIT] * 12  # never a poll: it waits as before
    assert plain.made == inner.made == 8


@pytest.mark.parametrize("capacity", [1, 4])
@pytest.mark.parametrize("max_uses,period", [(2, 2), (2, 5), (3, 3), (20, 20), (20, 41)])
def test_every_batch_is_used_k_times_when_the_learner_is_faster(capacity: int, max_uses: int,
                                                                period: int) -> None:
    source = NumberedSource(every(period))
    buffer = ReuseBuffer(source, capacity, max_uses)
    uses: dict[int, int] = {}
    for _ in range(10 * max_uses):
        batch = buffer.next_batch(WAIT)
        n = number(batch)
        assert batch.owners == (OWNERS if n not in uses else ())  # drift observed once
        uses[n] = uses.get(n, 0) + 1
    assert list(uses) == list(range(10)) and set(uses.values()) == {max_uses}
    # The source was waited on only with nothing left to reuse: once per batch.
    assert source.timeouts.count(WAIT) == 10 and set(source.timeouts) <= {0.0, WAIT}


def test_a_new_batch_evicts_the_oldest() -> None:
    # Calls 0-2 find fresh batches, 3-6 none; call 7 has to wait for one.
    source = NumberedSource(lambda call, since: call < 3)
    buffer = ReuseBuffer(source, capacity=2, max_uses=3)
    handed = [buffer.next_batch(WAIT) for _ in range(8)]
    # 2 evicts 0 after one use; 1 and 2 take turns (least used, oldest first) up to 3 uses.
    assert [number(b) for b in handed] == [0, 1, 2, 1, 2, 1, 2, 3]
    assert [bool(b.owners) for b in handed] == [True] * 3 + [False] * 4 + [True]
    assert source.timeouts == [WAIT] + [0.0] * 6 + [WAIT]
    assert buffer.metrics() == {"source/x": 1.0, "reuse/reused_fraction": 0.5,
                                "reuse/buffer_size": 1.0, "reuse/evicted_early": 1.0}
    assert buffer.metrics()["reuse/reused_fraction"] == 0.0  # since the previous row


def test_an_always_ready_source_keeps_at_most_n_and_uses_none_more_than_k() -> None:
    source = NumberedSource(lambda call, since: call % 4 != 3)  # one in four finds nothing
    buffer = ReuseBuffer(source, capacity=3, max_uses=2)
    uses: dict[int, int] = {}
    for _ in range(40):
        n = number(buffer.next_batch(WAIT))
        uses[n] = uses.get(n, 0) + 1
        assert buffer.metrics()["reuse/buffer_size"] <= 3
    assert max(uses.values()) == 2 and min(uses.values()) == 1
    assert sum(uses.values()) == 40 and len(uses) == source.made == 30


def test_reuse_counts_env_steps_and_episodes_once() -> None:
    source = NumberedSource(every(4))
    buffer = ReuseBuffer(source, capacity=2, max_uses=4)
    handed = [buffer.next_batch(WAIT) for _ in range(24)]
    assert buffer.counter is source.counter and source.made == 6
    assert source.counter.env_steps == 6 * T * B
    assert source.counter.episodes == 6 * B
    assert sorted(buffer.counter.take_returns()) == sorted(float(n) for n in range(6)
                                                           for _ in range(B))
    assert len(handed) == 24 and buffer.metrics()["reuse/reused_fraction"] == 18 / 24


def test_an_empty_buffer_passes_none_through() -> None:
    source = NumberedSource(lambda call, since: call == 0, patient=False)
    buffer = ReuseBuffer(source, capacity=2, max_uses=2)
    assert [number(buffer.next_batch(WAIT)) for _ in range(4)] == [0, 0, None, None]
    assert source.timeouts == [WAIT, 0.0, WAIT, WAIT]


def test_the_source_protocol_is_delegated() -> None:
    source = NumberedSource(every(1))
    buffer = ReuseBuffer(source, capacity=2, max_uses=2)
    assert (buffer.restarts, buffer.sync, buffer.counter) == (7, None, source.counter)
    learner = object()
    buffer.publish_weights(learner)
    assert source.published == [learner]
    buffer.next_batch(WAIT)
    buffer.close()
    assert source.closed == 1 and buffer.metrics()["reuse/buffer_size"] == 0.0


@pytest.mark.parametrize("capacity,max_uses,message", [(0, 2, "capacity must be >= 1"),
                                                       (4, 0, "max uses must be >= 1")])
def test_bad_sizes_are_refused(capacity: int, max_uses: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReuseBuffer(NumberedSource(every(1)), capacity, max_uses)
