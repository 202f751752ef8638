#pragma once
// Every op of Loom's public API.
#include "loom/ops/act.h"
#include "loom/ops/attention.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/linalg.h"
#include "loom/ops/lsh.h"
#include "loom/ops/lsh_attention.h"
#include "loom/ops/multidim_attention.h"
#include "loom/ops/local_attention.h"
#include "loom/ops/nn_ops.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape_ops.h"
