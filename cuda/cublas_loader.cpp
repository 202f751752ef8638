#include "loom/cuda/cublas_loader.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <string>

#include "loom/core/error.h"

namespace loom::cuda {
namespace {

// The library matching the headers we were compiled against: by soname (LD_LIBRARY_PATH, the executable's
// run path, the loader cache), else next to the CUDA runtime this process already loaded.
void* open_cublas() {
  const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  void* lib = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib != nullptr) return lib;
  std::string error = dlerror();
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&cudaRuntimeGetVersion), &info) != 0 && info.dli_fname != nullptr) {
    std::string runtime = info.dli_fname;
    std::string beside = runtime.substr(0, runtime.find_last_of('/') + 1) + soname;
    lib = dlopen(beside.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib != nullptr) return lib;
    error += "; " + std::string(dlerror());
  }
  LOOM_FAIL("CUDA backend: cannot load cuBLAS (", soname, "), which matrix products need: ", error);
}

template <typename Fn>
void resolve(void* lib, const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  LOOM_CHECK(fn != nullptr, "CUDA backend: cuBLAS lacks ", name, " (", dlerror(), ")");
}

}  // namespace

const CublasApi& cublas_api() {
  static const CublasApi api = [] {
    void* lib = open_cublas();  // never closed: handles made from it live until exit
    CublasApi a;
    resolve(lib, "cublasCreate_v2", a.create);
    resolve(lib, "cublasSgemmStridedBatched", a.sgemm_strided_batched);
    resolve(lib, "cublasDgemmStridedBatched", a.dgemm_strided_batched);
    resolve(lib, "cublasSscal_v2", a.sscal);
    resolve(lib, "cublasDscal_v2", a.dscal);
    resolve(lib, "cublasGetStatusName", a.status_name);
    resolve(lib, "cublasGetStatusString", a.status_string);
    return a;
  }();
  return api;
}

}  // namespace loom::cuda
