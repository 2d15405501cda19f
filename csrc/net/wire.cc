#include "net/wire.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

namespace beast {
namespace {

// Little-endian writes and reads, independent of the host's byte order.
template <typename T>
void put(std::vector<std::uint8_t>& out, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

template <typename T>
T get(const std::uint8_t* p) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) value |= static_cast<T>(p[i]) << (8 * i);
  return value;
}

// Reads from a payload, refusing to run past its end. `what` names the thing
// read, for the error message: a string, or a callable making one, so the
// message is only built when the read fails (frames are decoded per step).
class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  template <typename What>
  const std::uint8_t* take(std::uint64_t n, const What& what) {
    if (n > size_ - pos_) {
      throw ProtocolError(text(what) + " runs past the end of the payload (needs " + std::to_string(n) +
                          " bytes at offset " + std::to_string(pos_) + ", payload is " + std::to_string(size_) +
                          " bytes)");
    }
    const std::uint8_t* p = data_ + pos_;
    pos_ += static_cast<std::size_t>(n);
    return p;
  }
  template <typename T, typename What>
  T read(const What& what) {
    return get<T>(take(sizeof(T), what));
  }
  std::size_t left() const { return size_ - pos_; }
  std::size_t pos() const { return pos_; }

 private:
  static std::string text(const char* what) { return what; }
  static std::string text(const std::string& what) { return what; }
  template <typename Fn>
  static std::string text(const Fn& what) {
    return what();
  }

  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

bool is_little_endian() {
  const std::uint16_t one = 1;
  std::uint8_t first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

}  // namespace

const char* frame_type_name(FrameType type) {
  switch (type) {
    case FrameType::kHello: return "HELLO";
    case FrameType::kSpec: return "SPEC";
    case FrameType::kReset: return "RESET";
    case FrameType::kStep: return "STEP";
    case FrameType::kStepResult: return "STEP_RESULT";
    case FrameType::kError: return "ERROR";
    case FrameType::kClose: return "CLOSE";
    case FrameType::kChallenge: return "CHALLENGE";
    case FrameType::kAuth: return "AUTH";
    case FrameType::kAttr: return "ATTR";
    case FrameType::kAttrResult: return "ATTR_RESULT";
    case FrameType::kActorSpec: return "ACTOR_SPEC";
    case FrameType::kUnroll: return "UNROLL";
    case FrameType::kWeights: return "WEIGHTS";
    case FrameType::kUnrollAck: return "UNROLL_ACK";
  }
  return "UNKNOWN";
}

// The codes are spelled out rather than cast from DType, so reordering the
// enum cannot silently change the wire format.
std::uint8_t dtype_code(DType dtype) {
  switch (dtype) {
    case DType::kBool: return 0;
    case DType::kInt8: return 1;
    case DType::kUInt8: return 2;
    case DType::kInt16: return 3;
    case DType::kInt32: return 4;
    case DType::kInt64: return 5;
    case DType::kFloat16: return 6;
    case DType::kFloat32: return 7;
    case DType::kFloat64: return 8;
  }
  throw std::logic_error("dtype_code: unknown DType");
}

DType dtype_from_code(std::uint8_t code) {
  static constexpr DType kByCode[] = {DType::kBool,  DType::kInt8,    DType::kUInt8,   DType::kInt16,  DType::kInt32,
                                      DType::kInt64, DType::kFloat16, DType::kFloat32, DType::kFloat64};
  if (code >= sizeof(kByCode) / sizeof(kByCode[0])) {
    throw ProtocolError("unknown dtype code " + std::to_string(code) + " (known: 0..8)");
  }
  return kByCode[code];
}

std::vector<std::uint8_t> encode_frame(FrameType type, const ArrayMap& arrays) {
  // Array bytes are memcpy'd as they are in memory; the format is little-endian.
  static const bool little = is_little_endian();
  if (!little) throw std::logic_error("encode_frame: big-endian hosts are not supported");
  if (arrays.size() > kMaxArraysPerFrame) {
    throw std::invalid_argument("a frame holds at most " + std::to_string(kMaxArraysPerFrame) + " arrays, got " +
                                std::to_string(arrays.size()));
  }
  std::size_t total = kFrameHeaderBytes + 4;  // one allocation, not a regrowth per few arrays
  for (const auto& [name, array] : arrays) total += 2 + name.size() + 2 + 8 * array.shape().size() + 8 + array.nbytes();
  std::vector<std::uint8_t> out;
  out.reserve(total);
  out.resize(kFrameHeaderBytes);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(arrays.size()));
  for (const auto& [name, array] : arrays) {
    if (name.empty() || name.size() > kMaxNameBytes) {
      throw std::invalid_argument("array name must be 1.." + std::to_string(kMaxNameBytes) + " bytes: '" + name + "'");
    }
    if (array.shape().size() > kMaxNdim) {
      throw std::invalid_argument("array '" + name + "' has " + std::to_string(array.ndim()) +
                                  " dims; the wire allows " + std::to_string(kMaxNdim));
    }
    put<std::uint16_t>(out, static_cast<std::uint16_t>(name.size()));
    out.insert(out.end(), name.begin(), name.end());
    out.push_back(dtype_code(array.dtype()));
    out.push_back(static_cast<std::uint8_t>(array.ndim()));
    for (std::int64_t d : array.shape()) put<std::uint64_t>(out, static_cast<std::uint64_t>(d));
    put<std::uint64_t>(out, array.nbytes());
    const auto* bytes = static_cast<const std::uint8_t*>(array.data());
    out.insert(out.end(), bytes, bytes + array.nbytes());
  }
  const std::uint64_t length = out.size() - kFrameHeaderBytes;
  std::vector<std::uint8_t> header;
  header.reserve(kFrameHeaderBytes);
  header.insert(header.end(), kWireMagic, kWireMagic + 4);
  put<std::uint32_t>(header, kWireVersion);
  put<std::uint32_t>(header, static_cast<std::uint32_t>(type));
  put<std::uint64_t>(header, length);
  std::memcpy(out.data(), header.data(), kFrameHeaderBytes);
  return out;
}

