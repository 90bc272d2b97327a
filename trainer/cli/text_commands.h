// The commands about text: `dsinf tokenize` (documents to a token shard with
// a Hugging Face tokenizer), `dsinf template` (a conversation rendered with a
// model's chat template) and `dsinf bench tokenize` (encoding speed against
// transformers.js's tokenizer on the same documents). Each returns the exit
// status (2: bad input, naming the file).
#pragma once

#include <string>
#include <vector>

namespace dsinf::trainer {

int tokenize_main(const std::vector<std::string>& args);
int template_main(const std::vector<std::string>& args);
int bench_tokenize_main(const std::vector<std::string>& args);

}  // namespace dsinf::trainer
