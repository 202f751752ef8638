#pragma once
// Training checkpoints in safetensors: a module's parameters and buffers under their dotted names, optionally an
// optimizer's state, the default generator's state (so dropout masks continue where they left off) and the
// caller's metadata. Layout:
//   tensors   "<name>"                       every entry of module.state_dict()
//             "optim.<param>.<buffer>"       optimizer buffers (optim.fc.weight.exp_avg, ...)
//   metadata  "optim.type", "optim.<hyperparameter>", "optim.<param>.step"
//             "loom.rng_seed", "loom.rng_offset"
//             the caller's keys (which must not start with "optim." or "loom.")
// Values in metadata are decimal strings (doubles with 17 significant digits, so they round-trip exactly).
#include <map>
#include <string>

#include "loom/nn/module.h"
#include "loom/nn/optim.h"

namespace loom::nn {

// Writes the checkpoint to path + ".tmp" and renames it over `path` (save_safetensors does), so an interrupted
// save leaves the previous checkpoint intact.
void save_checkpoint(const std::string& path, const Module& module, const Optimizer* optimizer = nullptr,
                     const std::map<std::string, std::string>& metadata = {});

// Reads `path` and checks everything -- the file's integrity, that its tensors are exactly the module's names
// with the same shapes and dtypes, and (when `optimizer` is given) the optimizer's type, hyperparameters, step
// counters and buffers -- before copying anything, so a failed load throws a loom::Error naming the file and
// every offending tensor and leaves the module and optimizer untouched. Optimizer state in the file is ignored
// when `optimizer` is null. With restore_rng, the default generator resumes from the saved state.
// Returns the caller's metadata.
std::map<std::string, std::string> load_checkpoint(const std::string& path, Module& module,
                                                   Optimizer* optimizer = nullptr, bool restore_rng = true);

}  // namespace loom::nn
