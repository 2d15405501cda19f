// The env server's wire protocol: framed, typed arrays. This comment is the
// one place the format is written down; tests/poly/test_env_server.py has an
// independent Python encoder built from it.
//
// Every integer is little-endian and fixed-width. Nothing is pickled: a frame
// holds only named arrays of the dtypes below, decoded strictly.
//
// Frame = header (20 bytes) + payload (`length` bytes):
//   offset 0   4 bytes  magic  "BNET" (0x42 0x4E 0x45 0x54)
//          4   u32      protocol version, kWireVersion (= 3); any other is refused
//          8   u32      frame type (below)
//         12   u64      payload length; refused BEFORE anything is allocated
//                       if over the limit for that frame type (see Limits)
// Payload = u32 array count (at most kMaxArraysPerFrame = 64), then that many
// arrays, each:
//   u16 name length (1..255), name (utf-8 bytes, unique within the frame)
//   u8  dtype code: 0 bool, 1 int8, 2 uint8, 3 int16, 4 int32, 5 int64,
//                   6 float16, 7 float32, 8 float64
//   u8  ndim (0..16; 0 is a scalar)
//   ndim x u64 dims
//   u64 byte length; must equal product(dims) * itemsize(dtype)
//   the bytes, C order, no padding
// and nothing after the last array (trailing bytes are an error).
//
// Frame types and their arrays ("K" = num_envs, "[]" = scalar):
//   1 HELLO        client -> server, first frame; no arrays
//   8 CHALLENGE    server -> client, the reply to HELLO when the server has
//                  an auth token: nonce uint8[32], fresh random bytes
//   9 AUTH         client -> server, the reply to CHALLENGE:
//                    mac uint8[32] = HMAC-SHA256(key = the token's bytes,
//                                    message = "beast env auth v2" + one 0
//                                    byte + the 32 nonce bytes)
//                  or no arrays when the client has no token (the server
//                  then answers ERROR saying a token is needed)
//   2 SPEC         server -> client, the reply to HELLO (no token) or to a
//                  correct AUTH:
//                    observation_shape int64[ndim]  (per env)
//                    observation_dtype uint8[]      (a dtype code)
//                    action_shape      int64[ndim]  (per env; [] shape for Discrete)
//                    action_dtype      uint8[]      (a dtype code)
//                    num_actions       int64[]      (Discrete n; 0 otherwise)
//                    num_envs          int64[]      (K)
//   3 RESET        client -> server, every array optional:
//                    seed   int64[]  (envs get seed + i), or int64[K] (env i
//                           gets seed[i])
//                    seeded bool[K]  (only with seed int64[K]: false leaves
//                           env i unseeded)
//                    option/<name>:<kind>  one reset option each (below)
//   4 STEP         client -> server: action [K, *action_shape] of action_dtype
//   5 STEP_RESULT  server -> client, the reply to RESET (obs only) and to
//                  STEP (obs, reward, terminated, truncated; each [K, ...]),
//                  in next-step autoreset mode (beast/envs/make.py); with
//                  episodic life also game_over bool[K] (the game really
//                  ended, not just a life)
//   6 ERROR        either way: message uint8[n], utf-8 text (for an env
//                  exception, its Python traceback). The connection stays up
//                  after an env error; after a protocol error, a failed
//                  AUTH, a deadline or a refused connection it is closed.
//   7 CLOSE        client -> server: no arrays; the server closes the connection
//  10 ATTR         client -> server: an attribute of every env, or a method
//                  call on each (Gymnasium's get_attr / set_attr / call):
//                    op    uint8[n]  "get", "set" or "call"
//                    name  uint8[n]  the attribute's name, utf-8
//                    arg/<i>:<kind>, kwarg/<name>:<kind>  (call)
//                    value/<i>:<kind>  (set: env i's value, i < K)
//  11 ATTR_RESULT  server -> client, the reply to ATTR:
//                    result/<i>:<kind> for each env i < K (get, call)
//  12 ACTOR_SPEC   learner -> remote actor, the reply to HELLO (or AUTH):
//                    actor_id int64[], num_envs int64[] (K),
//                    unroll_length int64[] (T), weights_size int64[] (n),
//                    max_in_flight int64[] (W: unrolls sent and not yet acked)
//  13 UNROLL       remote actor -> learner: one unroll, each array of the
//                  rollout schema as [T+1, K, ...] (net/actor_server.h)
//  14 WEIGHTS      learner -> remote actor: version int64[],
//                  weights float32[n] (the policy's parameters, flattened)
//  15 UNROLL_ACK   learner -> remote actor: count int64[], that many more of
//                  its unrolls are queued for the learner. An actor sends a new
//                  UNROLL only while fewer than W are unacked, so a learner that
//                  falls behind holds its actors back (bounded policy lag)
//                  instead of letting unrolls pile up in socket buffers.
//   Frames 12-15 belong to the actor protocol (net/actor_server.h): HELLO
//   [-> CHALLENGE -> AUTH] -> ACTOR_SPEC, then UNROLLs one way and WEIGHTS and
//   UNROLL_ACKs the other, each side sending when it has something, then CLOSE or EOF.
//   STEP_RESULT may also hold info/<path> arrays [K, ...]: the vector env's
//   numeric info entries (a nested dict's path joined by '/'; Gymnasium's
//   '_<key>' masks travel as entries of their own).
// Values (options, arguments, attributes, results) travel one array each,
// named <prefix><key>:<kind> with kind a (a numeric array), g (a NumPy
// scalar: a 0-d array), p (a Python bool, int or float: a 0-d array),
// s (a str: uint8[n], utf-8) or n (None: bool[0]). The server's Python
// side decodes them (beast/poly/wire_values.py); anything else is refused.
//
// A session: HELLO -> [CHALLENGE -> AUTH ->] SPEC, then any number of
// RESET/STEP requests, each answered by one STEP_RESULT or one ERROR, and
// ATTR requests, each answered by one ATTR_RESULT or one ERROR, then
// CLOSE (or EOF). A server with a token sends CHALLENGE and needs a correct
// AUTH before it makes any environment; a wrong or missing MAC gets ERROR
// and the connection is closed. Servers refuse to bind a non-loopback
// address without a token; a loopback or unix server without one skips the
// challenge (its clients count as authenticated). Env tracebacks only ever
// reach authenticated clients: nothing runs env code before the handshake.
// A server over its connection limit answers the connection with ERROR and
// closes it without reading.
//
// Limits (server side; every one is checked before anything is allocated):
//   before the handshake ends only HELLO, then AUTH, may come, each at most
//   kMaxControlFrameBytes (4 KiB); afterwards CLOSE is held to the same,
//   RESET to 4 KiB plus 9 bytes per env (seeds and their mask) plus
//   kMaxValueBytes (64 KiB, for options), ATTR to 4 KiB plus kMaxValueBytes
//   per env, STEP to the bytes of a correct action for the spec plus 4 KiB
//   (each also to max_frame_bytes, default 64 MiB). Any other frame type from a client
//   is refused from its header. A receiver grows a payload buffer as the
//   bytes arrive (from 256 KiB, doubling), so a header that declares a large
//   payload costs nothing until the payload comes. Clients hold the server's
//   frames to max_frame_bytes.
//
// Deadlines (server side, each configurable: EnvServerOptions,
// `python -m beast.poly.env_server --handshake-timeout/--idle-timeout/
// --send-timeout`):
//   handshake_timeout (10 s): from accepting the connection until HELLO (and
//                  AUTH) have fully arrived
//   idle_timeout   (600 s): from the end of one reply until the whole next
//                  request has arrived
//   send_timeout   (60 s): to send one whole frame (a client that stops
//                  reading its replies)
// When one passes the server sends ERROR saying which (best effort), logs it
// and closes the connection. Clients bound the connect, the handshake and
// each request (send and reply) by their own timeout.
//
// A malformed frame (bad magic, version, type, size, count or array) makes
// the receiver close the connection; a server first sends an ERROR saying
// why (best effort) and logs the reason, with every peer-chosen string
// (array names) escaped by printable().
//
// Threads: everything here is a pure function except the read_* and
// write_frame() functions, which use one socket from the calling thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/array.h"
#include "core/deadline.h"
#include "net/socket.h"

