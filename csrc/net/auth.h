// Shared-token authentication for the env server's handshake (net/wire.h):
// SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), written here so the core
// needs no OpenSSL headers, a CSPRNG for the server's nonce, and a
// constant-time comparison for MACs.
//
// The proof: the server sends a fresh random nonce (CHALLENGE); the client
// answers with auth_mac(token, nonce) (AUTH); the server compares it with its
// own in constant time. The token itself never crosses the wire, and a MAC
// seen once is useless for the next connection (its nonce differs).
//
// Threads: every function here is pure (random_bytes reads the kernel's
// CSPRNG) and safe to call from any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace beast {

constexpr std::size_t kSha256Bytes = 32;
constexpr std::size_t kNonceBytes = 32;
constexpr std::size_t kMacBytes = kSha256Bytes;

using Digest = std::array<std::uint8_t, kSha256Bytes>;

// Incremental SHA-256: update() any number of times, then finish() once.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t size);
  Digest finish();

 private:
  void compress(const std::uint8_t* block);

  std::array<std::uint32_t, 8> state_;
  std::array<std::uint8_t, 64> block_{};
  std::size_t block_used_ = 0;
  std::uint64_t total_bytes_ = 0;
};

Digest hmac_sha256(const std::string& key, const void* message, std::size_t size);

// HMAC-SHA256 keyed by `token` over the domain prefix "beast env auth v2\0"
// followed by the kNonceBytes of `nonce`: what AUTH carries.
Digest auth_mac(const std::string& token, const std::uint8_t* nonce);

// Whether a and b (n bytes each) are equal, taking the same time whatever
// they hold (no early exit that would leak how many leading bytes matched).
bool constant_time_equal(const std::uint8_t* a, const std::uint8_t* b, std::size_t n);

// Fills `out` from the kernel's CSPRNG (getrandom(2); /dev/urandom if that
// is missing). Throws std::runtime_error if neither works.
void random_bytes(std::uint8_t* out, std::size_t n);

}  // namespace beast
