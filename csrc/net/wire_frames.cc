// The fixed frames' arrays (SPEC, ERROR, CHALLENGE/AUTH bytes), declared in net/wire.h.
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "net/wire.h"

namespace beast {

Array scalar_int64(std::int64_t value) {
  Array a = Array::empty(DType::kInt64, {});
  std::memcpy(a.data(), &value, sizeof(value));
  return a;
}

namespace {

Array shape_array(const Shape& shape) {
  Array a = Array::empty(DType::kInt64, {static_cast<std::int64_t>(shape.size())});
  if (!shape.empty()) std::memcpy(a.data(), shape.data(), shape.size() * sizeof(std::int64_t));
  return a;
}

Array code_array(DType dtype) {
  Array a = Array::empty(DType::kUInt8, {});
  *static_cast<std::uint8_t*>(a.data()) = dtype_code(dtype);
  return a;
}

const Array& require(const ArrayMap& arrays, const std::string& key, DType dtype, std::int64_t ndim) {
  const auto it = arrays.find(key);
  if (it == arrays.end()) throw ProtocolError("SPEC frame: missing array '" + key + "'");
  if (it->second.dtype() != dtype || it->second.ndim() != ndim) {
    throw ProtocolError("SPEC frame: '" + key + "' must be " + dtype_name(dtype) + " with ndim " +
                        std::to_string(ndim) + ", got " + dtype_name(it->second.dtype()) + " " +
                        shape_string(it->second.shape()));
  }
  return it->second;
}

Shape shape_from(const ArrayMap& arrays, const std::string& key) {
  const Array& a = require(arrays, key, DType::kInt64, 1);
  Shape shape(static_cast<std::size_t>(a.numel()));
  if (!shape.empty()) std::memcpy(shape.data(), a.data(), shape.size() * sizeof(std::int64_t));
  for (std::int64_t d : shape) {
    if (d < 0) throw ProtocolError("SPEC frame: '" + key + "' has a negative dimension: " + shape_string(shape));
  }
  return shape;
}

std::int64_t int_from(const ArrayMap& arrays, const std::string& key) {
  std::int64_t value;
  std::memcpy(&value, require(arrays, key, DType::kInt64, 0).data(), sizeof(value));
  return value;
}

DType dtype_from(const ArrayMap& arrays, const std::string& key) {
  return dtype_from_code(*static_cast<const std::uint8_t*>(require(arrays, key, DType::kUInt8, 0).data()));
}

}  // namespace

ArrayMap encode_spec(const EnvSpec& spec) {
  return {
      {"observation_shape", shape_array(spec.observation.shape)},
      {"observation_dtype", code_array(spec.observation.dtype)},
      {"action_shape", shape_array(spec.action.shape)},
      {"action_dtype", code_array(spec.action.dtype)},
      {"num_actions", scalar_int64(spec.num_actions)},
      {"num_envs", scalar_int64(spec.num_envs)},
  };
}

EnvSpec decode_spec(const ArrayMap& arrays) {
  EnvSpec spec;
  spec.observation = {dtype_from(arrays, "observation_dtype"), shape_from(arrays, "observation_shape")};
  spec.action = {dtype_from(arrays, "action_dtype"), shape_from(arrays, "action_shape")};
  spec.num_actions = int_from(arrays, "num_actions");
  spec.num_envs = int_from(arrays, "num_envs");
  if (spec.num_envs < 1 || spec.num_actions < 0) {
    throw ProtocolError("SPEC frame: num_envs must be >= 1 and num_actions >= 0, got " +
                        std::to_string(spec.num_envs) + " and " + std::to_string(spec.num_actions));
  }
  return spec;
}

ArrayMap error_arrays(const std::string& message) {
  return {{"message", bytes_array(reinterpret_cast<const std::uint8_t*>(message.data()), message.size())}};
}

std::string error_message(const ArrayMap& arrays) {
  const auto it = arrays.find("message");
  if (it == arrays.end() || it->second.dtype() != DType::kUInt8 || it->second.ndim() != 1) {
    return "(ERROR frame without a uint8 'message' array)";
  }
  return printable(std::string(static_cast<const char*>(it->second.data()), it->second.nbytes()), "\n\t", true);
}

Array bytes_array(const std::uint8_t* bytes, std::size_t n) {
  Array a = Array::empty(DType::kUInt8, {static_cast<std::int64_t>(n)});
  if (n > 0) std::memcpy(a.data(), bytes, n);
  return a;
}

const std::uint8_t* fixed_bytes(const ArrayMap& arrays, const std::string& key, std::size_t n, const char* frame) {
  const auto it = arrays.find(key);
  if (it == arrays.end()) return nullptr;
  const Shape expected{static_cast<std::int64_t>(n)};
  if (it->second.dtype() != DType::kUInt8 || it->second.shape() != expected) {
    throw ProtocolError(std::string(frame) + " frame: '" + key + "' must be uint8 " + shape_string(expected) +
                        ", got " + dtype_name(it->second.dtype()) + " " + shape_string(it->second.shape()));
  }
  return static_cast<const std::uint8_t*>(it->second.data());
}

}  // namespace beast
