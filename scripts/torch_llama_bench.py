#!/usr/bin/env python3
"""PyTorch side of a back-to-back CPU training-throughput comparison with dsinf
for the Llama family.

Builds the model a dsinf config describes (model.* keys with Hugging Face
names: embedding, per layer RMSNorm, q/k/v/o projections with grouped-query
attention and rotary embeddings, RMSNorm, SwiGLU MLP; final RMSNorm; lm_head
tied or not), in fp32 on the CPU with --threads threads, and times full
training steps on random tokens: forward and backward of every micro-batch
(train_micro_batch_size_per_gpu x gradient_accumulation_steps windows of
data.seq_len tokens), global grad-norm clipping and AdamW. Attention is
F.scaled_dot_product_attention(is_causal=True), or on torch < 2.0 (Debian 12's
1.13) the materialised causal softmax.

Reports the median step seconds over --steps steps after --warmup steps and
tokens/s = batch x T / step. The matching pair, run back to back:
    OMP_NUM_THREADS=2 build/dsinf bench step configs/llama-tiny.json --json
    python3 scripts/torch_llama_bench.py --config configs/llama-tiny.json --threads 2

Written for dsinf from scratch; no code is copied from other projects.
"""
import argparse
import json
import statistics
import sys
import time


def build(torch, m):
    nn, F = torch.nn, torch.nn.functional
    C, L, NH = m["hidden_size"], m["num_hidden_layers"], m["num_attention_heads"]
    KV = m.get("num_key_value_heads", NH)
    D = m.get("head_dim", C // NH)
    I, V = m["intermediate_size"], m["vocab_size"]
    eps, theta = m.get("rms_norm_eps", 1e-6), m.get("rope_theta", 10000.0)
    tied = m.get("tie_word_embeddings", False)

    class RMSNorm(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.weight

    def rotate(x, cos, sin):
        h = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = RMSNorm(C), RMSNorm(C)
            self.q = nn.Linear(C, NH * D, bias=False)
            self.k = nn.Linear(C, KV * D, bias=False)
            self.v = nn.Linear(C, KV * D, bias=False)
            self.o = nn.Linear(NH * D, C, bias=False)
            self.gate = nn.Linear(C, I, bias=False)
            self.up = nn.Linear(C, I, bias=False)
            self.down = nn.Linear(I, C, bias=False)

        def forward(self, x, cos, sin):
            B, T, _ = x.shape
            h = self.ln1(x)
            q = self.q(h).view(B, T, NH, D).transpose(1, 2)
            k = self.k(h).view(B, T, KV, D).transpose(1, 2)
            v = self.v(h).view(B, T, KV, D).transpose(1, 2)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            k, v = k.repeat_interleave(NH // KV, 1), v.repeat_interleave(NH // KV, 1)
            if hasattr(F, "scaled_dot_product_attention"):
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:  # torch < 2.0: the materialised causal softmax
                s = (q @ k.transpose(-2, -1)) / D ** 0.5
                mask = torch.ones(T, T, dtype=torch.bool).tril()
                y = torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v
            x = x + self.o(y.transpose(1, 2).reshape(B, T, NH * D))
            h = self.ln2(x)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, C)
            self.layers = nn.ModuleList([Layer() for _ in range(L)])
            self.norm = RMSNorm(C)
            self.head = None if tied else nn.Linear(C, V, bias=False)

        def forward(self, idx, targets):
            T = idx.shape[1]
            inv = 1.0 / theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
            freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv)
            emb = torch.cat([freqs, freqs], -1)
            cos, sin = emb.cos().float(), emb.sin().float()
            x = self.embed(idx)
            for layer in self.layers:
                x = layer(x, cos, sin)
            x = self.norm(x)
            logits = x @ (self.embed.weight if self.head is None else self.head.weight).T
            return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))

    return Model()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    try:
        import torch
    except ImportError:
        print("torch_llama_bench: PyTorch is not installed", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.config))
    m, T = cfg["model"], cfg["data"]["seq_len"]
    micro = cfg.get("train_micro_batch_size_per_gpu", 1)
    gas = cfg.get("gradient_accumulation_steps", 1)
    params = cfg.get("optimizer", {}).get("params", {})
    torch.manual_seed(0)
    model = build(torch, m)
    opt = torch.optim.AdamW(model.parameters(), lr=params.get("lr", 1e-3),
                            betas=tuple(params.get("betas", (0.9, 0.999))),
                            weight_decay=params.get("weight_decay", 0.0), foreach=True)
    V = m["vocab_size"]
    times = []
    for step in range(a.warmup + a.steps):
        batches = [(torch.randint(0, V, (micro, T)), torch.randint(0, V, (micro, T)))
                   for _ in range(gas)]
        start = time.perf_counter()
        for idx, tgt in batches:
            (model(idx, tgt) / gas).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.get("gradient_clipping", 1.0))
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= a.warmup:
            times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    tokens = micro * gas * T
    result = {"step_s": step_s, "tokens_per_s": tokens / step_s, "threads": a.threads,
              "params": sum(p.numel() for p in model.parameters()), "torch": torch.__version__}
    print(json.dumps(result) if a.json else
          f"torch {torch.__version__} CPU fp32, {a.threads} threads: {result['params']} parameters, "
          f"step {step_s:.3f} s, {result['tokens_per_s']:.0f} tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
