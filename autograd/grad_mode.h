#pragma once
// Grad mode: whether ops record onto the tape. Thread-local, as in PyTorch: each thread starts enabled.
namespace loom {

class GradMode {
 public:
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

// Records nothing while alive (torch.no_grad): evaluation, optimizer updates, in-place edits of parameters.
class NoGradGuard {
 public:
  NoGradGuard() : previous_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Sets grad mode to `enabled` while alive (torch.set_grad_enabled); recomputation in backward uses it.
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled) : previous_(GradMode::is_enabled()) { GradMode::set_enabled(enabled); }
  ~GradModeGuard() { GradMode::set_enabled(previous_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace loom
