#pragma once
// loom::Error and LOOM_CHECK: every user-facing failure is an exception whose message names the op and the
// shapes, dtypes or devices involved.
#include <sstream>
#include <stdexcept>
#include <string>

namespace loom {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace loom

// LOOM_CHECK(cond, "matmul: shapes ", a.shape(), " and ", b.shape(), " do not align")
#define LOOM_CHECK(cond, ...)                                 \
  do {                                                        \
    if (!(cond)) {                                            \
      throw ::loom::Error(::loom::detail::concat(__VA_ARGS__)); \
    }                                                         \
  } while (0)

#define LOOM_FAIL(...) throw ::loom::Error(::loom::detail::concat(__VA_ARGS__))