namespace beast {

constexpr std::uint32_t kWireVersion = 3;
constexpr char kWireMagic[4] = {'B', 'N', 'E', 'T'};
constexpr std::size_t kFrameHeaderBytes = 20;
constexpr std::uint64_t kDefaultMaxFrameBytes = 64ull << 20;
constexpr std::size_t kMaxNdim = 16;
constexpr std::size_t kMaxNameBytes = 255;
constexpr std::uint32_t kMaxArraysPerFrame = 64;
constexpr std::uint64_t kMaxControlFrameBytes = 4 << 10;
constexpr std::uint64_t kMaxValueBytes = 64 << 10;

enum class FrameType : std::uint32_t {
  kHello = 1,
  kSpec = 2,
  kReset = 3,
  kStep = 4,
  kStepResult = 5,
  kError = 6,
  kClose = 7,
  kChallenge = 8,
  kAuth = 9,
  kAttr = 10,
  kAttrResult = 11,
  kActorSpec = 12,
  kUnroll = 13,
  kWeights = 14,
  kUnrollAck = 15,
};

const char* frame_type_name(FrameType type);

// A frame that breaks the format; what() names what was wrong.
class ProtocolError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Frame {
  FrameType type = FrameType::kHello;
  ArrayMap arrays;
};

// What a client learns in SPEC; shapes are per env (no leading K).
struct EnvSpec {
  ArraySpec observation;
  ArraySpec action;
  std::int64_t num_actions = 0;
  std::int64_t num_envs = 0;
};

// The wire code of a dtype, and back (ProtocolError for an unknown code).
std::uint8_t dtype_code(DType dtype);
DType dtype_from_code(std::uint8_t code);

// The whole frame, header included, as bytes.
std::vector<std::uint8_t> encode_frame(FrameType type, const ArrayMap& arrays);

struct FrameHeader {
  FrameType type = FrameType::kHello;
  std::uint64_t length = 0;  // payload bytes
};

// Decodes a header; throws ProtocolError for bad magic, version or type.
FrameHeader decode_header(const std::uint8_t* header);
// Throws ProtocolError ("... exceeds the maximum frame size ...") if
// header.length > limit.
void check_frame_length(const FrameHeader& header, std::uint64_t limit);

// Decodes a payload into arrays that own copies of their bytes (copied so
// each starts aligned, wherever it sat in the payload).
ArrayMap decode_payload(const std::uint8_t* payload, std::size_t length);

// Socket I/O. The reads throw ConnectionClosed (at_boundary() true when the
// peer closed between frames), SocketTimeout, or ProtocolError. A caller
// that bounds frames by type reads the header, checks it, then the payload
// (whose buffer grows as bytes arrive); read_frame does all three with one
// limit for every type.
FrameHeader read_header(Socket& socket, const Deadline& deadline);
ArrayMap read_payload(Socket& socket, const FrameHeader& header, const Deadline& deadline);
Frame read_frame(Socket& socket, std::uint64_t max_frame_bytes, const Deadline& deadline);
// SocketTimeout if the frame is not all sent by `deadline`.
void write_frame(Socket& socket, FrameType type, const ArrayMap& arrays, const Deadline& deadline = std::nullopt);

// `text` with every byte outside printable ASCII written as \xNN (and a
// backslash as \\ unless `keep_backslash`): peer-chosen text in a log line
// cannot start a new line or send terminal escapes. Bytes listed in `keep`
// (e.g. "\n\t" for a traceback shown to a user) are left as they are.
std::string printable(const std::string& text, const char* keep = "", bool keep_backslash = false);

// Helpers for the fixed frames.
ArrayMap encode_spec(const EnvSpec& spec);
EnvSpec decode_spec(const ArrayMap& arrays);  // ProtocolError if a key is missing or ill-typed
ArrayMap error_arrays(const std::string& message);
// The message, with control characters other than newline and tab escaped.
std::string error_message(const ArrayMap& arrays);
// A uint8[n] array of `bytes`, and back: the bytes of arrays[key] if it is
// uint8[n], nullptr if there is no `key`; ProtocolError (naming `frame`) if
// it has another dtype or shape.
Array bytes_array(const std::uint8_t* bytes, std::size_t n);
const std::uint8_t* fixed_bytes(const ArrayMap& arrays, const std::string& key, std::size_t n, const char* frame);
Array scalar_int64(std::int64_t value);

}  // namespace beast
