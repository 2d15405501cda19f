#include "core/stack.h"

#include <cstddef>
#include <cstring>
#include <utility>

namespace beast {

// Seen from axis `dim`, each C-contiguous input is `outer` = prod(shape[:dim])
// rows of a contiguous chunk; output row o is the items' chunks o back to
// back. Stacking is the special case where every chunk holds one slice.
Array join_arrays(const std::vector<ArrayMap>& items, const std::string& key, std::int64_t dim, bool stack) {
  const Array& first = items.front().at(key);
  Shape shape = first.shape();
  if (stack) {
    shape.insert(shape.begin() + dim, static_cast<std::int64_t>(items.size()));
  } else {
    shape[dim] = 0;
    for (const ArrayMap& item : items) shape[dim] += item.at(key).shape()[dim];
  }
  Array out = Array::empty(first.dtype(), std::move(shape));

  const std::int64_t outer = numel(Shape(first.shape().begin(), first.shape().begin() + dim));
  auto* dst = static_cast<std::byte*>(out.data());
  for (std::int64_t row = 0; row < outer; ++row) {
    for (const ArrayMap& item : items) {
      const Array& array = item.at(key);
      const std::size_t chunk = array.nbytes() / static_cast<std::size_t>(outer);
      std::memcpy(dst, static_cast<const std::byte*>(array.data()) + static_cast<std::size_t>(row) * chunk, chunk);
      dst += chunk;
    }
  }
  return out;
}

Array copy_row(const Array& batched, std::int64_t row) {
  Array out = Array::empty(batched.dtype(), Shape(batched.shape().begin() + 1, batched.shape().end()));
  const std::size_t nbytes = out.nbytes();
  std::memcpy(out.data(), static_cast<const std::byte*>(batched.data()) + static_cast<std::size_t>(row) * nbytes,
              nbytes);
  return out;
}

}  // namespace beast
