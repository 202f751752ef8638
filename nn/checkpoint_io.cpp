// save_checkpoint / load_checkpoint: the module's state dict and the optimizer's OptimizerState, flattened into
// one safetensors file (see checkpoint_io.h for the layout).
#include "loom/nn/checkpoint_io.h"

#include <charconv>
#include <cstdio>
#include <set>

#include "loom/core/generator.h"
#include "loom/nn/safetensors.h"

namespace loom::nn {
namespace {

const std::string kOptim = "optim.";
const std::string kLoom = "loom.";
const std::string kStepSuffix = ".step";

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string format_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// Parses the whole of s as a number, or returns false.
template <typename T>
bool parse_number(const std::string& s, T* out) {
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, *out);
  return ec == std::errc() && ptr == end && !s.empty();
}

[[noreturn]] void fail(const char* fn, const std::string& path, const std::vector<std::string>& problems) {
  std::string msg = std::string(fn) + ": " + path + ": nothing was loaded:";
  for (const std::string& p : problems) msg += "\n  " + p;
  LOOM_FAIL(msg);
}

}  // namespace

void save_checkpoint(const std::string& path, const Module& module, const Optimizer* optimizer,
                     const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, Tensor>> tensors = module.state_dict();
  for (const auto& [name, t] : tensors) {
    LOOM_CHECK(!starts_with(name, kOptim), "save_checkpoint: ", path, ": the module's tensor '", name,
               "' starts with 'optim.', which checkpoints reserve for optimizer state");
  }
  std::map<std::string, std::string> meta;
  for (const auto& [key, value] : metadata) {
    LOOM_CHECK(!starts_with(key, kOptim) && !starts_with(key, kLoom), "save_checkpoint: ", path,
               ": metadata key '", key, "' starts with 'optim.' or 'loom.', which checkpoints reserve");
    meta[key] = value;
  }
  if (optimizer) {
    OptimizerState state = optimizer->state_dict();
    meta[kOptim + "type"] = state.type;
    for (const auto& [key, value] : state.hyperparameters) meta[kOptim + key] = format_double(value);
    for (const auto& [pname, step] : state.steps) meta[kOptim + pname + kStepSuffix] = std::to_string(step);
    for (const auto& [key, t] : state.tensors) tensors.emplace_back(kOptim + key, t);
  }
  PhiloxState rng = default_generator().state();
  meta[kLoom + "rng_seed"] = std::to_string(rng.seed);
  meta[kLoom + "rng_offset"] = std::to_string(rng.offset);
  save_safetensors(path, tensors, meta);
}

std::map<std::string, std::string> load_checkpoint(const std::string& path, Module& module, Optimizer* optimizer,
                                                   bool restore_rng) {
  const char* fn = "load_checkpoint";
  // Integrity first: load_safetensors validates the header and byte ranges and names the file.
  SafetensorsContents contents;
  try {
    contents = load_safetensors_with_metadata(path);
  } catch (const Error& e) {
    LOOM_FAIL(fn, ": nothing was loaded: ", e.what());
  }
  std::vector<std::string> problems;

  // Split the file into the module's tensors, the optimizer's, and the metadata kinds.
  std::map<std::string, Tensor> module_tensors;
  OptimizerState optim_state;
  for (auto& [name, t] : contents.tensors) {
    if (starts_with(name, kOptim)) {
      optim_state.tensors[name.substr(kOptim.size())] = t;
    } else {
      module_tensors[name] = t;
    }
  }
  std::map<std::string, std::string> user;
  bool has_optim = false;
  PhiloxState rng;
  bool has_seed = false, has_offset = false;
  for (const auto& [key, value] : contents.metadata) {
    if (starts_with(key, kOptim)) {
      has_optim = true;
      std::string rest = key.substr(kOptim.size());
      if (rest == "type") {
        optim_state.type = value;
      } else if (ends_with(rest, kStepSuffix)) {
        int64_t step = 0;
        if (!parse_number(value, &step)) problems.push_back("metadata '" + key + "' is not an integer: '" + value + "'");
        optim_state.steps[rest.substr(0, rest.size() - kStepSuffix.size())] = step;
      } else {
        double v = 0;
        if (!parse_number(value, &v)) problems.push_back("metadata '" + key + "' is not a number: '" + value + "'");
        optim_state.hyperparameters[rest] = v;
      }
    } else if (key == kLoom + "rng_seed") {
      has_seed = parse_number(value, &rng.seed);
      if (!has_seed) problems.push_back("metadata '" + key + "' is not an unsigned integer: '" + value + "'");
    } else if (key == kLoom + "rng_offset") {
      has_offset = parse_number(value, &rng.offset);
      if (!has_offset) problems.push_back("metadata '" + key + "' is not an unsigned integer: '" + value + "'");
    } else if (!starts_with(key, kLoom)) {
      user[key] = value;
    }
  }

  for (const std::string& p : module.check_state_dict(module_tensors)) problems.push_back(module.name() + ": " + p);
  if (optimizer) {
    if (!has_optim && optim_state.tensors.empty()) {
      problems.push_back("the file holds no optimizer state, but an optimizer (" + optimizer->type() +
                         ") was given to restore");
    } else {
      for (const std::string& p : optimizer->check_state_dict(optim_state))
        problems.push_back("optimizer " + optimizer->type() + ": " + p);
    }
  }
  if (restore_rng && has_seed != has_offset) problems.push_back("metadata has only one of loom.rng_seed and loom.rng_offset");
  if (!problems.empty()) fail(fn, path, problems);

  // Everything checked: now copy. (load_state_dict re-checks, which cannot fail at this point.)
  module.load_state_dict(module_tensors);
  if (optimizer) optimizer->load_state_dict(optim_state);
  if (restore_rng && has_seed) default_generator().set_state(rng);
  return user;
}

}  // namespace loom::nn
