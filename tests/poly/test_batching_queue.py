"""BatchingQueue (C++, csrc/core/batching_queue.h) driven from Python threads.

Nothing here asserts on speed: waits are bounded only to turn a hang into a failure
(JOIN_S), and a short join that must *not* finish checks that a call is still blocked.
"""

import sys

import numpy as np
import pytest

from beast.poly import BatchingQueue
from tests.poly.threads import Call


def item(i, shape=(2, 3)):
    return {"id": np.array(i, np.int64), "obs": np.full(shape, i, np.float32)}


# --- batching -------------------------------------------------------------------------


def test_fifo_with_one_producer():
    q = BatchingQueue(capacity=3)
    producer = Call(lambda: [q.enqueue(item(i)) for i in range(50)])
    got = [int(q.dequeue()["id"][0]) for _ in range(50)]
    producer.join()
    assert got == list(range(50))


def test_stack_inserts_batch_axis_at_0():
    rng = np.random.default_rng(0)
    items = [
        {
            "obs": rng.standard_normal((2, 3)).astype(np.float32),
            "action": np.array(i, np.int64),
            "done": rng.random(4) < 0.5,
        }
        for i in range(3)
    ]
    q = BatchingQueue(capacity=4)
    for it in items:
        q.enqueue(it)
    batch = q.dequeue(min_items=3)
    assert sorted(batch) == ["action", "done", "obs"]
    for key in batch:
        expected = np.stack([it[key] for it in items])
        assert batch[key].dtype == expected.dtype
        np.testing.assert_array_equal(batch[key], expected)
    assert batch["obs"].shape == (3, 2, 3) and batch["action"].shape == (3,) and batch["done"].shape == (3, 4)


@pytest.mark.parametrize("batch_dim", [1, 2])
def test_stack_inserts_batch_axis_inside(batch_dim):
    items = [{"x": np.arange(6, dtype=np.int32).reshape(2, 3) + 10 * i} for i in range(4)]
    q = BatchingQueue(capacity=4, batch_dim=batch_dim)
    for it in items:
        q.enqueue(it)
    np.testing.assert_array_equal(q.dequeue(4)["x"], np.stack([it["x"] for it in items], axis=batch_dim))


def test_concatenate_time_major_rollouts_along_batch_dim_1():
    rng = np.random.default_rng(1)
    widths = [1, 3, 2]  # items may differ on the batch axis only
    items = [
        {
            "obs": rng.standard_normal((5, b, 4, 2)).astype(np.float32),
            "reward": rng.standard_normal((5, b)),
            "policy_version": np.full((5, b), i, np.int64),
        }
        for i, b in enumerate(widths)
    ]
    q = BatchingQueue(capacity=3, batch_dim=1, stack=False)
    for it in items:
        q.enqueue(it)
    batch = q.dequeue(min_items=3)
    assert batch["obs"].shape == (5, 6, 4, 2)
    for key in batch:
        expected = np.concatenate([it[key] for it in items], axis=1)
        assert batch[key].dtype == expected.dtype
        np.testing.assert_array_equal(batch[key], expected)


@pytest.mark.parametrize(
    "dtype",
    [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.float16, np.float32, np.float64],
)
def test_every_supported_dtype_round_trips_exactly(dtype):
    values = [np.array([[0, 1], [1, 0]]) * (i + 1) for i in range(2)]
    items = [{"x": v.astype(dtype)} for v in values]
    q = BatchingQueue(capacity=2)
    for it in items:
        q.enqueue(it)
    out = q.dequeue(2)["x"]
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, np.stack([it["x"] for it in items]))


# --- min / max / timeout --------------------------------------------------------------


def test_timeout_returns_a_partial_batch():
    q = BatchingQueue(capacity=4)
    q.enqueue(item(7))
    batch = q.dequeue(min_items=3, timeout=0.01)
    np.testing.assert_array_equal(batch["id"], [7])
    assert len(q) == 0


def test_timeout_with_nothing_queued_raises():
    q = BatchingQueue(capacity=4)
    with pytest.raises(TimeoutError):
        q.dequeue(min_items=3, timeout=0.01)
    with pytest.raises(TimeoutError):
        q.dequeue(timeout=0)


