// jinja2's grammar, for the subset chat templates use. Statements: if/elif/
// else, for (with `if`, `else`, loop unpacking), set (also `set ns.attr`
// and the block form), break/continue (transformers enables loopcontrols),
// print, generation (transformers' assistant-mask tag, rendered through).
// Refused, naming the tag: macro, call, filter, with, include, import, from,
// extends, block, autoescape; recursive loops.
#pragma once

#include <string_view>

#include "trainer/data/chat_template/ast.h"

namespace dsinf::trainer::jinja {

// Throws TemplateError with the line of what it cannot parse. The result's
// frames carry their variables (scoping.h).
Template parse_template(std::string_view source);

}  // namespace dsinf::trainer::jinja
