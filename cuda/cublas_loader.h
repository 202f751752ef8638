#pragma once
// The few cuBLAS entry points Loom uses, resolved with dlopen on first use. Linking cuBLAS instead would make
// every process that links Loom pay for cuBLASLt's static initialisers at startup (about a second, for each
// test case of the suite, whether or not it touches a GPU).
#include <cublas_v2.h>

namespace loom::cuda {

struct CublasApi {
  decltype(&cublasCreate_v2) create;
  decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
  decltype(&cublasDgemmStridedBatched) dgemm_strided_batched;
  decltype(&cublasSscal_v2) sscal;
  decltype(&cublasDscal_v2) dscal;
  decltype(&cublasGetStatusName) status_name;
  decltype(&cublasGetStatusString) status_string;
};

// Opens cuBLAS on the first call (thread-safe); throws a loom::Error naming the library when it is missing.
const CublasApi& cublas_api();

}  // namespace loom::cuda
