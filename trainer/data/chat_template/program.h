// The compiled template behind ChatTemplate, and the entry points below the
// public API: tests use them to render with a fixed clock.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "trainer/data/chat_template/ast.h"
#include "trainer/data/chat_template/chat_template.h"
#include "trainer/data/chat_template/renderer.h"

namespace dsinf::trainer {

struct ChatTemplate::Program {
  std::string origin;
  jinja::Template tmpl;
};

namespace jinja {

absl::StatusOr<std::shared_ptr<const ChatTemplate::Program>> compile(std::string_view source,
                                                                     std::string origin);
absl::StatusOr<std::string> render_program(const ChatTemplate::Program& program,
                                           const nlohmann::json& context,
                                           const RenderOptions& options);
// With the caller's key order kept (tool schemas printed by tojson, dicts
// iterated): as transformers renders a Python dict.
absl::StatusOr<std::string> render_program_ordered(const ChatTemplate::Program& program,
                                                   const nlohmann::ordered_json& context,
                                                   const RenderOptions& options);

}  // namespace jinja
}  // namespace dsinf::trainer
