"""DynamicBatcher (C++, csrc/core/dynamic_batcher.h) driven from Python threads.

Nothing here asserts on speed: waits are bounded only to turn a hang into a failure
(JOIN_S), and a short join that must *not* finish checks that a call is still blocked.
Callers wait without a timeout unless a test is about timeouts, so a failure that
reached them only "at a timeout" would show up as a hang.
"""

import time

import numpy as np
import pytest

from beast.poly import Batch, DynamicBatcher
from tests.poly.threads import JOIN_S, Call


def row(i):
    return {"id": np.array(i, np.int64), "obs": np.full(3, i, np.float32)}


def model(inputs):
    """Outputs as a function of the inputs, so every caller can check it got its own row."""
    return {"id": inputs["id"].copy(), "double": inputs["obs"] * 2}


def wait_pending(batcher, n):
    deadline = time.monotonic() + JOIN_S
    while len(batcher) < n:
        assert time.monotonic() < deadline, f"only {len(batcher)} of {n} requests became pending"
        time.sleep(0.001)


def submit(batcher, ids, timeout=None):
    """Callers for `ids`, started one at a time so they are pending in that order."""
    calls, before = [], len(batcher)
    for i in ids:
        calls.append(Call(lambda i=i: batcher.compute(row(i), timeout=timeout)))
        wait_pending(batcher, before + len(calls))
    return calls


def assert_own_row(call, i):
    assert call.join().error is None, call.error
    out = call.result
    assert out["id"].shape == () and int(out["id"]) == i
    np.testing.assert_array_equal(out["double"], np.full(3, 2 * i, np.float32))


# --- each caller gets its own row -----------------------------------------------------


def test_32_callers_each_get_their_own_row():
    batcher = DynamicBatcher()
    calls = [Call(lambda i=i: batcher.compute(row(i))) for i in range(32)]
    served = 0
    while served < 32:
        batch = batcher.get_batch(min_items=1, max_items=8, timeout=JOIN_S)
        assert 1 <= len(batch) <= 8
        batch.set_outputs(model(batch.inputs))
        served += len(batch)
    for i, call in enumerate(calls):
        assert_own_row(call, i)


def test_inputs_stack_in_request_order_and_outputs_are_the_callers_own():
    batcher = DynamicBatcher()
    calls = submit(batcher, [4, 5, 6])
    batch = batcher.get_batch(min_items=3)
    assert isinstance(batch, Batch) and len(batch) == 3 and not batch.resolved
    np.testing.assert_array_equal(batch.inputs["id"], [4, 5, 6])
    assert batch.inputs["obs"].shape == (3, 3) and batch.inputs["obs"].dtype == np.float32
    outputs = model(batch.inputs)
    batch.set_outputs(outputs)
    outputs["double"][:] = -1  # the inference side may reuse its buffers at once
    for i, call in zip([4, 5, 6], calls):
        assert_own_row(call, i)
        assert call.result["double"].flags.writeable and not np.shares_memory(call.result["double"], outputs["double"])
    assert batch.resolved


# --- min / max / timeout --------------------------------------------------------------


def test_get_batch_waits_for_min_items():
    batcher = DynamicBatcher()
    inference = Call(lambda: batcher.get_batch(min_items=3))
    calls = []
    for i in range(3):
        inference.assert_blocked()
        calls.append(Call(lambda i=i: batcher.compute(row(i))))
    batch = inference.join().result
    assert len(batch) == 3
    batch.set_outputs(model(batch.inputs))
    for i, call in enumerate(calls):
        assert_own_row(call, i)


def test_max_items_caps_the_batch_and_defaults_to_all_pending():
    batcher = DynamicBatcher()
    calls = submit(batcher, range(5))
    first = batcher.get_batch(min_items=1, max_items=2)
    rest = batcher.get_batch()
    np.testing.assert_array_equal(first.inputs["id"], [0, 1])
    np.testing.assert_array_equal(rest.inputs["id"], [2, 3, 4])
    for batch in (rest, first):
        batch.set_outputs(model(batch.inputs))
    for i, call in enumerate(calls):
        assert_own_row(call, i)


