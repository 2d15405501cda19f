// Zero-copy conversion between NumPy arrays and beast::Array.
//
// NumPy -> Array borrows: the Array's owner holds a reference to the NumPy
// array and drops it (taking the GIL first) when the last copy of the Array
// goes, on whatever thread that is. The bytes are not copied, so writes to
// the NumPy array show through until then. The one exception: an array that
// is not C-contiguous (a slice, a transpose) is copied once into C order,
// since every Array is contiguous.
//
// Array -> NumPy lends: the NumPy array's base is a capsule that keeps the
// Array's owner alive, so the buffer lives as long as the NumPy array.
//
// Every function here must be called with the GIL held.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>
#include <string>
#include <utility>

#include "core/array.h"
#include "core/batching_queue.h"  // Timeout

namespace beast {
namespace py = pybind11;

inline py::dtype to_numpy_dtype(DType dtype) { return py::dtype(dtype_name(dtype)); }

inline DType from_numpy_dtype(const py::dtype& dt, const std::string& key) {
  const auto size = dt.itemsize();
  // Byte-swapped data would be silently misread by C++ consumers.
  if (dt.attr("isnative").cast<bool>()) {
    switch (dt.kind()) {
      case 'b':
        if (size == 1) return DType::kBool;
        break;
      case 'i':
        if (size == 1) return DType::kInt8;
        if (size == 2) return DType::kInt16;
        if (size == 4) return DType::kInt32;
        if (size == 8) return DType::kInt64;
        break;
      case 'u':
        if (size == 1) return DType::kUInt8;
        break;
      case 'f':
        if (size == 2) return DType::kFloat16;
        if (size == 4) return DType::kFloat32;
        if (size == 8) return DType::kFloat64;
        break;
    }
  }
  throw py::type_error("key '" + key + "': unsupported dtype " + py::str(dt).cast<std::string>() +
                       "; supported (native byte order): bool, int8, int16, int32, int64, uint8, float16, "
                       "float32, float64");
}

inline Array array_from_numpy(py::handle obj, const std::string& key) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error("key '" + key + "': expected a numpy.ndarray, got " + Py_TYPE(obj.ptr())->tp_name);
  }
  // Returns `obj` itself (a new reference) when it is already C-contiguous.
  auto array = py::array::ensure(obj, py::array::c_style);
  if (!array) throw py::error_already_set();
  const DType dtype = from_numpy_dtype(array.dtype(), key);
  Shape shape(array.shape(), array.shape() + array.ndim());
  // Array hands out a mutable pointer; consumers of borrowed NumPy data
  // (the queue) only read it, so read-only NumPy arrays are accepted too.
  void* data = const_cast<void*>(array.data());
  std::shared_ptr<void> owner(array.release().ptr(), [](void* ref) {
    py::gil_scoped_acquire gil;
    Py_DECREF(static_cast<PyObject*>(ref));
  });
  return Array(dtype, std::move(shape), std::move(owner), data);
}

inline py::array array_to_numpy(const Array& array) {
  auto owner = std::make_unique<std::shared_ptr<void>>(array.owner());
  py::capsule base(owner.get(), [](void* p) { delete static_cast<std::shared_ptr<void>*>(p); });
  owner.release();  // the capsule owns it now
  return py::array(to_numpy_dtype(array.dtype()), array.shape(), array.data(), base);
}

inline ArrayMap array_map_from_dict(py::handle obj) {
  if (!py::isinstance<py::dict>(obj)) {
    throw py::type_error(std::string("expected a dict of str to numpy.ndarray, got ") + Py_TYPE(obj.ptr())->tp_name);
  }
  ArrayMap arrays;
  for (const auto& [key, value] : py::reinterpret_borrow<py::dict>(obj)) {
    if (!py::isinstance<py::str>(key)) {
      throw py::type_error(std::string("dict keys must be str, got ") + Py_TYPE(key.ptr())->tp_name);
    }
    auto name = key.cast<std::string>();
    arrays.emplace(name, array_from_numpy(value, name));
  }
  return arrays;
}

// Seconds from Python (None: wait for ever) as the core's Timeout.
inline Timeout to_timeout(std::optional<double> seconds) {
  if (!seconds) return std::nullopt;
  return std::chrono::duration<double>(*seconds);
}

// {key: (dtype, per-env shape)} -> ArraySpecs; `who` prefixes a bad entry's error.
inline std::map<std::string, ArraySpec> specs_from_dict(const py::dict& specs, const std::string& who) {
  std::map<std::string, ArraySpec> out;
  for (const auto& [key_object, field] : specs) {
    const std::string key = py::cast<std::string>(key_object);
    const auto pair = py::cast<py::tuple>(field);
    if (pair.size() != 2) throw std::invalid_argument(who + "['" + key + "'] must be (dtype, shape)");
    const DType dtype = from_numpy_dtype(py::dtype::from_args(py::object(pair[0])), key);
    const auto dims = py::cast<std::vector<std::int64_t>>(pair[1]);
    out[key] = ArraySpec{dtype, Shape(dims.begin(), dims.end())};
  }
  return out;
}

inline py::dict array_map_to_dict(const ArrayMap& arrays) {
  py::dict dict;
  for (const auto& [key, array] : arrays) dict[py::str(key)] = array_to_numpy(array);
  return dict;
}

}  // namespace beast
