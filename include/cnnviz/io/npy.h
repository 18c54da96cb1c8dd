// NumPy .npy files (format version 1.0), little-endian float32, C order.
#ifndef CNNVIZ_IO_NPY_H_
#define CNNVIZ_IO_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

namespace cnnviz {

// A float32 array in C order: a raw map as the methods compute it, and what
// an .npy file holds.
struct FloatArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // product(shape) values, C order
};
using NpyArray = FloatArray;

// The bytes of the .npy file of `array`.
std::string encode_npy(const NpyArray& array);

// Writes `array` to `path` atomically (a temporary file renamed into place).
// Throws Error(kOutput) when the file cannot be written.
void write_npy(const std::string& path, const NpyArray& array);

// Reads a '<f4' C-order .npy file. Throws Error(kInput) for anything else.
NpyArray read_npy(const std::string& path);

}  // namespace cnnviz

#endif  // CNNVIZ_IO_NPY_H_
