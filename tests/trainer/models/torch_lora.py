#!/usr/bin/python3
"""The tests' own float64 PyTorch LoRA over torch_llama.py's model, written
from the LoRA paper and PEFT's documented conventions (not from dsinf):
y = x W^T + b + scale * (x A^T) B^T with A (r, in), B (out, r), scale
alpha / r (alpha / sqrt(r) with rslora); modules_to_save: a trained copy of
lm_head replaces it in the logits.

  golden --out DIR [torch_llama.py golden shape options] --r R --alpha A
         [--rslora] [--targets q_proj,v_proj,...] [--save-lm-head]
      writes DIR/model (the frozen base, a sharded bf16 Hugging Face
      directory), DIR/adapter (a PEFT adapter directory: adapter_config.json
      and adapter_model.safetensors with random A and B, so that every
      adapter gradient is non-zero) and DIR/expected.safetensors: a batch,
      its mean loss and the gradient of every adapter tensor, named as dsinf's
      adapter chunks name them.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_llama  # noqa: E402
from safetensors_io import bf16_bits_to_f32, to_bf16_bits, write_safetensors  # noqa: E402

MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PEFT_PREFIX = "base_model.model."


def module_path(l, m):
    return f"model.layers.{l}.{'self_attn' if MODULES.index(m) <= 3 else 'mlp'}.{m}"


def with_lora(adapters, scale):
    """torch_llama's linear, plus the adapter of the weight it is given."""
    base_linear = torch_llama.linear

    def linear(x, w, b=None):
        y = base_linear(x, w, b)
        if id(w) not in adapters:
            return y
        A, B = adapters[id(w)]
        return y + ((x @ A.T) @ B.T) * scale
    return linear


def cmd_golden(args):
    rng = np.random.default_rng(args.seed)
    cfg = torch_llama.make_config(args)
    s = torch_llama.Shape(cfg)
    model_dir = os.path.join(args.out, "model")
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    weights, P = {}, {}
    for name, shape in torch_llama.parameter_shapes(s).items():
        norm = name.endswith("norm.weight")
        values = (1.0 if norm else 0.0) + 0.1 * rng.standard_normal(shape)
        weights[name] = values.astype(np.float32)
        exact = bf16_bits_to_f32(to_bf16_bits(weights[name])).reshape(shape)
        P[name] = torch.tensor(exact.astype(np.float64))  # frozen
    torch_llama.write_sharded(model_dir, weights, args.shards)

    targets = args.targets.split(",")
    scale = args.alpha / (math.sqrt(args.r) if args.rslora else args.r)
    trained, peft_file, adapters = {}, {}, {}
    for l in range(s.L):
        for m in targets:
            W = P[module_path(l, m) + ".weight"]
            out_dim, in_dim = W.shape
            for part, shape in (("lora_A", (args.r, in_dim)), ("lora_B", (out_dim, args.r))):
                name = f"{module_path(l, m)}.{part}.weight"
                values = (0.2 * rng.standard_normal(shape)).astype(np.float32)
                peft_file[PEFT_PREFIX + name] = values
                trained[name] = torch.tensor(values.astype(np.float64), requires_grad=True)
            adapters[id(W)] = (trained[f"{module_path(l, m)}.lora_A.weight"],
                               trained[f"{module_path(l, m)}.lora_B.weight"])
    saved = []
    if args.save_lm_head:
        saved = ["lm_head"]
        copy = (P["lm_head.weight"].numpy() + 0.05 * rng.standard_normal(P["lm_head.weight"].shape))
        copy = copy.astype(np.float32)
        peft_file[PEFT_PREFIX + "lm_head.weight"] = copy
        trained["lm_head.modules_to_save.default.weight"] = torch.tensor(
            copy.astype(np.float64), requires_grad=True)
        P["lm_head.weight"] = trained["lm_head.modules_to_save.default.weight"]
    adapter_dir = os.path.join(args.out, "adapter")
    os.makedirs(adapter_dir, exist_ok=True)
    write_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"), peft_file)
    with open(os.path.join(adapter_dir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": args.r,
                   "lora_alpha": args.alpha, "lora_dropout": 0.0, "target_modules": targets,
                   "use_rslora": args.rslora, "bias": "none", "fan_in_fan_out": False,
                   "modules_to_save": saved or None, "rank_pattern": {}, "alpha_pattern": {},
                   "layers_to_transform": None, "use_dora": False}, f, indent=2)

    torch_llama.linear = with_lora(adapters, scale)
    idx = rng.integers(0, s.V, size=(args.batch, args.seq))
    labels = rng.integers(0, s.V, size=(args.batch, args.seq))
    loss = torch_llama.losses_of(s, P, torch.from_numpy(idx), torch.from_numpy(labels)).mean()
    loss.backward()
    expected = {"loss": np.array([loss.item()]), "inputs": idx.astype(np.int32),
                "targets": labels.astype(np.int32)}
    for name, t in trained.items():
        expected["grad." + name] = t.grad.numpy()
    write_safetensors(os.path.join(args.out, "expected.safetensors"), expected)
    print(json.dumps({"loss": loss.item(), "adapter_tensors": len(trained)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("golden")
    g.add_argument("--out", required=True)
    g.add_argument("--family", default="llama", choices=["llama", "mistral", "qwen2", "qwen3"])
    g.add_argument("--hidden", type=int, default=32)
    g.add_argument("--layers", type=int, default=2)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--kv-heads", type=int, default=2)
    g.add_argument("--head-dim", type=int, default=0)
    g.add_argument("--inter", type=int, default=48)
    g.add_argument("--vocab", type=int, default=300)
    g.add_argument("--seq", type=int, default=16)
    g.add_argument("--batch", type=int, default=2)
    g.add_argument("--rope-theta", type=float, default=10000.0)
    g.add_argument("--rope-scaling", default="none")
    g.add_argument("--tie", action="store_true")
    g.add_argument("--bias", action="store_true")
    g.add_argument("--shards", type=int, default=2)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--r", type=int, default=4)
    g.add_argument("--alpha", type=float, default=8.0)
    g.add_argument("--rslora", action="store_true")
    g.add_argument("--targets", default=",".join(MODULES))
    g.add_argument("--save-lm-head", action="store_true")
    args = parser.parse_args()
    cmd_golden(args)


if __name__ == "__main__":
    main()
