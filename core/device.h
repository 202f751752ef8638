#pragma once
// Where a tensor's storage lives.
#include <cstdint>
#include <ostream>
#include <string>

namespace loom {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  Device() = default;
  constexpr Device(DeviceType t, int i = 0) : type(t), index(i) {}
  // Parses "cpu", "cuda", "cuda:1"; throws loom::Error on anything else.
  explicit Device(const std::string& spec);

  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  std::string str() const;
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

inline const Device kCPU{DeviceType::CPU, 0};
inline const Device kCUDA{DeviceType::CUDA, 0};

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

// True when Loom was built with CUDA and at least one GPU is visible.
bool cuda_is_available();
int cuda_device_count();
// Waits until every kernel queued on `device` (a CUDA device) has finished, as torch.cuda.synchronize does:
// CUDA ops return once their kernels are queued, so timing them needs this. Throws for a CPU device or an
// absent GPU.
void cuda_synchronize(Device device = kCUDA);

}  // namespace loom
