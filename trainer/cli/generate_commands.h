// `dsinf generate` (prompts from the command line or a JSONL file, the text
// streamed to stdout) and `dsinf chat` (a conversation on a terminal, or one
// user line after another from a pipe). Each returns the exit status (2: bad
// input, with one message naming the flag, key, or file and line).
#pragma once

#include <string>
#include <vector>

#include "trainer/config/runtime_spec.h"

namespace dsinf::trainer {

int generate_main(const std::vector<std::string>& args, const RunEnvironment& env);
int chat_main(const std::vector<std::string>& args, const RunEnvironment& env);

}  // namespace dsinf::trainer