def test_get_batch_timeout_takes_what_is_pending_or_raises():
    batcher = DynamicBatcher()
    with pytest.raises(TimeoutError):
        batcher.get_batch(min_items=2, timeout=0.01)
    (call,) = submit(batcher, [7])
    batch = batcher.get_batch(min_items=3, timeout=0.01)
    assert len(batch) == 1 and len(batcher) == 0
    batch.set_outputs(model(batch.inputs))
    assert_own_row(call, 7)


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="max_pending"):
        DynamicBatcher(max_pending=0)
    batcher = DynamicBatcher(max_pending=2)
    with pytest.raises(ValueError, match="min_items"):
        batcher.get_batch(min_items=3)  # could never be met
    with pytest.raises(ValueError, match="max_items"):
        batcher.get_batch(min_items=2, max_items=1)
    with pytest.raises(ValueError, match="timeout"):
        batcher.get_batch(timeout=-1.0)
    with pytest.raises(ValueError, match="timeout"):
        batcher.compute(row(0), timeout=float("nan"))


def test_compute_blocks_while_max_pending_requests_wait():
    batcher = DynamicBatcher(max_pending=1)
    (first,) = submit(batcher, [0])
    with pytest.raises(TimeoutError, match="max_pending 1"):
        batcher.compute(row(1), timeout=0.01)
    second = Call(lambda: batcher.compute(row(1)))
    second.assert_blocked()
    batch = batcher.get_batch()
    wait_pending(batcher, 1)  # the second request got in once the first was taken
    batch.set_outputs(model(batch.inputs))
    batch = batcher.get_batch()
    batch.set_outputs(model(batch.inputs))
    assert_own_row(first, 0)
    assert_own_row(second, 1)


# --- failures reach every caller at once ----------------------------------------------


@pytest.mark.parametrize("bad", [np.zeros(2), np.zeros(4), np.array(1.0)])
def test_wrong_batch_size_fails_every_caller_and_raises_value_error(bad):
    batcher = DynamicBatcher()
    calls = submit(batcher, range(3))
    batch = batcher.get_batch()
    with pytest.raises(ValueError, match="'y'.*batch size 3"):
        batch.set_outputs({"double": np.zeros((3, 3), np.float32), "y": bad})
    for call in calls:
        assert isinstance(call.join().error, RuntimeError)
        assert "batch size mismatch" in str(call.error)
    with pytest.raises(RuntimeError, match="already resolved"):
        batch.set_outputs(model(batch.inputs))


@pytest.mark.parametrize(("bad", "match"), [([np.zeros(2)], "dict"), ({"y": [1, 2]}, "'y'.*numpy.ndarray")])
def test_outputs_that_are_not_a_dict_of_arrays_fail_every_caller(bad, match):
    batcher = DynamicBatcher()
    calls = submit(batcher, range(2))
    batch = batcher.get_batch()
    with pytest.raises(TypeError, match=match):
        batch.set_outputs(bad)
    for call in calls:
        assert isinstance(call.join().error, RuntimeError) and "unusable outputs" in str(call.error)


def test_dropped_batch_fails_its_callers():
    batcher = DynamicBatcher()
    calls = submit(batcher, range(2))
    batch = batcher.get_batch()
    del batch
    for call in calls:
        assert isinstance(call.join().error, RuntimeError) and "dropped without outputs" in str(call.error)


def test_set_error_propagates_the_message():
    batcher = DynamicBatcher()
    calls = submit(batcher, range(2))
    batch = batcher.get_batch()
    batch.set_error("model raised ZeroDivisionError")
    for call in calls:
        assert isinstance(call.join().error, RuntimeError)
        assert "model raised ZeroDivisionError" in str(call.error)
    with pytest.raises(RuntimeError, match="already resolved"):
        batch.set_error("again")


def test_a_failed_batch_does_not_poison_the_next():
    batcher = DynamicBatcher()
    (failed,) = submit(batcher, [0])
    batcher.get_batch().set_error("boom")
    (ok,) = submit(batcher, [1])
    batch = batcher.get_batch()
    batch.set_outputs(model(batch.inputs))
    assert isinstance(failed.join().error, RuntimeError)
    assert_own_row(ok, 1)


# --- timeouts -------------------------------------------------------------------------


def test_compute_timeout_before_batching_withdraws_the_request():
    batcher = DynamicBatcher()
    with pytest.raises(TimeoutError, match="took the request"):
        batcher.compute(row(0), timeout=0.01)
    assert len(batcher) == 0
    with pytest.raises(TimeoutError):
        batcher.get_batch(timeout=0)