def test_max_items_caps_the_batch_and_defaults_to_min_items():
    q = BatchingQueue(capacity=8)
    for i in range(7):
        q.enqueue(item(i))
    np.testing.assert_array_equal(q.dequeue(min_items=2, max_items=3)["id"], [0, 1, 2])
    np.testing.assert_array_equal(q.dequeue(min_items=2)["id"], [3, 4])
    np.testing.assert_array_equal(q.dequeue(min_items=1, max_items=100)["id"], [5, 6])


def test_dequeue_waits_for_min_items():
    q = BatchingQueue(capacity=4)
    consumer = Call(lambda: q.dequeue(min_items=3))
    for i in range(3):
        consumer.assert_blocked()
        q.enqueue(item(i))
    np.testing.assert_array_equal(consumer.join().result["id"], [0, 1, 2])


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="capacity"):
        BatchingQueue(capacity=0)
    with pytest.raises(ValueError, match="batch_dim"):
        BatchingQueue(capacity=1, batch_dim=-1)
    q = BatchingQueue(capacity=2)
    with pytest.raises(ValueError, match="min_items"):
        q.dequeue(min_items=3)  # could never be met
    with pytest.raises(ValueError, match="max_items"):
        q.dequeue(min_items=2, max_items=1)
    with pytest.raises(ValueError, match="timeout"):
        q.dequeue(timeout=-1.0)


# --- backpressure, many threads, close ------------------------------------------------


def test_producer_blocks_while_full_until_a_dequeue():
    q = BatchingQueue(capacity=2)
    q.enqueue(item(0))
    q.enqueue(item(1))
    with pytest.raises(TimeoutError):
        q.enqueue(item(2), timeout=0.01)
    producer = Call(lambda: q.enqueue(item(2)))
    producer.assert_blocked()
    np.testing.assert_array_equal(q.dequeue()["id"], [0])
    producer.join()
    assert producer.error is None and len(q) == 2


def test_many_producers_many_consumers_deliver_each_item_exactly_once():
    producers, per_producer, consumers = 4, 150, 3
    q = BatchingQueue(capacity=5)
    received = [[] for _ in range(consumers)]

    def consume(out):
        # iter(callable, sentinel) ends when the callable raises StopIteration.
        for batch in iter(lambda: q.dequeue(min_items=1, max_items=4), None):
            ids = batch["id"]
            # An item's arrays stay together: obs of row r is filled with ids[r].
            np.testing.assert_array_equal(batch["obs"], np.broadcast_to(ids[:, None, None], (len(ids), 2, 3)))
            out.extend(ids.tolist())

    def produce(p):
        for k in range(per_producer):
            q.enqueue(item(p * per_producer + k))

    consumer_calls = [Call(lambda out=out: consume(out)) for out in received]
    for call in [Call(lambda p=p: produce(p)) for p in range(producers)]:
        assert call.join().error is None
    q.close()
    for call in consumer_calls:
        assert call.join().error is None
    ids = [i for out in received for i in out]
    assert len(ids) == producers * per_producer
    assert set(ids) == set(range(producers * per_producer))


def test_close_wakes_a_blocked_consumer_and_a_blocked_producer():
    empty, full = BatchingQueue(capacity=1), BatchingQueue(capacity=1)
    full.enqueue(item(0))
    consumer = Call(lambda: empty.dequeue())
    producer = Call(lambda: full.enqueue(item(1)))
    consumer.assert_blocked()
    producer.assert_blocked()
    empty.close()
    full.close()
    assert isinstance(consumer.join().error, StopIteration)
    assert isinstance(producer.join().error, RuntimeError) and "closed" in str(producer.error)


def test_after_close_enqueue_raises_and_dequeue_drains_then_stops():
    q = BatchingQueue(capacity=8)
    for i in range(5):
        q.enqueue(item(i))
    q.close()
    q.close()  # idempotent
    assert q.closed
    with pytest.raises(RuntimeError, match="closed"):
        q.enqueue(item(5))
    # min_items is ignored once closed: what is left comes out, max_items at a time.
    np.testing.assert_array_equal(q.dequeue(min_items=3, max_items=3)["id"], [0, 1, 2])
    np.testing.assert_array_equal(q.dequeue(min_items=3, max_items=3)["id"], [3, 4])
    with pytest.raises(StopIteration):
        q.dequeue()


def test_iteration_yields_one_item_batches_and_ends_on_close():
    q = BatchingQueue(capacity=4)
    for i in range(3):
        q.enqueue(item(i))
    q.close()
    assert [b["id"].tolist() for b in q] == [[0], [1], [2]]


