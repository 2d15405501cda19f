// Python binding of beast::EnvClient. Every call that touches the socket runs
// with the GIL released. Errors map to Python as (this file registers the
// translator for the socket and wire errors of the whole module):
//   RemoteError (the server's ERROR: an env raised)   -> RuntimeError (message = traceback)
//   AuthError (the server refused the token)          -> PermissionError
//   ConnectionClosed, SocketError, ProtocolError      -> ConnectionError
//   SocketTimeout                                     -> TimeoutError
//   actions that do not fit the spec                  -> ValueError / TypeError
#include <optional>
#include <string>
#include <utility>

#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "bindings/numpy.h"
#include "net/env_client.h"

namespace beast {
namespace {

constexpr const char* kClientDoc = R"doc(
A blocking client of an env server: K environments stepped as one batch.

Call loop::

    client = EnvClient("127.0.0.1:4000", timeout=30.0)   # connects, reads the spec
    client.num_envs, client.observation_shape, client.num_actions
    out = client.reset(seed=0)             # {"obs": [K, *obs_shape]}
    while ...:
        out = client.step(actions)         # actions [K, *action_shape]
        # {"obs", "reward", "terminated", "truncated"}, each [K, ...], next-step autoreset
    client.close()

``timeout`` (seconds; None: for ever) bounds the connect and handshake, and
each request (its send and its reply). ``auth_token`` answers a server that
asks for one (HMAC-SHA256 over its challenge; the token is never sent); a
server that refuses it raises PermissionError.
An env that raises on the server gives RuntimeError with its traceback (the
client stays usable). A dead or unreachable server gives ConnectionError, a
slow one TimeoutError; after either the client is closed and every later
call raises ConnectionError.
)doc";

py::tuple shape_tuple(const Shape& shape) {
  py::tuple t(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) t[i] = py::int_(shape[i]);
  return t;
}

py::dict reset(EnvClient& client, std::optional<std::int64_t> seed) {
  ArrayMap result;
  {
    py::gil_scoped_release nogil;
    result = client.reset(seed);
  }
  return array_map_to_dict(result);
}

// RESET or ATTR with arrays the caller built (beast/poly/wire_values.py).
py::dict request(EnvClient& client, const py::dict& arrays, bool attr) {
  const ArrayMap request = array_map_from_dict(arrays);
  ArrayMap result;
  {
    py::gil_scoped_release nogil;
    result = attr ? client.attr(request) : client.reset(request);
  }
  return array_map_to_dict(result);
}

py::dict step(EnvClient& client, const py::object& actions) {
  // Safe casts only (int32 -> int64, say); a float action for a Discrete
  // space is a bug to report, not to truncate.
  const py::dtype want = to_numpy_dtype(client.spec().action.dtype);
  py::array array = py::array::ensure(actions);
  if (!array) throw py::error_already_set();
  if (!array.dtype().is(want) && !array.dtype().equal(want)) {
    auto numpy = py::module_::import("numpy");
    if (!numpy.attr("can_cast")(array.dtype(), want, "same_kind").cast<bool>()) {
      throw py::type_error("step: actions of dtype " + py::str(array.dtype()).cast<std::string>() +
                           " cannot be cast safely to the spec's " + py::str(want).cast<std::string>());
    }
    array = array.attr("astype")(want);
  }
  Array action = array_from_numpy(array, "actions");
  ArrayMap result;
  {
    py::gil_scoped_release nogil;
    result = client.step(action);
  }
  return array_map_to_dict(result);
}

}  // namespace

void bind_env_client(py::module_& m) {
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const RemoteError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const AuthError& e) {
      PyErr_SetString(PyExc_PermissionError, e.what());
    } catch (const SocketTimeout& e) {
      PyErr_SetString(PyExc_TimeoutError, e.what());
    } catch (const SocketError& e) {
      PyErr_SetString(PyExc_ConnectionError, e.what());
    } catch (const ProtocolError& e) {
      PyErr_SetString(PyExc_ConnectionError, (std::string("protocol error: ") + e.what()).c_str());
    }
  });

  py::class_<EnvClient>(m, "EnvClient", kClientDoc)
      .def(py::init([](const std::string& address, std::optional<double> timeout, std::uint64_t max_frame_bytes,
                       std::optional<std::string> auth_token) {
             py::gil_scoped_release nogil;
             return std::make_unique<EnvClient>(address, to_timeout(timeout), max_frame_bytes,
                                                auth_token.value_or(""));
           }),
           py::arg("address"), py::arg("timeout") = 30.0, py::kw_only(),
           py::arg("max_frame_bytes") = kDefaultMaxFrameBytes, py::arg("auth_token") = py::none(),
           "Connect to `address` (\"HOST:PORT\" or \"unix:/path\"), authenticate with `auth_token` if the "
           "server asks, and read the spec, within `timeout` seconds.")
      .def("reset", &reset, py::arg("seed") = py::none(),
           "Reset all K envs (env i gets seed + i); returns {\"obs\": [K, ...]}.")
      .def("reset_with", [](EnvClient& c, const py::dict& arrays) { return request(c, arrays, false); },
           py::arg("arrays"),
           "RESET with these arrays (seed, seeded, option/...: csrc/net/wire.h); returns {\"obs\": [K, ...], ...}.")
      .def("attr", [](EnvClient& c, const py::dict& arrays) { return request(c, arrays, true); },
           py::arg("arrays"), "ATTR with these arrays (op, name, ...: csrc/net/wire.h); returns the ATTR_RESULT's.")
      .def("step", &step, py::arg("actions"),
           "Step all K envs; returns obs, reward, terminated, truncated (each [K, ...]).")
      .def("close", [](EnvClient& c) {
        py::gil_scoped_release nogil;
        c.close();
      }, "Idempotent; tells the server, then closes the socket. A request blocked in another thread "
         "(a hung server) is aborted: it raises ConnectionError at once.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](EnvClient& c, py::args) {
        py::gil_scoped_release nogil;
        c.close();
      })
      .def_property_readonly("address", &EnvClient::address)
      .def_property_readonly("closed", &EnvClient::is_closed)
      .def_property_readonly("num_envs", [](const EnvClient& c) { return c.spec().num_envs; })
      .def_property_readonly("num_actions", [](const EnvClient& c) { return c.spec().num_actions; })
      .def_property_readonly("observation_shape",
                             [](const EnvClient& c) { return shape_tuple(c.spec().observation.shape); })
      .def_property_readonly("observation_dtype",
                             [](const EnvClient& c) { return to_numpy_dtype(c.spec().observation.dtype); })
      .def_property_readonly("action_shape", [](const EnvClient& c) { return shape_tuple(c.spec().action.shape); })
      .def_property_readonly("action_dtype", [](const EnvClient& c) { return to_numpy_dtype(c.spec().action.dtype); })
      .def("__repr__", [](const EnvClient& c) {
        return "EnvClient(address='" + c.address() + "', num_envs=" + std::to_string(c.spec().num_envs) + ")";
      });
}

}  // namespace beast
