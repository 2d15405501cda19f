// Array: the one data type that crosses Beast's C++ components.
//
// An Array is a dtype, a shape and a pointer to C-contiguous bytes, kept alive
// by a type-erased `owner`. The owner lets a buffer that belongs to someone
// else (a NumPy array, a socket frame) travel through queues without a copy:
// whoever holds the last copy of the Array releases the buffer. There is
// deliberately no pybind11 and no libtorch here, so the core builds and tests
// without Python.
//
// Invariant: data is C-contiguous (no strides). Producers that hold strided
// data make it contiguous before building an Array.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace beast {

enum class DType : std::uint8_t {
  kBool,
  kInt8,
  kUInt8,
  kInt16,
  kInt32,
  kInt64,
  kFloat16,
  kFloat32,
  kFloat64,
};

using Shape = std::vector<std::int64_t>;

inline std::size_t itemsize(DType dtype) {
  switch (dtype) {
    case DType::kBool:
    case DType::kInt8:
    case DType::kUInt8:
      return 1;
    case DType::kInt16:
    case DType::kFloat16:
      return 2;
    case DType::kInt32:
    case DType::kFloat32:
      return 4;
    case DType::kInt64:
    case DType::kFloat64:
      return 8;
  }
  throw std::logic_error("itemsize: unknown DType");
}

// NumPy's spelling, so error messages read the same from C++ and Python.
inline const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kBool: return "bool";
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt16: return "int16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kFloat16: return "float16";
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
  }
  throw std::logic_error("dtype_name: unknown DType");
}

inline std::int64_t numel(const Shape& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

// "[2, 3]" (NumPy prints "(2, 3)"; brackets avoid the one-tuple comma).
inline std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// What an array is, without its bytes: what a schema records and compares.
struct ArraySpec {
  DType dtype;
  Shape shape;

  bool operator==(const ArraySpec& other) const {
    return dtype == other.dtype && shape == other.shape;
  }
  bool operator!=(const ArraySpec& other) const { return !(*this == other); }
};

class Array {
 public:
  Array() = default;

  // Wraps bytes that `owner` keeps alive; `data` must point at
  // numel(shape) * itemsize(dtype) C-contiguous bytes.
  Array(DType dtype, Shape shape, std::shared_ptr<void> owner, void* data)
      : dtype_(dtype), shape_(std::move(shape)), owner_(std::move(owner)), data_(data) {
    check_shape(shape_);
  }

  // A new, uninitialised, C-contiguous buffer that the Array owns.
  static Array empty(DType dtype, Shape shape) {
    check_shape(shape);
    const std::size_t nbytes = static_cast<std::size_t>(beast::numel(shape)) * itemsize(dtype);
    std::shared_ptr<std::byte[]> bytes(new std::byte[nbytes]);
    void* data = bytes.get();
    return Array(dtype, std::move(shape), std::move(bytes), data);
  }

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  std::int64_t ndim() const { return static_cast<std::int64_t>(shape_.size()); }
  std::int64_t numel() const { return beast::numel(shape_); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * itemsize(dtype_); }
  void* data() const { return data_; }
  ArraySpec spec() const { return {dtype_, shape_}; }
  const std::shared_ptr<void>& owner() const { return owner_; }

 private:
  static void check_shape(const Shape& shape) {
    for (std::int64_t d : shape) {
      if (d < 0) throw std::invalid_argument("Array: negative dimension in " + shape_string(shape));
    }
  }

  DType dtype_ = DType::kFloat32;
  Shape shape_;
  std::shared_ptr<void> owner_;
  void* data_ = nullptr;
};

// Named arrays (one rollout, one batch); std::map keeps keys sorted so every
// consumer sees them in the same order.
using ArrayMap = std::map<std::string, Array>;

}  // namespace beast
