// Renders chat templates the way transformers.js's apply_chat_template does:
// @huggingface/jinja's Template (trim_blocks and lstrip_blocks on, the
// globals raise_exception and strftime_now), rendered with the context's
// keys as variables. The reference the C++ renderer is compared against.
//
// usage: node reference_render.mjs CASES.json [NODE_MODULES_DIR]
//   CASES.json: {"now": "2024-07-26T09:05:00", "cases": [{"template": "...", "context": {...}}, ...]}
//   "now" (optional) fixes the clock strftime_now reads (local time; run with TZ=UTC).
// Prints one JSON array: per case {"output": "..."} or {"error": "..."}.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [casesPath, modulesDir] = process.argv.slice(2);
if (!casesPath) {
  console.error("usage: node reference_render.mjs CASES.json [NODE_MODULES_DIR]");
  process.exit(2);
}
const input = JSON.parse(readFileSync(casesPath, "utf8"));
if (input.now) {
  const RealDate = Date;
  const fixed = new RealDate(input.now).getTime();
  globalThis.Date = class extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(fixed);
      else super(...args);
    }
    static now() {
      return fixed;
    }
  };
}
const entry = modulesDir
  ? pathToFileURL(path.join(modulesDir, "@huggingface/jinja/dist/index.js")).href
  : "@huggingface/jinja";
const { Template } = await import(entry);

const results = input.cases.map(({ template, context }) => {
  try {
    return { output: new Template(template).render(context ?? {}) };
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
});
process.stdout.write(JSON.stringify(results));
