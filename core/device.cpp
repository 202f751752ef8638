#include "loom/core/device.h"

#include "loom/core/error.h"
#ifdef LOOM_WITH_CUDA
#include "loom/cuda/cuda_backend.h"
#endif

namespace loom {

Device::Device(const std::string& spec) {
  if (spec == "cpu") {
    type = DeviceType::CPU;
    index = 0;
    return;
  }
  if (spec.rfind("cuda", 0) == 0) {
    type = DeviceType::CUDA;
    index = 0;
    if (spec.size() == 4) return;
    if (spec[4] == ':' && spec.size() > 5) {
      try {
        size_t used = 0;
        index = std::stoi(spec.substr(5), &used);
        if (used == spec.size() - 5 && index >= 0) return;
      } catch (const std::exception&) {
      }
    }
  }
  LOOM_FAIL("Device: cannot parse '", spec, "' (expected 'cpu', 'cuda' or 'cuda:N')");
}

std::string Device::str() const {
  if (type == DeviceType::CPU) return "cpu";
  return "cuda:" + std::to_string(index);
}

#ifdef LOOM_WITH_CUDA
int cuda_device_count() { return cuda::device_count(); }
void cuda_synchronize(Device device) {
  LOOM_CHECK(device.is_cuda(), "cuda_synchronize: ", device, " is not a CUDA device");
  cuda::synchronize(device.index);
}
#else
int cuda_device_count() { return 0; }
void cuda_synchronize(Device device) {
  LOOM_FAIL("cuda_synchronize(", device,
            "): this build of Loom has no CUDA backend (configure with -DLOOM_CUDA=ON)");
}
#endif
bool cuda_is_available() { return cuda_device_count() > 0; }

}  // namespace loom
