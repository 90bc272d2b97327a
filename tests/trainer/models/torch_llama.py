#!/usr/bin/python3
"""An independent float64 PyTorch model of the Llama architecture and its
relatives (llama, mistral, qwen2, qwen3), written from the published
architecture with Hugging Face's tensor names, used as the reference for
dsinf's C++ model. Debian's python3-torch has no `transformers`; this file
needs nothing beyond torch and numpy.

  golden --out DIR --family F [shape options]
      writes DIR/model: a Hugging Face model directory (config.json, bf16
      shards and model.safetensors.index.json) of random weights, and
      DIR/expected.safetensors: a batch, its mean loss and every gradient.
  eval --dir MODEL --data PATH --seq T [--batch B]
      loads a Hugging Face directory (strict: every tensor name and shape)
      and prints the mean token cross-entropy over every complete window.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import (bf16_bits_to_f32, read_safetensors, to_bf16_bits,  # noqa: E402
                            write_safetensors)

SHARD_MAGIC = b"DSINFTOK"


def read_hf_dir(path):
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for f in files:
        weights.update({n: a.astype(np.float64)
                        for n, a in read_safetensors(os.path.join(path, f)).items()})
    return json.load(open(os.path.join(path, "config.json"))), weights


def inverse_frequencies(cfg, D):
    """RoPE inverse frequencies after rope_scaling, from the published formulas."""
    theta = cfg.get("rope_theta", 10000.0)
    inv = np.array([1.0 / theta ** (2.0 * i / D) for i in range(D // 2)])
    s = cfg.get("rope_scaling") or {}
    kind = s.get("rope_type", s.get("type", "default"))
    if kind == "linear":
        inv = inv / s["factor"]
    elif kind == "llama3":
        factor, lo, hi = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
        old = s["original_max_position_embeddings"]
        out = []
        for f in inv:
            wavelen = 2 * math.pi / f
            if wavelen < old / hi:
                out.append(f)
            elif wavelen > old / lo:
                out.append(f / factor)
            else:
                smooth = (old / wavelen - lo) / (hi - lo)
                out.append((1 - smooth) * f / factor + smooth * f)
        inv = np.array(out)
    return torch.from_numpy(inv)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Shape:
    def __init__(self, cfg):
        self.cfg = cfg
        self.C = cfg["hidden_size"]
        self.L = cfg["num_hidden_layers"]
        self.NH = cfg["num_attention_heads"]
        self.KV = cfg.get("num_key_value_heads") or self.NH
        default_head_dim = 128 if cfg["model_type"] == "qwen3" else self.C // self.NH
        self.D = cfg.get("head_dim") or default_head_dim
        self.I = cfg["intermediate_size"]
        self.V = cfg["vocab_size"]
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.tied = cfg.get("tie_word_embeddings", False)
        family = cfg["model_type"]
        self.qkv_bias = family == "qwen2" or cfg.get("attention_bias", False)
        self.o_bias = cfg.get("attention_bias", False) and family in ("llama", "qwen3")
        self.mlp_bias = cfg.get("mlp_bias", False) and family == "llama"
        self.qk_norm = family == "qwen3"


def parameter_shapes(s):
    shapes = {"model.embed_tokens.weight": (s.V, s.C), "model.norm.weight": (s.C,)}
    if not s.tied:
        shapes["lm_head.weight"] = (s.V, s.C)
    for l in range(s.L):
        p = f"model.layers.{l}."
        shapes[p + "input_layernorm.weight"] = (s.C,)
        shapes[p + "post_attention_layernorm.weight"] = (s.C,)
        for name, rows in (("q", s.NH * s.D), ("k", s.KV * s.D), ("v", s.KV * s.D)):
            shapes[p + f"self_attn.{name}_proj.weight"] = (rows, s.C)
            if s.qkv_bias:
                shapes[p + f"self_attn.{name}_proj.bias"] = (rows,)
        shapes[p + "self_attn.o_proj.weight"] = (s.C, s.NH * s.D)
        if s.o_bias:
            shapes[p + "self_attn.o_proj.bias"] = (s.C,)
        if s.qk_norm:
            shapes[p + "self_attn.q_norm.weight"] = (s.D,)
            shapes[p + "self_attn.k_norm.weight"] = (s.D,)
        for name, shape in (("gate", (s.I, s.C)), ("up", (s.I, s.C)), ("down", (s.C, s.I))):
            shapes[p + f"mlp.{name}_proj.weight"] = shape
            if s.mlp_bias:
                shapes[p + f"mlp.{name}_proj.bias"] = (shape[0],)
    return shapes


def linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def losses_of(s, P, idx, targets):
    """Per-token cross-entropy of windows idx (B,T) with parameters P (name -> tensor)."""
    B, T = idx.shape
    x = P["model.embed_tokens.weight"][idx]
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inverse_frequencies(s.cfg, s.D))
    cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    g = P.get
    for l in range(s.L):
        p = f"model.layers.{l}."
        h = rms_norm(x, P[p + "input_layernorm.weight"], s.eps)
        q = linear(h, P[p + "self_attn.q_proj.weight"], g(p + "self_attn.q_proj.bias"))
        k = linear(h, P[p + "self_attn.k_proj.weight"], g(p + "self_attn.k_proj.bias"))
        v = linear(h, P[p + "self_attn.v_proj.weight"], g(p + "self_attn.v_proj.bias"))
        q = q.view(B, T, s.NH, s.D).transpose(1, 2)
        k = k.view(B, T, s.KV, s.D).transpose(1, 2)
        v = v.view(B, T, s.KV, s.D).transpose(1, 2)
        if s.qk_norm:
            q = rms_norm(q, P[p + "self_attn.q_norm.weight"], s.eps)
            k = rms_norm(k, P[p + "self_attn.k_norm.weight"], s.eps)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        k = k.repeat_interleave(s.NH // s.KV, dim=1)
        v = v.repeat_interleave(s.NH // s.KV, dim=1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(s.D)
        y = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ v
        y = y.transpose(1, 2).reshape(B, T, s.NH * s.D)
        x = x + linear(y, P[p + "self_attn.o_proj.weight"], g(p + "self_attn.o_proj.bias"))
        h = rms_norm(x, P[p + "post_attention_layernorm.weight"], s.eps)
        gate = linear(h, P[p + "mlp.gate_proj.weight"], g(p + "mlp.gate_proj.bias"))
        up = linear(h, P[p + "mlp.up_proj.weight"], g(p + "mlp.up_proj.bias"))
        x = x + linear(F.silu(gate) * up, P[p + "mlp.down_proj.weight"], g(p + "mlp.down_proj.bias"))
    x = rms_norm(x, P["model.norm.weight"], s.eps)
    head = P["model.embed_tokens.weight"] if s.tied else P["lm_head.weight"]
    logits = x @ head.T
    return F.cross_entropy(logits.reshape(-1, s.V), targets.reshape(-1), reduction="none")


def make_config(args):
    architecture = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                    "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[args.family]
    cfg = {"model_type": args.family, "architectures": [architecture], "hidden_size": args.hidden,
           "num_hidden_layers": args.layers, "num_attention_heads": args.heads,
           "num_key_value_heads": args.kv_heads, "intermediate_size": args.inter,
           "vocab_size": args.vocab, "max_position_embeddings": max(args.seq, 64),
           "rms_norm_eps": 1e-5, "rope_theta": args.rope_theta, "hidden_act": "silu",
           "tie_word_embeddings": args.tie, "torch_dtype": "bfloat16", "bos_token_id": 1,
           "sliding_window": None, "use_sliding_window": False}
    if args.head_dim:
        cfg["head_dim"] = args.head_dim
    elif args.family == "qwen3":  # Qwen3Config's own default is 128: real configs say
        cfg["head_dim"] = args.hidden // args.heads
    if args.family in ("llama", "qwen3"):
        cfg["attention_bias"] = args.bias
    if args.family == "llama":
        cfg["mlp_bias"] = args.bias
    if args.rope_scaling == "llama3":
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 16}
    elif args.rope_scaling == "linear":
        cfg["rope_scaling"] = {"type": "linear", "factor": 2.0}
    return cfg


def write_sharded(path, weights, shards):
    """bf16 tensors over `shards` files, with the index as transformers writes it."""
    os.makedirs(path, exist_ok=True)
    names = list(weights)
    per = -(-len(names) // shards)
    weight_map, total = {}, 0
    for i in range(shards):
        part = names[i * per:(i + 1) * per]
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        tensors = {n: to_bf16_bits(weights[n]).reshape(weights[n].shape) for n in part}
        write_safetensors(os.path.join(path, fname), tensors)
        for n in part:
            weight_map[n] = fname
            total += weights[n].size * 2
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def cmd_golden(args):
    rng = np.random.default_rng(args.seed)
    cfg = make_config(args)
    s = Shape(cfg)
    model_dir = os.path.join(args.out, "model")
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    weights, P = {}, {}
    for name, shape in parameter_shapes(s).items():
        norm = name.endswith("norm.weight")
        values = (1.0 if norm else 0.0) + 0.1 * rng.standard_normal(shape)
        weights[name] = values.astype(np.float32)
        exact = bf16_bits_to_f32(to_bf16_bits(weights[name])).reshape(shape)
        P[name] = torch.tensor(exact.astype(np.float64), requires_grad=True)
    write_sharded(model_dir, weights, args.shards)
    idx = rng.integers(0, s.V, size=(args.batch, args.seq))
    targets = rng.integers(0, s.V, size=(args.batch, args.seq))
    loss = losses_of(s, P, torch.from_numpy(idx), torch.from_numpy(targets)).mean()
    loss.backward()
    expected = {"loss": np.array([loss.item()]), "inputs": idx.astype(np.int32),
                "targets": targets.astype(np.int32)}
    for name, p in P.items():
        expected["grad." + name] = p.grad.numpy()
    write_safetensors(os.path.join(args.out, "expected.safetensors"), expected)
    print(json.dumps({"loss": loss.item()}))


def read_tokens(path):
    paths = [path]
    if os.path.isdir(path):
        paths = sorted(os.path.join(path, n) for n in os.listdir(path)
                       if os.path.isfile(os.path.join(path, n)))
    out = []
    for p in paths:
        data = open(p, "rb").read()
        if data[:8] == SHARD_MAGIC:
            width = struct.unpack("<I", data[12:16])[0]
            out.append(np.frombuffer(data[32:], dtype={2: "<u2", 4: "<u4"}[width]).astype(np.int64))
        else:
            out.append(np.frombuffer(data, dtype=np.uint8).astype(np.int64))
    return np.concatenate(out)


def cmd_eval(args):
    cfg, weights = read_hf_dir(args.dir)
    s = Shape(cfg)
    shapes = parameter_shapes(s)
    extra = set(weights) - set(shapes) - ({"lm_head.weight"} if s.tied else set())
    missing = set(shapes) - set(weights)
    if extra or missing:
        sys.exit(f"tensor names differ: extra {sorted(extra)} missing {sorted(missing)}")
    P = {}
    for name, shape in shapes.items():
        if tuple(weights[name].shape) != tuple(shape):
            sys.exit(f"{name}: shape {weights[name].shape}, expected {shape}")
        P[name] = torch.from_numpy(weights[name])
    if args.examples:
        return eval_examples(s, P, args)
    tokens, T = read_tokens(args.data), args.seq
    n = (len(tokens) - 1) // T
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, n, args.batch):
            w = range(start, min(n, start + args.batch))
            idx = torch.from_numpy(np.stack([tokens[i * T:(i + 1) * T] for i in w]))
            tgt = torch.from_numpy(np.stack([tokens[i * T + 1:(i + 1) * T + 1] for i in w]))
            losses = losses_of(s, P, idx, tgt)
            total += losses.sum().item()
            count += losses.numel()
    print(json.dumps({"loss": total / count, "tokens": count}))


def eval_examples(s, P, args):
    """SFT examples, each alone and unpadded: the mean over the positions whose
    target is trained (Hugging Face's -100 labels elsewhere), first seq+1 ids."""
    total, count = 0.0, 0
    with torch.no_grad():
        for e in json.load(open(args.examples)):
            ids, trained = e["ids"][:args.seq + 1], e["trained"][:args.seq + 1]
            idx = torch.tensor([ids[:-1]], dtype=torch.int64)
            tgt = torch.tensor([[t if k else -100 for t, k in zip(ids[1:], trained[1:])]],
                               dtype=torch.int64)
            losses = losses_of(s, P, idx, tgt)  # 0 where ignored
            total += losses.sum().item()
            count += int((tgt != -100).sum().item())
    print(json.dumps({"loss": total / count, "tokens": count}))


def main():
    torch.set_default_dtype(torch.float64)
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
    g.add_argument("--rope-scaling", default="none", choices=["none", "linear", "llama3"])
    g.add_argument("--tie", action="store_true")
    g.add_argument("--bias", action="store_true")
    g.add_argument("--shards", type=int, default=3)
    g.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("eval")
    e.add_argument("--dir", required=True)
    e.add_argument("--data")
    e.add_argument("--examples", help="JSON list of {ids, trained}: SFT examples, masked mean")
    e.add_argument("--seq", type=int, required=True)
    e.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    {"golden": cmd_golden, "eval": cmd_eval}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