FrameHeader decode_header(const std::uint8_t* header) {
  if (std::memcmp(header, kWireMagic, 4) != 0) {
    char shown[64];
    std::snprintf(shown, sizeof(shown), "%02x %02x %02x %02x", header[0], header[1], header[2], header[3]);
    throw ProtocolError(std::string("bad magic bytes ") + shown + " (expected 42 4e 45 54, \"BNET\")");
  }
  const auto version = get<std::uint32_t>(header + 4);
  if (version != kWireVersion) {
    throw ProtocolError("unsupported protocol version " + std::to_string(version) + " (this side speaks " +
                        std::to_string(kWireVersion) + ")");
  }
  const auto type = get<std::uint32_t>(header + 8);
  constexpr auto kLast = static_cast<std::uint32_t>(FrameType::kUnrollAck);
  if (type < static_cast<std::uint32_t>(FrameType::kHello) || type > kLast) {
    throw ProtocolError("unknown frame type " + std::to_string(type) + " (known: 1.." + std::to_string(kLast) + ")");
  }
  return {static_cast<FrameType>(type), get<std::uint64_t>(header + 12)};
}

void check_frame_length(const FrameHeader& header, std::uint64_t limit) {
  if (header.length > limit) {
    throw ProtocolError(std::string(frame_type_name(header.type)) + " frame length " +
                        std::to_string(header.length) + " bytes exceeds the maximum frame size " +
                        std::to_string(limit) + " bytes");
  }
}