def test_blocked_dequeue_releases_the_gil():
    # If dequeue held the GIL while waiting, this thread could not count and the
    # test would hang (no in-process watchdog can fire without the GIL either).
    q = BatchingQueue(capacity=1)
    consumer = Call(lambda: q.dequeue())
    consumer.assert_blocked()
    counter = 0
    for _ in range(100_000):
        counter += 1
    assert counter == 100_000 and consumer.thread.is_alive()
    q.enqueue(item(3))
    np.testing.assert_array_equal(consumer.join().result["id"], [3])


# --- schema and types -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ({"id": np.array(1, np.int64)}, "obs"),  # missing
        ({**item(1), "extra": np.zeros(1)}, "extra"),  # unexpected
        ({"id": np.array(1, np.int32), "obs": np.zeros((2, 3), np.float32)}, "id"),  # dtype
        ({"id": np.array(1, np.int64), "obs": np.zeros((3, 2), np.float32)}, "obs"),  # shape
    ],
)
def test_item_not_matching_the_first_raises_value_error_naming_the_key(bad, key):
    q = BatchingQueue(capacity=4)
    q.enqueue(item(0))
    with pytest.raises(ValueError, match=f"'{key}'"):
        q.enqueue(bad)
    assert len(q) == 1


def test_concatenation_allows_only_the_batch_axis_to_differ():
    q = BatchingQueue(capacity=4, batch_dim=1, stack=False)
    q.enqueue({"x": np.zeros((5, 2))})
    q.enqueue({"x": np.zeros((5, 7))})
    with pytest.raises(ValueError, match="'x'.*batch_dim 1"):
        q.enqueue({"x": np.zeros((4, 2))})
    with pytest.raises(ValueError, match="'y'.*too few dimensions"):
        BatchingQueue(capacity=1, batch_dim=1, stack=False).enqueue({"y": np.zeros(3)})


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ([np.zeros(1)], "dict"),
        ({"x": [1.0, 2.0]}, "'x'.*numpy.ndarray"),
        ({"x": np.zeros(2, np.complex64)}, "'x'.*unsupported dtype"),
        ({"x": np.zeros(2, ">f4")}, "'x'.*unsupported dtype"),  # byte-swapped
        ({1: np.zeros(2)}, "str"),
    ],
)
def test_wrong_types_raise_type_error(bad, match):
    with pytest.raises(TypeError, match=match):
        BatchingQueue(capacity=1).enqueue(bad)


# --- memory ---------------------------------------------------------------------------


def test_enqueue_holds_a_reference_not_a_copy():
    """Documented zero-copy behaviour: writes before the dequeue show in the batch."""
    x = np.zeros(3, np.float32)
    refs = sys.getrefcount(x)
    q = BatchingQueue(capacity=2)
    q.enqueue({"x": x})
    assert sys.getrefcount(x) == refs + 1
    x[:] = 5
    out = q.dequeue()["x"]
    np.testing.assert_array_equal(out, [[5, 5, 5]])
    assert sys.getrefcount(x) == refs  # released once joined


def test_non_contiguous_input_is_copied_on_enqueue():
    x = np.arange(12, dtype=np.int64).reshape(3, 4)
    q = BatchingQueue(capacity=1)
    q.enqueue({"x": x[:, ::2]})
    x[:] = -1
    np.testing.assert_array_equal(q.dequeue()["x"], [np.arange(12).reshape(3, 4)[:, ::2]])


def test_batches_are_new_writable_buffers_that_outlive_the_queue():
    x = np.ones((2, 2), np.float64)
    q = BatchingQueue(capacity=1)
    q.enqueue({"x": x})
    out = q.dequeue()["x"]
    del q
    assert out.flags.writeable and out.flags.c_contiguous and not np.shares_memory(out, x)
    out[:] = 3
    np.testing.assert_array_equal(x, np.ones((2, 2)))
    np.testing.assert_array_equal(out, np.full((1, 2, 2), 3.0))


def test_properties_and_len():
    q = BatchingQueue(3, 1, stack=False)
    assert (q.capacity, q.batch_dim, q.stack, q.closed, len(q)) == (3, 1, False, False, 0)
    q.enqueue({"x": np.zeros((1, 1))})
    assert len(q) == 1 and "size=1" in repr(q)
