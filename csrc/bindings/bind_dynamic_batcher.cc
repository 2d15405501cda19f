// Python binding of beast::DynamicBatcher and its Batch.
//
// Arrays are converted with the GIL held (bindings/numpy.h, no copy on the
// way in); compute(), get_batch() and set_outputs() run with the GIL
// released, since the first two block and the last two copy. Errors map to
// Python as:
//   SchemaError, bad arguments, bad output shapes -> ValueError
//   outputs not a dict of arrays                  -> TypeError
//   QueueTimeout -> TimeoutError (the translator bind_batching_queue.cc registers for the whole module)
//   BatchFailed, QueueClosed in compute, resolving a Batch twice -> RuntimeError
//   QueueClosed in get_batch -> StopIteration
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "bindings/numpy.h"
#include "core/dynamic_batcher.h"

namespace beast {
namespace {

constexpr const char* kBatcherDoc = R"doc(
Central inference: many callers submit one row each, inference threads run
the model once per batch of rows.

A caller's ``compute(inputs)`` submits one request, a ``dict[str, np.ndarray]``
without a batch axis, and blocks until its row has been computed. An
inference thread's ``get_batch()`` returns a :class:`Batch` whose ``inputs``
stack the pending requests along a new axis 0 (oldest first); it runs the
model and calls ``batch.set_outputs(outputs)``, every array of which has axis
0 of length ``len(batch)``. Caller i then returns ``{k: v[i]}``: new, writable
arrays it owns (rows are copied once, and the batcher keeps no reference to
``outputs``, so the inference side may reuse its buffers at once).

Failures reach the callers at once, as RuntimeError: outputs of the wrong
batch size (``set_outputs`` also raises ValueError) or not a dict of arrays
(``set_outputs`` also raises TypeError); ``batch.set_error(message)``; a
Batch dropped without either.

The first request fixes the schema (keys, dtypes, shapes); a later request
that differs raises ValueError naming the key, and the batcher carries on.
Supported dtypes: bool, int8, int16, int32, int64, uint8, float16, float32,
float64 (native byte order). Inputs are held by reference, not copied, until
their batch is taken (then stacked into new buffers): do not write to them
while ``compute`` runs.

Backpressure: at most ``max_pending`` requests wait to be batched;
``compute`` blocks while that many do (within its timeout).

close() fails every unfinished request, pending or inside a batch, so every
blocked ``compute`` raises RuntimeError ("closed") at once, as does every later
one; ``get_batch`` raises StopIteration, so iteration ends. Outputs or errors
set afterwards on a batch taken before close() are accepted and discarded.

Call loop::

    batcher = DynamicBatcher(max_pending=256)
    # each actor thread:                    # the inference thread:
    out = batcher.compute({"obs": obs})     for batch in batcher:
    action = out["action"]                      try:
                                                    batch.set_outputs(model(batch.inputs))
                                                except Exception as e:
                                                    batch.set_error(repr(e))
                                                    raise
    # shutdown (any thread):
    batcher.close()

All DynamicBatcher methods may be called from any thread.
)doc";

constexpr const char* kBatchDoc = R"doc(
Requests taken together by ``DynamicBatcher.get_batch``: ``inputs`` holds them
stacked along axis 0, ``len(batch)`` is their number. Resolve it exactly once,
with ``set_outputs`` or ``set_error``; dropping it unresolved fails its
callers with RuntimeError. A second ``set_outputs`` / ``set_error`` raises
RuntimeError.
)doc";

constexpr const char* kGetBatchDoc = R"doc(
Wait until at least ``min_items`` requests are pending, then take up to
``max_items`` of them (oldest first; ``None``: all pending) as one Batch.

With a ``timeout`` (seconds), a call still short of ``min_items`` when it
expires takes the requests pending then, or raises TimeoutError if there are
none. Raises StopIteration once closed. Requires
``1 <= min_items <= max_pending`` and ``max_items >= min_items`` (ValueError
otherwise).
)doc";

constexpr const char* kComputeDoc = R"doc(
Submit one row and wait for its outputs: ``{k: v[i]}`` of the arrays its
batch's ``set_outputs`` got.