ArrayMap decode_payload(const std::uint8_t* payload, std::size_t length) {
  Reader r(payload, length);
  const auto count = r.read<std::uint32_t>("array count");
  if (count > kMaxArraysPerFrame) {  // before any array is made: each costs far more than its bytes
    throw ProtocolError("array count " + std::to_string(count) + " exceeds the limit " +
                        std::to_string(kMaxArraysPerFrame));
  }
  ArrayMap arrays;
  for (std::uint32_t i = 0; i < count; ++i) {
    const auto which = [i] { return "array " + std::to_string(i); };
    const auto name_len = r.read<std::uint16_t>([&] { return which() + " name length"; });
    if (name_len == 0 || name_len > kMaxNameBytes) {
      throw ProtocolError(which() + ": name length " + std::to_string(name_len) + " (allowed 1.." +
                          std::to_string(kMaxNameBytes) + ")");
    }
    const auto* name_bytes = r.take(name_len, [&] { return which() + " name"; });
    std::string name(reinterpret_cast<const char*>(name_bytes), name_len);
    const auto where = [&] { return which() + " '" + printable(name) + "'"; };
    if (arrays.count(name) != 0) throw ProtocolError(where() + ": duplicate name");
    const DType dtype = [&] {
      const auto code = r.read<std::uint8_t>([&] { return where() + " dtype code"; });
      try {
        return dtype_from_code(code);
      } catch (const ProtocolError& e) {
        throw ProtocolError(where() + ": " + e.what());
      }
    }();
    const auto ndim = r.read<std::uint8_t>([&] { return where() + " ndim"; });
    if (ndim > kMaxNdim) {
      throw ProtocolError(where() + ": ndim " + std::to_string(ndim) + " exceeds the limit " + std::to_string(kMaxNdim));
    }
    Shape shape;
    std::uint64_t expected = itemsize(dtype);
    bool overflow = false;
    for (std::uint8_t d = 0; d < ndim; ++d) {
      const auto dim = r.read<std::uint64_t>([&] { return where() + " dims"; });
      if (dim > static_cast<std::uint64_t>(INT64_MAX)) overflow = true;
      overflow = overflow || __builtin_mul_overflow(expected, dim, &expected);
      shape.push_back(static_cast<std::int64_t>(dim));
    }
    const auto nbytes = r.read<std::uint64_t>([&] { return where() + " byte length"; });
    if (overflow || nbytes != expected) {
      throw ProtocolError(where() + ": shape " + shape_string(shape) + " of " + dtype_name(dtype) + " needs " +
                          (overflow ? std::string("more than 2^64") : std::to_string(expected)) +
                          " bytes, but the byte length says " + std::to_string(nbytes));
    }
    const auto* bytes = r.take(nbytes, [&] { return where() + " data"; });
    Array array = Array::empty(dtype, std::move(shape));
    if (nbytes > 0) std::memcpy(array.data(), bytes, nbytes);
    arrays.emplace(std::move(name), std::move(array));
  }
  if (r.left() != 0) {
    throw ProtocolError(std::to_string(r.left()) + " trailing bytes after the last array (payload is " +
                        std::to_string(length) + " bytes)");
  }
  return arrays;
}

void write_frame(Socket& socket, FrameType type, const ArrayMap& arrays, const Deadline& deadline) {
  // One buffer and one send: frames are small next to the cost of a syscall
  // per array, and the copy keeps the socket code simple.
  const auto bytes = encode_frame(type, arrays);
  socket.send_all(bytes.data(), bytes.size(), deadline, frame_type_name(type));
}

FrameHeader read_header(Socket& socket, const Deadline& deadline) {
  std::uint8_t header[kFrameHeaderBytes];
  socket.recv_all(header, sizeof(header), deadline, "a frame header");
  return decode_header(header);
}

ArrayMap read_payload(Socket& socket, const FrameHeader& header, const Deadline& deadline) {
  // The buffer grows as the bytes come (doubling from kFirstChunk), so what
  // a peer makes us hold is at most twice what it has really sent.
  constexpr std::uint64_t kFirstChunk = 256 << 10;
  std::vector<std::uint8_t> payload;
  try {
    while (payload.size() < header.length) {
      const std::size_t have = payload.size();
      const std::uint64_t want = std::max<std::uint64_t>(kFirstChunk, 2 * static_cast<std::uint64_t>(have));
      payload.resize(static_cast<std::size_t>(std::min(header.length, want)));
      socket.recv_all(payload.data() + have, payload.size() - have, deadline, "a frame payload");
    }
  } catch (const ConnectionClosed& e) {  // mid-frame, however many payload bytes came
    throw ConnectionClosed(e.what(), false);
  }
  try {
    return decode_payload(payload.data(), payload.size());
  } catch (const ProtocolError& e) {
    throw ProtocolError(std::string(frame_type_name(header.type)) + " frame: " + e.what());
  }
}

Frame read_frame(Socket& socket, std::uint64_t max_frame_bytes, const Deadline& deadline) {
  const FrameHeader header = read_header(socket, deadline);
  check_frame_length(header, max_frame_bytes);
  return {header.type, read_payload(socket, header, deadline)};
}

std::string printable(const std::string& text, const char* keep, bool keep_backslash) {
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    const auto byte = static_cast<unsigned char>(ch);
    if ((byte >= 0x20 && byte < 0x7f && (byte != '\\' || keep_backslash)) ||
        (byte != 0 && std::strchr(keep, ch) != nullptr)) {
      out.push_back(ch);
    } else if (byte == '\\') {
      out += "\\\\";
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", byte);
      out += escaped;
    }
  }
  return out;
}

}  // namespace beast
