// Python binding of beast::BatchingQueue.
//
// Arrays are converted with the GIL held (bindings/numpy.h, no copy);
// enqueue() and dequeue() run with the GIL released, since both may block
// and dequeue() copies whole batches. Errors map to Python as:
//   SchemaError, bad arguments -> ValueError     QueueTimeout -> TimeoutError
//   QueueClosed in enqueue     -> RuntimeError   QueueClosed in dequeue -> StopIteration
#include <optional>
#include <string>
#include <utility>

#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "bindings/numpy.h"
#include "core/batching_queue.h"

namespace beast {
namespace {

constexpr const char* kClassDoc = R"doc(
Bounded many-producer / many-consumer queue that hands out batches.

Producers ``enqueue`` one item, a ``dict[str, np.ndarray]`` (one rollout, say);
consumers ``dequeue`` n items at once as one dict whose arrays join the n
items' arrays along ``batch_dim``:

* ``stack=True`` (default): a new axis is inserted at ``batch_dim``; n items
  of shape S give ``S[:batch_dim] + (n,) + S[batch_dim:]``.
* ``stack=False``: items are concatenated along their existing axis
  ``batch_dim``; time-major rollouts ``[T, B_i, ...]`` with ``batch_dim=1``
  give ``[T, sum(B_i), ...]``. Shapes may differ only on that axis.

The first item fixes the schema (keys, dtypes, shapes); a later item that
differs raises ValueError naming the key. Supported dtypes: bool, int8,
int16, int32, int64, uint8, float16, float32, float64 (native byte order).

Zero-copy: the queue keeps a reference to each enqueued array, not a copy
(non-C-contiguous arrays are the exception: copied once on enqueue). Do not
write to an array after enqueuing it until it has been dequeued; such writes
show up in the batch. Dequeued arrays are always new, writable buffers.

close() wakes every blocked call. Afterwards ``enqueue`` raises RuntimeError;
``dequeue`` drains: it ignores ``min_items`` and returns up to ``max_items``
of the remaining items per call, then raises StopIteration, so iteration ends.

Call loop::

    queue = BatchingQueue(capacity=8, batch_dim=1, stack=False)
    # each actor thread:                 # the learner thread:
    queue.enqueue(rollout)               for batch in queue: ...   # or
                                         batch = queue.dequeue(min_items=4)
    # shutdown (any thread):
    queue.close()

All methods may be called from any thread.
)doc";

constexpr const char* kDequeueDoc = R"doc(
Wait until at least ``min_items`` items are queued, then join up to
``max_items`` of them (oldest first) into one batch. ``max_items=None``
means ``max_items=min_items``.

With a ``timeout`` (seconds), a call still short of ``min_items`` when it
expires returns the items queued then, or raises TimeoutError if there are
none. After close(): returns up to ``max_items`` of what is left, then raises
StopIteration. Requires ``1 <= min_items <= capacity`` and
``max_items >= min_items`` (ValueError otherwise).
)doc";

void enqueue(BatchingQueue& queue, const py::object& item, std::optional<double> timeout) {
  Item arrays = array_map_from_dict(item);
  py::gil_scoped_release nogil;
  queue.enqueue(std::move(arrays), to_timeout(timeout));
}

py::dict dequeue(BatchingQueue& queue, std::int64_t min_items, std::optional<std::int64_t> max_items,
                 std::optional<double> timeout) {
  Item batch;
  try {
    py::gil_scoped_release nogil;
    batch = queue.dequeue(min_items, max_items.value_or(min_items), to_timeout(timeout));
  } catch (const QueueClosed& e) {
    throw py::stop_iteration(e.what());
  }
  return array_map_to_dict(batch);
}

}  // namespace

void bind_batching_queue(py::module_& m) {
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const QueueTimeout& e) {
      PyErr_SetString(PyExc_TimeoutError, e.what());
    }
  });

  py::class_<BatchingQueue>(m, "BatchingQueue", kClassDoc)
      .def(py::init<std::int64_t, std::int64_t, bool>(), py::arg("capacity"), py::arg("batch_dim") = 0,
           py::kw_only(), py::arg("stack") = true,
           "capacity: most items held (>= 1); batch_dim: the axis batches join along (>= 0); "
           "stack: insert a new axis (True) or concatenate along an existing one (False).")
      .def("enqueue", &enqueue, py::arg("item"), py::arg("timeout") = py::none(),
           "Add one item, waiting while the queue is full. Raises ValueError if the item does not match the "
           "schema, TypeError if it is not a dict of str to numpy.ndarray, TimeoutError if still full after "
           "`timeout` seconds, RuntimeError if the queue is or gets closed.")
      .def("dequeue", &dequeue, py::arg("min_items") = 1, py::arg("max_items") = py::none(),
           py::arg("timeout") = py::none(), kDequeueDoc)
      .def("close", &BatchingQueue::close, "Idempotent; wakes every blocked enqueue and dequeue.")
      .def("__len__", &BatchingQueue::size, "Items queued now.")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", [](BatchingQueue& queue) { return dequeue(queue, 1, std::nullopt, std::nullopt); },
           "dequeue() with its defaults: blocks for one item; StopIteration once closed and drained.")
      .def_property_readonly("closed", &BatchingQueue::is_closed)
      .def_property_readonly("capacity", &BatchingQueue::capacity)
      .def_property_readonly("batch_dim", &BatchingQueue::batch_dim)
      .def_property_readonly("stack", &BatchingQueue::stack)
      .def("__repr__", [](const BatchingQueue& queue) {
        return "BatchingQueue(capacity=" + std::to_string(queue.capacity()) +
               ", batch_dim=" + std::to_string(queue.batch_dim()) + ", stack=" + (queue.stack() ? "True" : "False") +
               ", size=" + std::to_string(queue.size()) + ", closed=" + (queue.is_closed() ? "True" : "False") + ")";
      });
}

}  // namespace beast
