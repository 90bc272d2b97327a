#!/usr/bin/python3
"""The float64 reference of generation for the Llama family: greedy
continuation of a prompt by recomputing the whole sequence each step (no
cache), with the full forward's logits at every position. The model is
torch_llama.py's Hugging Face directory format; the forward is written here
again from the published architecture (independent of dsinf's decoder).

  greedy --dir MODEL --prompt 1,2,3 --new N
      prints {"tokens": [...], "margins": [...], "logits": [[...], ...]}:
      the N greedy tokens (ties to the lowest id), each step's gap between
      the two largest logits, and the logits (V) of every position of the
      prompt and the generated tokens but the last.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_llama import (Shape, inverse_frequencies, linear, read_hf_dir,  # noqa: E402
                         rms_norm, rotate)


def logits_of(s, P, idx):
    """Logits (T, V) of the sequence idx (T) with parameters P."""
    T = idx.shape[0]
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
        q = q.view(T, s.NH, s.D).transpose(0, 1)
        k = k.view(T, s.KV, s.D).transpose(0, 1)
        v = v.view(T, s.KV, s.D).transpose(0, 1)
        if s.qk_norm:
            q = rms_norm(q, P[p + "self_attn.q_norm.weight"], s.eps)
            k = rms_norm(k, P[p + "self_attn.k_norm.weight"], s.eps)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        k = k.repeat_interleave(s.NH // s.KV, dim=0)
        v = v.repeat_interleave(s.NH // s.KV, dim=0)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(s.D)
        y = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ v
        y = y.transpose(0, 1).reshape(T, s.NH * s.D)
        x = x + linear(y, P[p + "self_attn.o_proj.weight"], g(p + "self_attn.o_proj.bias"))
        h = rms_norm(x, P[p + "post_attention_layernorm.weight"], s.eps)
        gate = linear(h, P[p + "mlp.gate_proj.weight"], g(p + "mlp.gate_proj.bias"))
        up = linear(h, P[p + "mlp.up_proj.weight"], g(p + "mlp.up_proj.bias"))
        x = x + linear(F.silu(gate) * up, P[p + "mlp.down_proj.weight"], g(p + "mlp.down_proj.bias"))
    x = rms_norm(x, P["model.norm.weight"], s.eps)
    head = P["model.embed_tokens.weight"] if s.tied else P["lm_head.weight"]
    return x @ head.T


def cmd_greedy(args):
    cfg, weights = read_hf_dir(args.dir)
    s = Shape(cfg)
    P = {n: torch.from_numpy(a) for n, a in weights.items()}
    seq = [int(t) for t in args.prompt.split(",")]
    tokens, margins = [], []
    with torch.no_grad():
        for _ in range(args.new):
            last = logits_of(s, P, torch.tensor(seq, dtype=torch.int64))[-1]
            top2 = torch.topk(last, 2).values
            token = int(torch.argmax(last))  # the first of equal maxima: the lowest id
            tokens.append(token)
            margins.append(float(top2[0] - top2[1]))
            seq.append(token)
        logits = logits_of(s, P, torch.tensor(seq[:-1], dtype=torch.int64))
    print(json.dumps({"tokens": tokens, "margins": margins, "logits": logits.tolist()}))


def main():
    torch.set_default_dtype(torch.float64)
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("greedy")
    g.add_argument("--dir", required=True)
    g.add_argument("--prompt", required=True)
    g.add_argument("--new", type=int, required=True)
    args = parser.parse_args()
    {"greedy": cmd_greedy}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
