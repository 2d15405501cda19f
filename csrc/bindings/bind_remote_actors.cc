// Python bindings of the actor protocol's two ends: beast::ActorServer (the
// learner's) and beast::ActorClient (a remote actor's). Blocking calls run
// with the GIL released. Errors map as the env client's do (socket and wire
// errors: ConnectionError / TimeoutError; the learner's ERROR: RuntimeError;
// a refused token: PermissionError); a learner run with other flags
// (SpecMismatch) and bad arguments: ValueError.
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "bindings/numpy.h"
#include "core/batching_queue.h"
#include "net/actor_client.h"
#include "net/actor_server.h"

namespace beast {
namespace {

namespace py = pybind11;

constexpr const char* kServerDoc = R"doc(
The learner's end of the actor protocol (csrc/net/actor_server.h): accepts up
to ``max_actors`` remote actors, checks each UNROLL against ``schema``
(``{key: (dtype, per-env shape)}``, every one ``[T+1, K, ...]`` on the wire),
adds ``actor_id`` int64 ``[1, K]`` and enqueues it into ``queue``
(``BatchingQueue(capacity, batch_dim=1, stack=False)``, which it never closes).
Weights go out only when asked, each actor's from its own writer thread; a
message still unsent when the next one comes is replaced by it.

Call loop::

    server = ActorServer("127.0.0.1:0", schema, T, K, n, max_actors=N, queue=queue)
    while training:
        for actor in server.take_joined():          # a new or reconnected actor
            server.send_weights(actor, version, flat_float32)
        batch = queue.dequeue(...)                  # batch["actor_id"][0]: each column's actor
        ...                                         # the sync controller decides who gets weights
        for line in server.drain_events(): log(line)
    server.close(); queue.close()
)doc";

constexpr const char* kClientDoc = R"doc(
A remote actor's end of the actor protocol (csrc/net/actor_client.h).
Connecting checks the learner's K, T and weight count against this actor's
(ValueError naming both on a mismatch); ``poll_weights`` returns the newest
checked ``(version, float32 [n])`` that arrived, or None; a bad WEIGHTS frame
(size, dtype, an old version) raises ConnectionError saying why.

    client = ActorClient(address, K, T, n, timeout=30.0)
    version, weights = client.poll_weights(None)        # wait for the first
    while True:
        client.send_unroll(unroll)                      # {key: [T+1, K, ...]}
        newest = client.poll_weights(0.0)               # whatever came meanwhile
)doc";

using ServerHolder = std::unique_ptr<ActorServer, ReleaseGilDelete<ActorServer>>;

}  // namespace

