#pragma once
// Loom: the whole public API. `#include <loom/loom.h>` and link Loom::loom.
#include "loom/core/allocator.h"
#include "loom/core/device.h"
#include "loom/core/dtype.h"
#include "loom/core/error.h"
#include "loom/core/generator.h"
#include "loom/core/parallel.h"
#include "loom/core/philox.h"
#include "loom/core/shape.h"
#include "loom/core/tensor.h"
#include "loom/ops/ops.h"
#include "loom/nn/safetensors.h"
