#!/usr/bin/env python3
"""Checks dsinf's Hugging Face directories against `transformers` itself, on a
machine that has it (the GPU machines do; Debian's python3-torch has not).

For each family (llama with llama3 rope scaling and tied embeddings, mistral
with an explicit head_dim, qwen2 with q/k/v biases, qwen3 with q/k norms):
  1. tests/trainer/models/torch_llama.py writes a random bf16 checkpoint
     directory and a token shard;
  2. the mean token cross-entropy over every window is computed three ways:
     `dsinf eval` (CPU backend), the float64 reference, and
     AutoModelForCausalLM.from_pretrained in float32;
  3. dsinf trains two steps from the directory and exports it; transformers
     loads the export and must give the loss `dsinf eval` reports.
Every pair must agree within 1e-4 relative. Prints one JSON line per family
and exits 1 if any check failed.

    python3 scripts/transformers_check.py --dsinf build/dsinf --out DIR
"""
import argparse
import json
import os
import struct
import subprocess
import sys

FAMILIES = {
    "llama": "--family llama --heads 4 --kv-heads 2 --rope-scaling llama3 --tie",
    "mistral": "--family mistral --heads 4 --kv-heads 2 --head-dim 16",
    "qwen2": "--family qwen2 --heads 4 --kv-heads 2",
    "qwen3": "--family qwen3 --heads 4 --kv-heads 1",
}
SEQ = 16


def write_shard(path, tokens):
    with open(path, "wb") as f:
        f.write(b"DSINFTOK" + struct.pack("<IIQQ", 1, 2, len(tokens), 0))
        f.write(b"".join(struct.pack("<H", t) for t in tokens))


def transformers_loss(model_dir, tokens):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    n = (len(tokens) - 1) // SEQ
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(n):
            window = torch.tensor(tokens[i * SEQ:(i + 1) * SEQ + 1]).unsqueeze(0)
            logits = model(window[:, :-1]).logits.double()
            losses = torch.nn.functional.cross_entropy(logits[0], window[0, 1:], reduction="sum")
            total += losses.item()
            count += SEQ
    return total / count


def dsinf_config(out, model_dir, data, output_dir, steps):
    config = {"train_batch_size": 2, "train_micro_batch_size_per_gpu": 2, "device": "cpu",
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
              "model": {"init_from": model_dir}, "data": {"path": data, "seq_len": SEQ},
              "train": {"steps": steps, "output_dir": output_dir}}
    path = os.path.join(out, os.path.basename(output_dir) + ".json")
    json.dump(config, open(path, "w"))
    return path


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr[-500:]}")
    return r.stdout


def dsinf_eval(dsinf, config):
    for line in run([dsinf, "eval", config, "--json"]).splitlines():
        if '"loss"' in line:
            return json.loads(line)["loss"]
    raise RuntimeError("dsinf eval printed no loss")


def check_family(args, family, options, reference):
    out = os.path.join(args.out, family)
    os.makedirs(out, exist_ok=True)
    run([sys.executable, reference, "golden", "--out", out] + options.split())
    tokens = [(i * 7919 + 13) % 300 for i in range(600)]
    data = os.path.join(out, "tokens.bin")
    write_shard(data, tokens)
    model = os.path.join(out, "model")
    ref = json.loads(run([sys.executable, reference, "eval", "--dir", model, "--data", data,
                          "--seq", str(SEQ)]))["loss"]
    ours = dsinf_eval(args.dsinf, dsinf_config(out, model, data, os.path.join(out, "none"), 1))
    theirs = transformers_loss(model, tokens)
    trained = dsinf_config(out, model, data, os.path.join(out, "trained"), 2)
    run([args.dsinf, "train", trained])
    exported = os.path.join(out, "export")
    run([args.dsinf, "export", trained, "--out", exported])
    after = dsinf_eval(args.dsinf, trained)
    after_theirs = transformers_loss(exported, tokens)
    close = lambda a, b: abs(a - b) <= 1e-4 * abs(b)
    ok = close(ours, ref) and close(theirs, ref) and close(after_theirs, after)
    return {"family": family, "ok": ok, "dsinf": ours, "reference": ref, "transformers": theirs,
            "dsinf_after_training": after, "transformers_on_export": after_theirs}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsinf", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    try:
        import transformers  # noqa: F401
    except ImportError:
        print("transformers_check: transformers is not installed", file=sys.stderr)
        return 2
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    reference = os.path.join(root, "tests", "trainer", "models", "torch_llama.py")
    failed = 0
    for family, options in FAMILIES.items():
        try:
            result = check_family(args, family, options, reference)
        except Exception as e:  # report and go on to the next family
            result = {"family": family, "ok": False, "error": str(e)}
        failed += not result["ok"]
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
