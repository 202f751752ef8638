#pragma once
// LOOM_HOST_DEVICE marks a small function that both the CPU kernels and the CUDA kernels call, so that a
// formula shared by the backends is written once: under nvcc it compiles for host and device, elsewhere
// (g++, and the CUDA emulation) it is a plain inline function.
#if defined(__CUDACC__)
#define LOOM_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LOOM_HOST_DEVICE inline
#endif