def test_compute_timeout_inside_a_batch_discards_its_row_safely():
    batcher = DynamicBatcher()
    (late,) = submit(batcher, [0], timeout=0.5)
    (waiting,) = submit(batcher, [1])
    batch = batcher.get_batch()
    assert len(batch) == 2
    assert isinstance(late.join().error, TimeoutError) and "not computed" in str(late.error)
    batch.set_outputs(model(batch.inputs))  # the late row is dropped, the other delivered
    assert_own_row(waiting, 1)
    (again,) = submit(batcher, [2])
    batch = batcher.get_batch()
    batch.set_outputs(model(batch.inputs))
    assert_own_row(again, 2)


# --- close ----------------------------------------------------------------------------


def test_close_fails_pending_and_in_flight_callers_and_stops_get_batch():
    batcher = DynamicBatcher()
    (in_flight,) = submit(batcher, [0])
    batch = batcher.get_batch()
    (pending,) = submit(batcher, [1])
    inference = Call(lambda: batcher.get_batch(min_items=2))
    inference.assert_blocked()
    batcher.close()
    for call in (in_flight, pending):
        assert isinstance(call.join().error, RuntimeError) and "closed" in str(call.error)
    assert isinstance(inference.join().error, StopIteration)
    batch.set_outputs(model(batch.inputs))  # late outputs are accepted and discarded
    batcher.close()  # idempotent
    assert batcher.closed and len(batcher) == 0
    with pytest.raises(RuntimeError, match="closed"):
        batcher.compute(row(2))
    with pytest.raises(StopIteration):
        batcher.get_batch()
    assert list(batcher) == []


def test_close_wakes_a_caller_waiting_for_room():
    batcher = DynamicBatcher(max_pending=1)
    (first,) = submit(batcher, [0])
    second = Call(lambda: batcher.compute(row(1)))
    second.assert_blocked()
    batcher.close()
    for call in (first, second):
        assert isinstance(call.join().error, RuntimeError) and "closed" in str(call.error)


# --- schema and types -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ({"id": np.array(1, np.int64)}, "obs"),  # missing
        ({**row(1), "extra": np.zeros(1)}, "extra"),  # unexpected
        ({"id": np.array(1, np.int32), "obs": np.zeros(3, np.float32)}, "id"),  # dtype
        ({"id": np.array(1, np.int64), "obs": np.zeros(4, np.float32)}, "obs"),  # shape
    ],
)
def test_request_not_matching_the_first_raises_value_error_naming_the_key(bad, key):
    batcher = DynamicBatcher()
    (first,) = submit(batcher, [0])
    with pytest.raises(ValueError, match=f"'{key}'"):
        batcher.compute(bad)
    assert len(batcher) == 1
    (second,) = submit(batcher, [1])
    batch = batcher.get_batch()
    batch.set_outputs(model(batch.inputs))
    assert_own_row(first, 0)
    assert_own_row(second, 1)


@pytest.mark.parametrize(("bad", "match"), [([np.zeros(1)], "dict"), ({"x": np.zeros(2, np.complex64)}, "dtype")])
def test_wrong_input_types_raise_type_error(bad, match):
    with pytest.raises(TypeError, match=match):
        DynamicBatcher().compute(bad)


# --- threads --------------------------------------------------------------------------


def test_blocked_compute_releases_the_gil():
    # If compute held the GIL while waiting, this thread could not count and the
    # test would hang (no in-process watchdog can fire without the GIL either).
    batcher = DynamicBatcher()
    (call,) = submit(batcher, [3])
    counter = 0
    for _ in range(100_000):
        counter += 1
    assert counter == 100_000 and call.thread.is_alive()
    batch = batcher.get_batch()
    batch.set_outputs(model(batch.inputs))
    assert_own_row(call, 3)


def test_stress_every_result_is_delivered_once_and_correctly():
    callers, rounds = 8, 200
    batcher = DynamicBatcher(max_pending=4)
    served = []

    def infer():
        for batch in batcher:
            served.extend(batch.inputs["id"].tolist())
            batch.set_outputs(model(batch.inputs))

    def call(c):
        got = []
        for k in range(rounds):
            i = c * rounds + k
            out = batcher.compute(row(i), timeout=JOIN_S)
            assert int(out["id"]) == i and np.array_equal(out["double"], np.full(3, 2 * i, np.float32))
            got.append(i)
        return got

    inference = Call(infer)
    results = [Call(lambda c=c: call(c)) for c in range(callers)]
    for result in results:
        assert result.join().error is None, result.error
    batcher.close()
    assert inference.join().error is None
    expected = list(range(callers * rounds))
    assert sorted(i for result in results for i in result.result) == expected
    assert sorted(served) == expected
