#include <pybind11/pybind11.h>

#include "bindings/bindings.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "Beast's C++ core (import it through beast.poly).";
  beast::bind_batching_queue(m);
  beast::bind_dynamic_batcher(m);
  beast::bind_env_client(m);  // registers the socket/wire error translator the server shares
  beast::bind_env_server(m);
  beast::bind_actor_pool(m);
  beast::bind_auth(m);
  beast::bind_remote_actors(m);
}
