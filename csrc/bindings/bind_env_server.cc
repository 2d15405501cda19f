// Python binding of beast::EnvServer: the C++ server does all socket I/O and
// decoding on its own threads, without the GIL; it calls into Python only to
// make a session and to reset/step its envs, taking the GIL for just that call.
//
// A session is any Python object with
//   spec() -> dict(observation_shape, observation_dtype, action_shape,
//                  action_dtype, num_actions, num_envs)
//   reset(request: dict[str, np.ndarray]) -> dict[str, np.ndarray]
//                    (RESET's arrays, checked: seed, seeded, option/...; returns {"obs": [K, ...], ...})
//   step(action: np.ndarray) -> dict[str, np.ndarray]     (obs, reward, terminated, truncated)
//   attr(request: dict[str, np.ndarray]) -> dict[str, np.ndarray]  (optional: ATTR -> ATTR_RESULT)
//   close() (optional)
// made by the `make_session()` callable, once per client connection. A Python
// exception in any of them goes back to that client as an ERROR frame with
// the formatted traceback (beast/poly/env_server.py builds the sessions).
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "bindings/numpy.h"
#include "net/env_server.h"

namespace beast {
namespace {

constexpr const char* kServerDoc = R"doc(
Hosts environments for remote actors (the wire protocol of csrc/net/wire.h).

Each client connection gets its own session from ``make_session()``; the
server's C++ threads read and decode frames without the GIL and call the
session's ``reset``/``step`` (holding the GIL only for those calls). An
exception there reaches that client as an ERROR (its traceback) and the
server carries on; a malformed frame closes that connection only, with the
reason logged to stderr.

The keyword options bound what a client can make the server hold (see
csrc/net/wire.h): ``max_frame_bytes``, ``max_connections`` (one more is
answered with an error and closed), ``handshake_timeout``, ``idle_timeout``
and ``send_timeout`` (seconds; None: for ever). With ``auth_token`` clients
must prove the token by HMAC-SHA256 challenge-response before any env is
made; a non-loopback address without one raises ValueError.

Usage::

    server = EnvServer("127.0.0.1:0", make_session)
    print(server.address)        # the bound address, e.g. 127.0.0.1:43121
    ...
    server.close()               # stops accepting, ends every connection
)doc";

// The Python traceback of the exception being handled, as one string.
std::string format_exception(py::error_already_set& e) {
  try {
    auto lines = py::module_::import("traceback").attr("format_exception")(e.type(), e.value(), e.trace());
    return py::str("").attr("join")(lines).cast<std::string>();
  } catch (const std::exception&) {
    return e.what();
  }
}

// Runs fn() under the GIL, turning a Python exception into EnvError.
template <typename Fn>
auto with_gil(Fn fn) {
  py::gil_scoped_acquire gil;
  try {
    return fn();
  } catch (py::error_already_set& e) {
    throw EnvError(format_exception(e));
  } catch (const py::cast_error& e) {
    throw EnvError(std::string("the environment returned an unusable value: ") + e.what());
  } catch (const py::type_error& e) {  // not a dict of arrays, unsupported dtype
    throw EnvError(std::string("the environment returned an unusable value: ") + e.what());
  }
}

// The server makes and destroys each session on its connection thread, a
// C++ thread with no Python thread state of its own. Left alone, every
// gil_scoped_acquire there would create a PyThreadState and the matching
// release destroy it again: a few microseconds of allocation and teardown per
// reset/step. So the session pins the thread state for its lifetime (one
// extra reference, taken on the thread that makes it and dropped in its
// destructor on that same thread); each call then only takes and releases
// the GIL.
class PySession : public EnvSession {
 public:
  explicit PySession(py::object session)  // GIL held, on the connection thread
      : session_(std::move(session)), owner_(std::this_thread::get_id()) {
    py::gil_scoped_acquire pin;
    pin.inc_ref();  // outlives `pin`: released in the destructor
  }

  ~PySession() override {
    py::gil_scoped_acquire gil;
    try {
      if (py::hasattr(session_, "close")) session_.attr("close")();
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("beast env server: closing a session");
    }
    session_ = py::object();
    // Drops the pin; `gil` going out of scope then frees the thread state.
    // (On another thread the pinned state is not ours to touch: leave it.)
    if (std::this_thread::get_id() == owner_) gil.dec_ref();
  }

