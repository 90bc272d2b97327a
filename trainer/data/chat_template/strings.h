// Python's str methods and the string parsing Python's int() and float() do,
// by code point where Python counts code points.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "trainer/data/chat_template/builtins.h"

namespace dsinf::trainer::jinja {

Value call_str_method(Renderer& r, const Value& self, const std::string& name,
                      const CallArgs& args);

// str.strip/lstrip/rstrip: `chars` None strips whitespace.
std::string py_strip(std::string_view s, const Value& chars, bool left, bool right);
std::string py_replace(Renderer& r, std::string_view s, std::string_view old,
                       std::string_view replacement, int64_t count);
std::string py_title(std::string_view s);       // str.title()
std::string py_capitalize(std::string_view s);  // str.capitalize()
std::vector<std::string> py_splitlines(std::string_view s, bool keepends);
// int(s, base) and float(s); nullopt where Python raises ValueError.
std::optional<int64_t> py_int(std::string_view s, int base);
std::optional<double> py_float(std::string_view s);
// format(value, spec): Python's format mini-language, for str.format.
std::string py_format_spec(const Value& v, std::string_view spec);

}  // namespace dsinf::trainer::jinja
