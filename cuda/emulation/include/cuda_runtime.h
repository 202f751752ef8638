#pragma once
// The emulation's cuda_runtime.h: the runtime API (device-side names come from cuda/emulation/device.h, which
// the build includes before every translated kernel file).
#include "cuda_runtime_api.h"
