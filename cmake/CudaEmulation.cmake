# LOOM_CUDA=EMULATE: the CUDA backend's own sources, compiled as C++ and run on the CPU (cuda/emulation/device.h
# says how), so that the CUDA test suites exercise the real kernels on machines without a GPU. Each cuda/*.cu
# and cuda/*.cuh is rewritten by cuda/emulation/translate_launches.py into the build tree (kernel launches
# become calls); the rewritten headers shadow the originals on the include path.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
# The fibers that run a block's threads (cuda/emulation/device.cpp).
find_package(Boost 1.74 REQUIRED COMPONENTS context)
set(LOOM_EMULATION_DIR ${CMAKE_SOURCE_DIR}/cuda/emulation)
set(LOOM_EMULATED_ROOT ${CMAKE_BINARY_DIR}/cuda_emulated)
set(LOOM_EMULATED_INCLUDE ${LOOM_EMULATED_ROOT}/include)
set(translate ${LOOM_EMULATION_DIR}/translate_launches.py)

file(GLOB kernel_sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/cuda/*.cu)
file(GLOB kernel_headers CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/cuda/*.cuh)
set(emulated_headers)
foreach(header ${kernel_headers})
  get_filename_component(name ${header} NAME)
  set(out ${LOOM_EMULATED_INCLUDE}/loom/cuda/${name})
  add_custom_command(OUTPUT ${out} COMMAND Python3::Interpreter ${translate} ${header} ${out}
                     DEPENDS ${header} ${translate} VERBATIM)
  list(APPEND emulated_headers ${out})
endforeach()
set(LOOM_CUDA_EMULATION_SOURCES)
foreach(source ${kernel_sources})
  get_filename_component(name ${source} NAME_WE)
  set(out ${LOOM_EMULATED_ROOT}/${name}.cpp)
  add_custom_command(OUTPUT ${out} COMMAND Python3::Interpreter ${translate} ${source} ${out}
                     DEPENDS ${source} ${translate} ${emulated_headers} VERBATIM)
  # nvcc's idioms that g++ warns about: #pragma unroll, and arithmetic on bool (bool a * b, meant as in C).
  # -ffp-contract=off: the kernels' __dadd_rn/__dmul_rn must not become FMAs (g++ contracts by default).
  set_source_files_properties(${out} PROPERTIES COMPILE_OPTIONS
    "-include;${LOOM_EMULATION_DIR}/device.h;-ffp-contract=off;-Wno-unknown-pragmas;-Wno-unused-parameter;-Wno-int-in-bool-context")
  list(APPEND LOOM_CUDA_EMULATION_SOURCES ${out})
endforeach()
list(APPEND LOOM_CUDA_EMULATION_SOURCES
  ${CMAKE_SOURCE_DIR}/cuda/caching_allocator.cpp ${CMAKE_SOURCE_DIR}/cuda/pinned_allocator.cpp
  ${LOOM_EMULATION_DIR}/device.cpp ${LOOM_EMULATION_DIR}/runtime.cpp)
