// A chat template: parsed, then rendered with a conversation.
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_util.h"
#include "trainer/data/chat_template/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsinf;
  absl::StatusOr<trainer::ChatTemplate> tmpl =
      trainer::ChatTemplate::parse(fuzz::as_text(data, size), "fuzz");
  fuzz::check_contract(tmpl.status());
  if (!tmpl.ok()) return 0;
  static const nlohmann::json context = {
      {"messages",
       {{{"role", "system"}, {"content", "Be brief."}},
        {{"role", "user"}, {"content", "Hi {{ x }} \xc3\xa9"}},
        {{"role", "assistant"}, {"content", "Hello."}},
        {{"role", "user"}, {"content", ""}}}},
      {"add_generation_prompt", true},
      {"bos_token", "<s>"},
      {"eos_token", "</s>"}};
  fuzz::check_contract(tmpl->render(context).status());
  return 0;
}
