#include "net/handshake.h"

#include <cstdio>

#include "net/auth.h"

namespace beast {

std::string seconds_text(const Timeout& timeout) {
  if (!timeout) return "none";
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", timeout->count());
  return text;
}

ArrayMap expect_frame(Socket& socket, FrameType type, const Deadline& deadline, const char* expected) {
  const FrameHeader header = read_header(socket, deadline);
  if (header.type != type) throw ProtocolError(std::string(expected) + ", got " + frame_type_name(header.type));
  check_frame_length(header, kMaxControlFrameBytes);
  return read_payload(socket, header, deadline);
}

bool accept_handshake(Socket& socket, const std::string& token, const Timeout& handshake_timeout,
                      const Timeout& send_timeout, const std::string& peer,
                      const std::function<void(const std::string&)>& log) {
  const Deadline deadline = deadline_after(handshake_timeout, "server");
  const auto send = [&](FrameType type, const ArrayMap& arrays) {
    within("a handshake frame not sent within the send timeout", send_timeout,
           [&] { write_frame(socket, type, arrays, deadline_after(send_timeout, "server")); });
  };
  const auto read = [&](FrameType type, const char* expected) {
    return within("handshake not complete within the handshake timeout", handshake_timeout,
                  [&] { return expect_frame(socket, type, deadline, expected); });
  };
  read(FrameType::kHello, "expected HELLO as the first frame");
  if (token.empty()) return true;  // a loopback or unix server without a token
  std::uint8_t nonce[kNonceBytes];
  random_bytes(nonce, sizeof(nonce));
  send(FrameType::kChallenge, {{"nonce", bytes_array(nonce, sizeof(nonce))}});
  const ArrayMap auth = read(FrameType::kAuth, "expected AUTH in reply to CHALLENGE");
  for (const auto& entry : auth) {
    if (entry.first != "mac") throw ProtocolError("AUTH may hold only 'mac', got '" + printable(entry.first) + "'");
  }
  const std::uint8_t* mac = fixed_bytes(auth, "mac", kMacBytes, "AUTH");
  const Digest want = auth_mac(token, nonce);
  if (mac != nullptr && constant_time_equal(mac, want.data(), want.size())) return true;
  const std::string why = mac == nullptr ? "the client sent no token, and this server needs one"
                                         : "wrong auth token";
  log("refused " + peer + ": authentication failed (" + why + ")");
  send(FrameType::kError, error_arrays("authentication failed: " + why +
                                       " (set the same BEAST_AUTH_TOKEN for the server and its clients)"));
  return false;
}

Frame open_handshake(Socket& socket, const std::string& token, std::uint64_t max_frame_bytes,
                     const Deadline& deadline, const std::string& server) {
  write_frame(socket, FrameType::kHello, {}, deadline);
  Frame frame = read_frame(socket, max_frame_bytes, deadline);
  if (frame.type == FrameType::kChallenge) {
    const std::uint8_t* nonce = fixed_bytes(frame.arrays, "nonce", kNonceBytes, "CHALLENGE");
    if (nonce == nullptr) throw ProtocolError(server + " sent a CHALLENGE without a 'nonce'");
    ArrayMap answer;
    if (!token.empty()) {
      const Digest mac = auth_mac(token, nonce);
      answer.emplace("mac", bytes_array(mac.data(), mac.size()));
    }
    write_frame(socket, FrameType::kAuth, answer, deadline);
    frame = read_frame(socket, max_frame_bytes, deadline);
    if (frame.type == FrameType::kError) {
      throw AuthError(server + " refused this client: " + error_message(frame.arrays) +
                      (token.empty() ? " (this client has no token: pass auth_token or set BEAST_AUTH_TOKEN)" : ""));
    }
  }
  if (frame.type == FrameType::kError) throw RemoteError(server + ": " + error_message(frame.arrays));
  return frame;
}

}  // namespace beast
