// The BLAS library that runs LibTorch's matrix products, as found in the
// running process. Debian's LibTorch links libblas.so.3, which the system's
// alternatives resolve: the reference implementation on a fresh machine,
// OpenBLAS once it is installed.
#ifndef CNNVIZ_CORE_BLAS_H_
#define CNNVIZ_CORE_BLAS_H_

#include <string>

namespace cnnviz {

class Model;

struct BlasInfo {
  // "OpenBLAS 0.3.21 (OpenMP, Haswell)", "reference BLAS (netlib)",
  // "BLIS 0.9.0", "MKL ...", "built into LibTorch (mkl)", or
  // "unknown BLAS" when nothing identifies it.
  std::string name;
  // The loaded shared object, symbolic links resolved; empty when LibTorch
  // carries its BLAS inside (as PyTorch's own wheels do with MKL).
  std::string path;
  // The unoptimized reference implementation: 10-20x below the machine on
  // every linear layer and matrix product.
  bool reference = false;
};

// Read from the process: the shared object loaded as the BLAS, and the
// version functions it exports. The same answer for the process's lifetime.
const BlasInfo& loaded_blas();

// Whether `model`'s forward pass multiplies matrices (linear layers,
// matmul, bmm, einsum, attention): the work the BLAS does. Convolutions go
// through oneDNN and do not count.
bool has_matrix_products(const Model& model);

// Gives a BLAS with a thread pool of its own (OpenBLAS built with pthreads)
// `threads` threads. An OpenMP build follows LibTorch's OpenMP setting by
// itself; this is then harmless. Called by set_threads (runtime.h).
void set_blas_threads(int threads);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_BLAS_H_