void bind_remote_actors(py::module_& m) {
  py::class_<ActorServer, ServerHolder>(m, "ActorServer", kServerDoc)
      .def(py::init([](const std::string& address, const py::dict& schema, std::int64_t unroll_length,
                       std::int64_t num_envs, std::int64_t weights_size, std::int64_t max_actors,
                       BatchingQueue& queue, std::optional<std::string> auth_token,
                       std::optional<double> handshake_timeout, std::optional<double> idle_timeout,
                       std::optional<double> send_timeout) {
             ActorServerOptions options;
             options.auth_token = auth_token.value_or("");
             options.handshake_timeout = to_timeout(handshake_timeout);
             options.idle_timeout = to_timeout(idle_timeout);
             options.send_timeout = to_timeout(send_timeout);
             RolloutSchema specs = specs_from_dict(schema, "ActorServer: schema");
             py::gil_scoped_release nogil;
             return ServerHolder(new ActorServer(address, std::move(specs), unroll_length, num_envs, weights_size,
                                                 max_actors, &queue, std::move(options)));
           }),
           py::arg("address"), py::arg("schema"), py::arg("unroll_length"), py::arg("num_envs"),
           py::arg("weights_size"), py::kw_only(), py::arg("max_actors"), py::arg("queue"),
           py::arg("auth_token") = py::none(), py::arg("handshake_timeout") = 10.0,
           py::arg("idle_timeout") = 600.0, py::arg("send_timeout") = 60.0, py::keep_alive<1, 8>(),
           "Bind `address` (\"HOST:PORT\"; port 0: a free one) and accept actors. A non-loopback address "
           "needs auth_token. Timeouts in seconds (None: none).")
      .def("send_weights", [](ActorServer& server, std::int64_t actor_id, std::int64_t version, py::handle weights) {
             auto blob = std::make_shared<const Array>(array_from_numpy(weights, "weights"));
             py::gil_scoped_release nogil;
             return server.send_weights(actor_id, version, std::move(blob));
           }, py::arg("actor_id"), py::arg("version"), py::arg("weights"),
           "Queue WEIGHTS for that actor (float32 [weights_size], kept alive until sent); False if no actor "
           "holds the id now.")
      .def("take_joined", &ActorServer::take_joined, "Actor ids taken since the last call (each needs weights).")
      .def("drain_events", &ActorServer::drain_events, "Event lines since the last call, oldest first.")
      .def_property_readonly("address", &ActorServer::address)
      .def_property_readonly("num_connected", &ActorServer::num_connected, "Actors connected now.")
      .def_property_readonly("num_sessions", &ActorServer::num_sessions, "Actors admitted, ever.")
      .def_property_readonly("num_unrolls", &ActorServer::num_unrolls, "Unrolls enqueued so far.")
      .def_property_readonly("bytes_sent", &ActorServer::bytes_sent, "WEIGHTS bytes written, headers included.")
      .def_property_readonly("weight_messages", &ActorServer::weight_messages, "WEIGHTS frames written.")
      .def_property_readonly("weights_replaced", &ActorServer::weights_replaced,
                             "WEIGHTS replaced by a newer message before they were written.")
      .def_property_readonly("bytes_sent_per_actor", &ActorServer::bytes_sent_per_actor,
                             "WEIGHTS bytes written to each actor id, over all its sessions.")
      .def_property_readonly("max_actors", &ActorServer::max_actors)
      .def("close", [](ActorServer& server) {
        py::gil_scoped_release nogil;
        server.close();
      }, "Idempotent: stop accepting, wake and join every connection (the queue stays open).")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](ActorServer& server, py::args) {
        py::gil_scoped_release nogil;
        server.close();
      });

  py::class_<ActorClient>(m, "ActorClient", kClientDoc)
      .def(py::init([](const std::string& address, std::int64_t num_envs, std::int64_t unroll_length,
                       std::int64_t weights_size, std::optional<double> timeout, std::optional<std::string> auth_token) {
             py::gil_scoped_release nogil;
             return std::make_unique<ActorClient>(address, to_timeout(timeout), auth_token.value_or(""), num_envs,
                                                  unroll_length, weights_size);
           }),
           py::arg("address"), py::arg("num_envs"), py::arg("unroll_length"), py::arg("weights_size"),
           py::kw_only(), py::arg("timeout") = 30.0, py::arg("auth_token") = py::none(),
           "Connect, authenticate if asked, and check the learner's ACTOR_SPEC, within `timeout` seconds "
           "(which also bounds each send).")
      .def("send_unroll", [](ActorClient& client, const py::dict& unroll) {
             ArrayMap arrays = array_map_from_dict(unroll);
             py::gil_scoped_release nogil;
             client.send_unroll(arrays);
           }, py::arg("unroll"), "Send one unroll ({key: [T+1, K, ...]} arrays).")
      .def("poll_weights", [](ActorClient& client, std::optional<double> wait) -> py::object {
             std::optional<std::pair<std::int64_t, Array>> newest;
             {
               py::gil_scoped_release nogil;
               newest = client.poll_weights(deadline_after(to_timeout(wait), "poll_weights"));
             }
             if (!newest) return py::none();
             return py::make_tuple(newest->first, array_to_numpy(newest->second));
           }, py::arg("wait"),
           "The newest (version, float32 [n]) weights that arrived, waiting up to `wait` seconds (None: "
           "for ever) for the first; None if none came.")
      .def("close", [](ActorClient& client) {
        py::gil_scoped_release nogil;
        client.close();
      }, "Idempotent: CLOSE (best effort), then close the socket.")
      .def_property_readonly("actor_id", &ActorClient::actor_id)
      .def_property_readonly("version", &ActorClient::version, "The newest accepted weights' version (-1: none).")
      .def_property_readonly("bytes_received", &ActorClient::bytes_received, "WEIGHTS bytes read.");
}

}  // namespace beast
