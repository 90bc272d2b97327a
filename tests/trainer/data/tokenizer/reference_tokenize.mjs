// The reference for trainer_tokenizer_test: transformers.js's tokenizers
// (@lenml/tokenizers, a JavaScript port of Hugging Face's) encoding each text
// as `tokenizer.encode(text)` does by default (special tokens added) and
// decoding those ids back.
//
//   node reference_tokenize.mjs MODULE DIR TEXTS
//
// MODULE: @lenml/tokenizers' dist/main.mjs; DIR: a directory holding
// tokenizer.json and tokenizer_config.json; TEXTS: a JSON array of strings.
// Prints one JSON object a line, one per text:
//   {"ids": [...], "decoded": "...", "decoded_skip_special": "..."}
// (decode without clean_up_tokenization_spaces, which is transformers' and
// not the tokenizers library's).
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [modulePath, dir, textsPath] = process.argv.slice(2);
if (!modulePath || !dir || !textsPath) {
  console.error("usage: node reference_tokenize.mjs MODULE DIR TEXTS");
  process.exit(2);
}
const { TokenizerLoader } = await import(pathToFileURL(modulePath).href);
const read = (path) => JSON.parse(readFileSync(path, "utf8"));
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: read(`${dir}/tokenizer.json`),
  tokenizerConfig: read(`${dir}/tokenizer_config.json`),
});

const decode = (ids, skip) => {
  if (ids.length === 0) return "";  // transformers.js refuses an empty list
  return tokenizer.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false });
};
const lines = [];
for (const text of read(textsPath)) {
  const ids = tokenizer.encode(text);
  lines.push(JSON.stringify({ ids, decoded: decode(ids, false), decoded_skip_special: decode(ids, true) }));
}
process.stdout.write(lines.join("\n") + "\n");
