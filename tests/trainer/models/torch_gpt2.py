#!/usr/bin/python3
"""An independent GPT-2 in PyTorch (float64), with Hugging Face GPT2LMHeadModel
names and layouts, used as the reference for dsinf's C++ model.

  golden --out DIR [shape options]   random HF-layout weights, a batch, and the
                                     expected loss and every gradient
  eval --weights FILE --data PATH --n_positions T [--batch B]
                                     loads a safetensors file (strict: every
                                     tensor name must match) and prints the mean
                                     token cross-entropy over every complete window

Safetensors are read and written here with the standard library and numpy, so
nothing beyond Debian's python3-torch is needed.
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
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

class Conv1D(torch.nn.Module):
    """Hugging Face's Conv1D: weight (in, out), y = x @ W + b."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(n_in, n_out))
        self.bias = torch.nn.Parameter(torch.empty(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class Attention(torch.nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.c_attn = Conv1D(C, 3 * C)
        self.c_proj = Conv1D(C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.NH
        q, k, v = (t.view(B, T, self.NH, hs).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        scores = scores.masked_fill(~mask, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(torch.nn.Module):
    def __init__(self, C):
        super().__init__()
        self.c_fc = Conv1D(C, 4 * C)
        self.c_proj = Conv1D(4 * C, C)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(torch.nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.ln_1 = torch.nn.LayerNorm(C, eps=1e-5)
        self.attn = Attention(C, NH)
        self.ln_2 = torch.nn.LayerNorm(C, eps=1e-5)
        self.mlp = MLP(C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(torch.nn.Module):
    def __init__(self, L, NH, C, T, V):
        super().__init__()
        self.wte = torch.nn.Embedding(V, C)
        self.wpe = torch.nn.Embedding(T, C)
        self.h = torch.nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.ln_f = torch.nn.LayerNorm(C, eps=1e-5)


class GPT2(torch.nn.Module):
    def __init__(self, L, NH, C, T, V):
        super().__init__()
        self.transformer = Transformer(L, NH, C, T, V)

    def forward(self, idx, targets):
        tr = self.transformer
        B, T = idx.shape
        x = tr.wte(idx) + tr.wpe(torch.arange(T))
        for block in tr.h:
            x = block(x)
        logits = tr.ln_f(x) @ tr.wte.weight.T  # tied lm_head
        losses = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1),
                                 reduction="none")
        return losses


def shapes_from_weights(weights):
    V, C = weights["transformer.wte.weight"].shape
    T = weights["transformer.wpe.weight"].shape[0]
    L = len({k.split(".")[2] for k in weights if k.startswith("transformer.h.")})
    return L, C, T, V


def cmd_golden(args):
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    L, NH, C, T, V, B = args.n_layer, args.n_head, args.n_embd, args.n_positions, args.vocab, args.batch
    model = GPT2(L, NH, C, T, V)
    weights = {}
    for name, p in model.named_parameters():
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
            values = 1.0 + 0.1 * rng.standard_normal(p.shape)
        else:
            values = 0.1 * rng.standard_normal(p.shape)
        weights[name] = values.astype(np.float32)  # what dsinf will read
        with torch.no_grad():
            p.copy_(torch.from_numpy(weights[name].astype(np.float64)))
    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, "weights.safetensors"), weights)
    idx = rng.integers(0, V, size=(B, T)).astype(np.int32)
    targets = rng.integers(0, V, size=(B, T)).astype(np.int32)
    losses = model(torch.from_numpy(idx).long(), torch.from_numpy(targets).long())
    loss = losses.mean()
    loss.backward()
    expected = {"loss": np.array([loss.item()]), "inputs": idx, "targets": targets}
    for name, p in model.named_parameters():
        expected["grad." + name] = p.grad.numpy()
    write_safetensors(os.path.join(args.out, "expected.safetensors"), expected)
    print(json.dumps({"loss": loss.item()}))


def read_tokens(path):
    paths = [path]
    if os.path.isdir(path):
        paths = sorted(os.path.join(path, n) for n in os.listdir(path)
                       if os.path.isfile(os.path.join(path, n)))
    data = b"".join(open(p, "rb").read() for p in paths)
    return np.frombuffer(data, dtype=np.uint8).astype(np.int64)


def cmd_eval(args):
    weights = read_safetensors(args.weights)
    L, C, T, V = shapes_from_weights(weights)
    model = GPT2(L, args.n_head, C, T, V)
    state = {k: torch.from_numpy(v.astype(np.float64)) for k, v in weights.items()}
    model.load_state_dict(state, strict=True)  # every name and shape must match
    tokens = read_tokens(args.data)
    n = (len(tokens) - 1) // T
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, n, args.batch):
            w = range(start, min(n, start + args.batch))
            idx = torch.from_numpy(np.stack([tokens[i * T:(i + 1) * T] for i in w]))
            tgt = torch.from_numpy(np.stack([tokens[i * T + 1:(i + 1) * T + 1] for i in w]))
            losses = model(idx, tgt)
            total += losses.sum().item()
            count += losses.numel()
    print(json.dumps({"loss": total / count, "tokens": count}))


def main():
    torch.set_default_dtype(torch.float64)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("golden")
    g.add_argument("--out", required=True)
    g.add_argument("--n_layer", type=int, default=2)
    g.add_argument("--n_head", type=int, default=2)
    g.add_argument("--n_embd", type=int, default=16)
    g.add_argument("--n_positions", type=int, default=8)
    g.add_argument("--vocab", type=int, default=300)
    g.add_argument("--batch", type=int, default=3)
    g.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("eval")
    e.add_argument("--weights", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--n_head", type=int, required=True)
    e.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    {"golden": cmd_golden, "eval": cmd_eval}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
