// Python binding of the handshake's HMAC-SHA256 (csrc/net/auth.h), so tests
// and tools can check it against published vectors and compute a MAC the
// way an env client does.
#include <string>

#include "bindings/bindings.h"
#include "net/auth.h"

namespace beast {

namespace py = pybind11;

void bind_auth(py::module_& m) {
  m.def(
      "hmac_sha256",
      [](const py::bytes& key, const py::bytes& message) {
        const std::string k = key;
        const std::string text = message;
        const Digest mac = hmac_sha256(k, text.data(), text.size());
        return py::bytes(reinterpret_cast<const char*>(mac.data()), mac.size());
      },
      py::arg("key"), py::arg("message"),
      "HMAC-SHA256 of `message` keyed by `key` (32 bytes), as the env server's handshake computes it.");
}

}  // namespace beast
