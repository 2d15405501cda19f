// Python binding of beast::ActorPool. The pool's threads never touch Python;
// start(), close() and the destructor run with the GIL released (close()
// waits for threads that may wait on a Python inference thread). The pool
// keeps its queue and batcher alive for as long as it lives. Errors map to
// Python as:
//   bad arguments -> ValueError      start() after close() -> RuntimeError
//   check(): the first thread failure -> RuntimeError naming the connection
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/stl.h>

#include "actor/actor_pool.h"
#include "bindings/bindings.h"
#include "bindings/numpy.h"
#include "core/batching_queue.h"
#include "core/dynamic_batcher.h"

namespace beast {
namespace {

namespace py = pybind11;

constexpr const char* kPoolDoc = R"doc(
C++ actor threads: one per env server address, each stepping that server's K
envs with central inference and writing ``[T+1, K]`` unrolls into a queue.

Each thread: connect, ``reset(seed + i * K)`` (connection i), then loop:
``inference_batcher.compute({"obs": [K, *obs_shape], "reward": [K] f32,
"terminated": [K] bool, "truncated": [K] bool, **state})``, which must return
exactly the keys of ``agent_spec`` (``{key: (dtype, shape)}``, per env; the
inference side stacks n rows as ``[n, K, ...]``); write entry t; step the envs
with ``outputs[action_key]``. ``state_keys`` name outputs fed back as inputs to
the next step (a recurrent core state: zeros at first; the unroll records the
value entering each step). Every T steps it enqueues one unroll, the env half
(obs, reward, terminated, truncated, episode_return, episode_step) plus every
agent key, each ``[T+1, K, ...]`` (entry 0 repeats the previous unroll's last
entry; episode_return and episode_step restart at the step after an episode
ended, or after a game ended when the env sends ``game_over``, as in
``beast.acting.UnrollWorker``). Create the queue as ``BatchingQueue(capacity,
batch_dim=1, stack=False)`` so batches are ``[T+1, B*K, ...]``. Every server
must serve the same K and specs, with actions of the agent's action shape.

Lost servers: a connection that drops, or a server that sends no reply
within ``connect_timeout`` (dead, or hung alive), drops that connection's
unfinished unroll and reconnects with backoff (50 ms doubling to 2 s) to the
connection's address, which ``replace_address(old, new)`` can point at a
replacement; the new session resets with a fresh seed (``seed + (s * N + i)
* K`` for session s of connection i of N) and fresh episode sums and state.
``drain_events()`` returns the lines saying so; ``num_reconnects``,
``num_dropped_unrolls`` and ``num_connected`` count it. The pool fails only
when no connection has been up for ``unreachable_timeout`` seconds.

Errors: the first other failure in any thread (a first connect that fails,
an env that raised, bad inference outputs, a spec that differs, no server
reachable) is kept and stops the other threads at once; ``check()`` raises
it as RuntimeError naming the connection and its address (poll it from the
main loop). A thread whose
``compute`` or ``enqueue`` finds the batcher or queue closed just stops.

Shutdown: ``close()`` (idempotent) stops and joins every thread. It never
closes the batcher or queue (the caller owns them). An env request or connect
in flight is aborted at once; a thread blocked in a full queue notices
``close()`` within 0.1 s; one in ``compute`` only when inference answers or
the batcher closes. So::

    pool.close(); batcher.close(); queue.close()   # while inference is served
    batcher.close(); pool.close(); queue.close()   # always safe

Dropping a pool that was not closed closes it, which waits like ``close()``:
close it (or its batcher) before the interpreter exits.

Call loop::

    queue = BatchingQueue(capacity=8, batch_dim=1, stack=False)
    batcher = DynamicBatcher()
    spec = RolloutSpec.build(obs_space, model)       # beast.rollout
    pool = ActorPool(T, queue, batcher, ["127.0.0.1:4000", "127.0.0.1:4001"], seed=0,
                     agent_spec={k: (f.dtype, f.shape) for k, f in spec.agent.items()},
                     action_key="action")
    pool.start()
    # inference thread: for batch in batcher: batch.set_outputs(model(batch.inputs))
    # learner thread:   for rollout in queue: learner.step(rollout)
    while training:
        pool.check()            # raises RuntimeError if any actor thread failed
        for line in pool.drain_events():
            log(line)           # "connection 0 (HOST:PORT) lost: ...; reconnecting", ...
    batcher.close(); pool.close(); queue.close()
)doc";

using PoolHolder = std::unique_ptr<ActorPool, ReleaseGilDelete<ActorPool>>;

}  // namespace

