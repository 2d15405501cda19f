// Moving rows into and out of batches: the copies BatchingQueue and
// DynamicBatcher make when they join items into one batch, and the copy
// DynamicBatcher makes when it hands each caller its row of a batch's output.
//
// Pure functions on Arrays; no locking, no Python. Callers check schemas
// first: these functions assume the shapes they are given fit together.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/array.h"

namespace beast {

// Joins the arrays under `key` of every item along `dim` into a new,
// C-contiguous array:
//   stack = true : a new axis is inserted at dim, so n arrays of shape S
//                  give S[:dim] + [n] + S[dim:]; all shapes are equal.
//   stack = false: the arrays are concatenated along their existing axis
//                  dim; shapes may differ only on that axis.
// Every item holds `key`, with one dtype throughout.
Array join_arrays(const std::vector<ArrayMap>& items, const std::string& key, std::int64_t dim, bool stack);

// A new, C-contiguous copy of batched[row], the array without its axis 0.
// Requires batched.ndim() >= 1 and 0 <= row < batched.shape()[0].
Array copy_row(const Array& batched, std::int64_t row);

}  // namespace beast