Raises ValueError (schema mismatch, naming the key), TypeError (not a dict
of str to ndarray, or an unsupported dtype), RuntimeError (the batch failed:
bad outputs, set_error, dropped; or the batcher is or gets closed),
TimeoutError (``timeout`` seconds, for the whole call, ran out; a request
not yet taken is withdrawn, one inside a batch has its row discarded).
)doc";

py::dict compute(DynamicBatcher& batcher, const py::object& inputs, std::optional<double> timeout) {
  ArrayMap arrays = array_map_from_dict(inputs);
  ArrayMap outputs;
  {
    py::gil_scoped_release nogil;
    outputs = batcher.compute(std::move(arrays), to_timeout(timeout));
  }
  return array_map_to_dict(outputs);
}

std::unique_ptr<Batch> get_batch(DynamicBatcher& batcher, std::int64_t min_items,
                                 std::optional<std::int64_t> max_items, std::optional<double> timeout) {
  try {
    py::gil_scoped_release nogil;
    // At most max_pending requests are ever pending, so that cap means "all".
    return batcher.get_batch(min_items, max_items.value_or(batcher.max_pending()), to_timeout(timeout));
  } catch (const QueueClosed& e) {
    throw py::stop_iteration(e.what());
  }
}

void set_outputs(Batch& batch, const py::object& outputs) {
  ArrayMap arrays;
  try {
    arrays = array_map_from_dict(outputs);
  } catch (const std::exception& e) {  // not a dict of arrays: its callers must not wait for rows
    batch.set_error(std::string("set_outputs got unusable outputs: ") + e.what());
    throw;
  }
  py::gil_scoped_release nogil;  // released before `arrays` is destroyed
  batch.set_outputs(arrays);
}

}  // namespace

void bind_dynamic_batcher(py::module_& m) {
  py::class_<Batch>(m, "Batch", kBatchDoc)
      .def_property_readonly(
          "inputs", [](const Batch& batch) { return array_map_to_dict(batch.inputs()); },
          "The requests' arrays stacked along a new axis 0 (each access gives new views of the same buffers).")
      .def("__len__", &Batch::size, "Number of requests (rows) in the batch.")
      .def_property_readonly("resolved", &Batch::resolved, "Whether set_outputs or set_error was called.")
      .def("set_outputs", &set_outputs, py::arg("outputs"),
           "Hand request i the row ``v[i]`` of every array in ``outputs`` (dict of str to ndarray, axis 0 of "
           "length len(batch)). Otherwise the callers fail at once and this raises ValueError (wrong batch "
           "size) or TypeError (not a dict of arrays).")
      .def("set_error", &Batch::set_error, py::arg("message"),
           "Fail every request of the batch: its callers raise RuntimeError whose text includes ``message``.")
      .def("__repr__", [](const Batch& batch) {
        return "Batch(size=" + std::to_string(batch.size()) + ", resolved=" + (batch.resolved() ? "True" : "False") +
               ")";
      });

  py::class_<DynamicBatcher>(m, "DynamicBatcher", kBatcherDoc)
      .def(py::init<std::int64_t>(), py::arg("max_pending") = 1024,
           "max_pending: the most requests waiting to be batched (>= 1); compute blocks beyond it.")
      .def("compute", &compute, py::arg("inputs"), py::arg("timeout") = py::none(), kComputeDoc)
      .def("get_batch", &get_batch, py::arg("min_items") = 1, py::arg("max_items") = py::none(),
           py::arg("timeout") = py::none(), kGetBatchDoc)
      .def("close", &DynamicBatcher::close,
           "Idempotent; fails every unfinished request and wakes every blocked compute and get_batch.")
      .def("__len__", &DynamicBatcher::pending, "Requests waiting to be taken into a batch.")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", [](DynamicBatcher& batcher) { return get_batch(batcher, 1, std::nullopt, std::nullopt); },
           "get_batch() with its defaults: blocks for one request, takes all pending; StopIteration once closed.")
      .def_property_readonly("closed", &DynamicBatcher::is_closed)
      .def_property_readonly("max_pending", &DynamicBatcher::max_pending)
      .def("__repr__", [](const DynamicBatcher& batcher) {
        return "DynamicBatcher(max_pending=" + std::to_string(batcher.max_pending()) +
               ", pending=" + std::to_string(batcher.pending()) +
               ", closed=" + (batcher.is_closed() ? "True" : "False") + ")";
      });
}

}  // namespace beast
