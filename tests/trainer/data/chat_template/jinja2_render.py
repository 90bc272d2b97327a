"""Renders chat templates the way transformers' apply_chat_template does.

Python jinja2's ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True) with the loopcontrols extension and {% generation %}, the globals
raise_exception and strftime_now, and transformers' tojson filter (json.dumps,
ensure_ascii=False). A second reference beside reference_render.mjs: where
@huggingface/jinja departs from jinja2, jinja2 is what transformers runs.

usage: python3 jinja2_render.py CASES.json
  CASES.json as for reference_render.mjs; prints the same JSON array.
"""
import datetime
import json
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationTag(jinja2.ext.Extension):
    """transformers' {% generation %} (AssistantTracker), without the tracking:
    a call block that renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env(now):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return now.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        data = json.load(f)
    now = datetime.datetime.fromisoformat(data["now"]) if data.get("now") else datetime.datetime.now()
    env = make_env(now)
    results = []
    for case in data["cases"]:
        try:
            out = env.from_string(case["template"]).render(**(case.get("context") or {}))
            results.append({"output": out})
        except Exception as e:  # noqa: BLE001 -- every failure is a result here
            results.append({"error": f"{type(e).__name__}: {e}"})
    sys.stdout.write(json.dumps(results, ensure_ascii=False))


if __name__ == "__main__":
    main()
