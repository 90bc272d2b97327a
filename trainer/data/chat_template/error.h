// How the renderer's layers report failure to the API boundary
// (chat_template.cc), which turns it into an absl::Status.
//
// The lexer, parser and evaluator throw TemplateError rather than threading a
// StatusOr through every expression: an error deep in an expression unwinds
// the whole render at once and the boundary catches it (with std::bad_alloc),
// so no exception ever leaves the library.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"

namespace dsinf::trainer::jinja {

// Concatenates strings, string_views and numbers (absl::StrCat here takes
// no std::string_view: this abseil is built with its own string_view).
template <typename... Parts>
std::string str_cat(const Parts&... parts) {
  std::string out;
  const auto append = [&out](const auto& part) {
    using T = std::decay_t<decltype(part)>;
    if constexpr (std::is_same_v<T, char>) {
      out.push_back(part);
    } else if constexpr (std::is_arithmetic_v<T>) {
      out += std::to_string(part);
    } else {
      out += std::string_view(part);
    }
  };
  (append(parts), ...);
  return out;
}

struct TemplateError {
  absl::StatusCode code = absl::StatusCode::kInvalidArgument;
  std::string message;
  int line = 0;  // 0 until a node with a line number sees the error pass
};

// kInvalidArgument: the template or its data is wrong.
[[noreturn]] inline void fail(std::string message) {
  throw TemplateError{absl::StatusCode::kInvalidArgument, std::move(message), 0};
}

// kResourceExhausted: a limit of the renderer (nesting, loop steps, output
// size) was reached; the template may be fine for a renderer without limits.
[[noreturn]] inline void fail_limit(std::string message) {
  throw TemplateError{absl::StatusCode::kResourceExhausted, std::move(message), 0};
}

}  // namespace dsinf::trainer::jinja