void bind_actor_pool(py::module_& m) {
  py::class_<ActorPool, PoolHolder>(m, "ActorPool", kPoolDoc)
      .def(py::init([](std::int64_t unroll_length, BatchingQueue& learner_queue, DynamicBatcher& inference_batcher,
                       std::vector<std::string> env_server_addresses, std::int64_t seed,
                       std::optional<double> connect_timeout, const py::dict& agent_spec, std::string action_key,
                       std::vector<std::string> state_keys, std::optional<std::string> auth_token,
                       std::optional<double> unreachable_timeout) {
             Timeout timeout;
             if (connect_timeout) timeout = std::chrono::duration<double>(*connect_timeout);
             AgentSpec spec = specs_from_dict(agent_spec, "ActorPool: agent_spec");
             return PoolHolder(new ActorPool(unroll_length, &learner_queue, &inference_batcher,
                                             std::move(env_server_addresses), seed, timeout, std::move(spec),
                                             std::move(action_key), std::move(state_keys), auth_token.value_or(""),
                                             unreachable_timeout.value_or(std::numeric_limits<double>::infinity())));
           }),
           py::arg("unroll_length"), py::arg("learner_queue"), py::arg("inference_batcher"),
           py::arg("env_server_addresses"), py::arg("seed") = 0, py::arg("connect_timeout") = 30.0,
           py::kw_only(), py::arg("agent_spec"), py::arg("action_key"),
           py::arg("state_keys") = std::vector<std::string>{}, py::arg("auth_token") = py::none(),
           py::arg("unreachable_timeout") = ActorPool::kDefaultUnreachableSeconds,
           py::keep_alive<1, 3>(), py::keep_alive<1, 4>(),
           "unroll_length T >= 1; one thread per address (\"HOST:PORT\" or \"unix:/path\"); connection i "
           "resets with seed + i * K. connect_timeout (seconds; None: for ever) bounds the connect and each "
           "env reply. agent_spec: {key: (dtype, per-env shape)} of the inference outputs (the rollout's "
           "agent half); action_key: the one sent to the envs; state_keys: outputs fed back to the next "
           "compute() (zeros at first), recorded as the value entering each step. auth_token (None: none) "
           "answers env servers that ask for one. unreachable_timeout (seconds; None: for ever; 0: fail at "
           "the first lost server) is how long the pool may go with no connection up. Nothing connects "
           "before start().")
      .def("start", [](ActorPool& pool) {
        py::gil_scoped_release nogil;
        pool.start();
      }, "Spawn the threads. Idempotent; RuntimeError after close().")
      .def("close", [](ActorPool& pool) {
        py::gil_scoped_release nogil;
        pool.close();
      }, "Idempotent; stop and join every thread (see the class doc for the shutdown order).")
      .def("check", [](const ActorPool& pool) {
        const std::string error = pool.error();
        if (!error.empty()) throw std::runtime_error("ActorPool " + error);
      }, "Raise RuntimeError with the first thread failure, if any; otherwise return None.")
      .def_property_readonly("error", [](const ActorPool& pool) -> std::optional<std::string> {
        std::string error = pool.error();
        if (error.empty()) return std::nullopt;
        return "ActorPool " + error;
      }, "The first thread failure (what check() raises), or None.")
      .def_property_readonly("num_steps", &ActorPool::num_steps,
                             "Env transitions so far, over all connections (each step adds K).")
      .def_property_readonly("num_unrolls", &ActorPool::num_unrolls, "Unrolls enqueued so far.")
      .def_property_readonly("running", &ActorPool::running, "Whether any actor thread is still running.")
      .def_property_readonly("unroll_length", &ActorPool::unroll_length)
      .def_property_readonly("addresses", &ActorPool::addresses, "Each connection's current address.")
      .def_property_readonly("num_reconnects", &ActorPool::num_reconnects,
                             "Sessions opened after a lost one, over all connections.")
      .def_property_readonly("num_dropped_unrolls", &ActorPool::num_dropped_unrolls,
                             "Unfinished unrolls dropped with a lost connection.")
      .def_property_readonly("num_connected", &ActorPool::num_connected, "Connections up now.")
      .def("replace_address", &ActorPool::replace_address, py::arg("old_address"), py::arg("new_address"),
           "Point every connection at old_address to new_address (a replacement server) and wake those "
           "waiting to reconnect; returns how many were pointed over.")
      .def("drain_events", &ActorPool::drain_events,
           "The pool's event lines since the last call (lost, reconnected, replaced), oldest first.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](ActorPool& pool, py::args) {
        py::gil_scoped_release nogil;
        pool.close();
      })
      .def("__repr__", [](const ActorPool& pool) {
        return "ActorPool(unroll_length=" + std::to_string(pool.unroll_length()) +
               ", connections=" + std::to_string(pool.addresses().size()) +
               ", running=" + (pool.running() ? "True" : "False") +
               ", num_steps=" + std::to_string(pool.num_steps()) + ")";
      });
}

}  // namespace beast