  EnvSpec spec() override {
    return with_gil([&] {
      py::dict d = session_.attr("spec")();
      auto dtype_of = [&](const char* key) {
        return from_numpy_dtype(py::dtype::from_args(d[key]), key);
      };
      EnvSpec spec;
      spec.observation = {dtype_of("observation_dtype"), d["observation_shape"].cast<Shape>()};
      spec.action = {dtype_of("action_dtype"), d["action_shape"].cast<Shape>()};
      spec.num_actions = d["num_actions"].cast<std::int64_t>();
      spec.num_envs = d["num_envs"].cast<std::int64_t>();
      return spec;
    });
  }

  ArrayMap reset(const ArrayMap& request) override {
    return with_gil([&] { return array_map_from_dict(session_.attr("reset")(array_map_to_dict(request))); });
  }

  ArrayMap attr(const ArrayMap& request) override {
    return with_gil([&] {
      if (!py::hasattr(session_, "attr")) return EnvSession::attr(request);
      return array_map_from_dict(session_.attr("attr")(array_map_to_dict(request)));
    });
  }

  ArrayMap step(const ArrayMap& request) override {
    return with_gil([&] { return array_map_from_dict(session_.attr("step")(array_to_numpy(request.at("action")))); });
  }

 private:
  py::object session_;
  const std::thread::id owner_;
};

// Owns the server; closes it with the GIL released, since its threads may be
// waiting for the GIL inside a session call.
class PyEnvServer {
 public:
  PyEnvServer(const std::string& address, py::object make_session, EnvServerOptions options) {
    // The callable is dropped by whichever thread destroys the server's
    // factory; take the GIL for that.
    std::shared_ptr<py::object> make(new py::object(std::move(make_session)), [](py::object* p) {
      py::gil_scoped_acquire gil;
      delete p;
    });
    SessionFactory factory = [make]() -> std::unique_ptr<EnvSession> {
      return with_gil([&] { return std::make_unique<PySession>((*make)()); });
    };
    server_ = std::make_unique<EnvServer>(address, std::move(factory), std::move(options));
  }

  ~PyEnvServer() { close(); }  // pybind11 destroys holders with the GIL held

  void close() {
    py::gil_scoped_release nogil;
    server_->close();
  }

  EnvServer& server() { return *server_; }

 private:
  std::unique_ptr<EnvServer> server_;
};

std::optional<double> seconds_of(const Timeout& timeout) {
  if (!timeout) return std::nullopt;
  return timeout->count();
}

}  // namespace

void bind_env_server(py::module_& m) {
  py::class_<PyEnvServer>(m, "EnvServer", kServerDoc)
      .def(py::init([](const std::string& address, py::object make_session, std::uint64_t max_frame_bytes,
                       std::int64_t max_connections, std::optional<double> handshake_timeout,
                       std::optional<double> idle_timeout, std::optional<double> send_timeout,
                       std::optional<std::string> auth_token) {
             EnvServerOptions options;
             options.max_frame_bytes = max_frame_bytes;
             options.max_connections = max_connections;
             options.handshake_timeout = to_timeout(handshake_timeout);
             options.idle_timeout = to_timeout(idle_timeout);
             options.send_timeout = to_timeout(send_timeout);
             options.auth_token = auth_token.value_or("");
             return std::make_unique<PyEnvServer>(address, std::move(make_session), std::move(options));
           }),
           py::arg("address"), py::arg("make_session"), py::kw_only(),
           py::arg("max_frame_bytes") = kDefaultMaxFrameBytes,
           py::arg("max_connections") = kDefaultMaxConnections,
           py::arg("handshake_timeout") = seconds_of(EnvServerOptions{}.handshake_timeout),
           py::arg("idle_timeout") = seconds_of(EnvServerOptions{}.idle_timeout),
           py::arg("send_timeout") = seconds_of(EnvServerOptions{}.send_timeout),
           py::arg("auth_token") = py::none(),
           "Bind `address` (\"HOST:PORT\", port 0 for a free port, or \"unix:/path\") and start serving. "
           "Raises ConnectionError if it cannot bind, ValueError for a bad option or a non-loopback address "
           "without auth_token.")
      .def_property_readonly("address", [](PyEnvServer& s) { return s.server().address(); },
                             "The bound address, e.g. \"127.0.0.1:43121\".")
      .def_property_readonly("num_connections", [](PyEnvServer& s) { return s.server().num_connections(); })
      .def("close", &PyEnvServer::close, "Idempotent; stops accepting, ends every connection, closes every session.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyEnvServer& s, py::args) { s.close(); })
      .def("__repr__", [](PyEnvServer& s) { return "EnvServer(address='" + s.server().address() + "')"; });
}

}  // namespace beast
