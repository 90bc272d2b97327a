// The model families, by model.type: the config's family table
// (trainer/config/model_config.cc) says which keys a family has; this one
// which code runs it. A decoder family like Llama's needs no row here.
#include <functional>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "trainer/models/gpt2/gpt2.h"
#include "trainer/models/llama/llama.h"
#include "trainer/models/model.h"

namespace dsinf::trainer {
namespace {

struct Family {
  std::string_view type;
  std::function<std::unique_ptr<Model>(const ModelConfig&)> make;
};

const Family kFamilies[] = {
    {"gpt2", [](const ModelConfig& c) { return std::make_unique<Gpt2Model>(c); }},
};

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> make_model(const ModelConfig& config) {
  const FamilyTraits* traits = find_family(config.type);
  if (traits != nullptr && traits->decoder) return std::make_unique<LlamaModel>(config);
  std::string known;
  for (const Family& family : kFamilies) {
    if (family.type == config.type) return family.make(config);
    absl::StrAppend(&known, known.empty() ? "" : ", ", std::string(family.type));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "model.type: \"", config.type, "\" is not a model family dsinf has (", known, ")"));
}

}  // namespace dsinf::trainer
