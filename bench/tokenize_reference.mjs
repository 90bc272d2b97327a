// `dsinf bench tokenize`'s peer: the same documents encoded by transformers.js's
// tokenizers (@lenml/tokenizers, from scripts/fixtures.sh) under node, timed
// after one warm-up pass. Prints one JSON line:
//   {"seconds": .., "tokens": .., "bytes": .., "documents": ..}
// usage: node tokenize_reference.mjs MODULES_DIR TOKENIZER_DIR DOCUMENTS_JSON
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const [modules, tokenizerDir, documentsFile] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(modules), "package.json"));
const { TokenizerLoader } = require("@lenml/tokenizers");
const read = (name) => JSON.parse(fs.readFileSync(path.join(tokenizerDir, name), "utf8"));
const configPath = path.join(tokenizerDir, "tokenizer_config.json");
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: read("tokenizer.json"),
  tokenizerConfig: fs.existsSync(configPath) ? read("tokenizer_config.json") : {},
});
const documents = JSON.parse(fs.readFileSync(documentsFile, "utf8"));
const encodeAll = () => {
  let tokens = 0;
  for (const d of documents) tokens += tokenizer.encode(d).length;
  return tokens;
};
encodeAll();
const start = process.hrtime.bigint();
const tokens = encodeAll();
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
const bytes = documents.reduce((n, d) => n + Buffer.byteLength(d, "utf8"), 0);
console.log(JSON.stringify({ seconds, tokens, bytes, documents: documents.length }));
