#!/usr/bin/env python3
"""PyTorch side of a back-to-back GPT-2 training-throughput comparison with dsinf.

Measures the wall time of full training steps (forward, backward, global
grad-norm clipping, fused AdamW) of exactly dsinf's GPT-2 -- learned position
embeddings, pre-LayerNorm blocks (fused qkv Linear(C,3C), c_proj Linear(C,C);
MLP Linear(C,4C), tanh GELU, Linear(4C,C)), final ln_f, lm head tied to wte,
LayerNorm eps 1e-5, every Linear with bias -- on random tokens, in bf16 autocast
with fp32 master weights, attention through F.scaled_dot_product_attention
(is_causal=True), loss the mean token cross-entropy. Modes: eager and/or
torch.compile (the model's forward; the optimizer step stays eager and fused).

Reported per mode: median step seconds (CUDA events over --steps steps after
--warmup untimed steps, where compilation happens), tokens/s = batch*gas*T/step,
FLOPs per token = 6*params + 12*n_layer*n_embd*T (PaLM accounting, the same as
`dsinf bench step`; params counts the tied wte once and includes wpe, biases and
LayerNorms, like dsinf's num_parameters), achieved TFLOP/s and MFU against
--peak-tflops (default 989.4 dense bf16 on H100/H200, 312 on A100).

The matching pair of commands, run back to back on the same GPU:
    build/dsinf bench step configs/gpt2-124m.json --json
    python3 scripts/torch_gpt2_bench.py --config configs/gpt2-124m.json --json

--config reads a dsinf JSON config (model.*, train_micro_batch_size_per_gpu,
gradient_accumulation_steps, optimizer.params.*, gradient_clipping); explicit
flags override it. --allow-cpu permits a tiny smoke run on CPU, in plain fp32
(no autocast) and without fused AdamW; its numbers mean nothing.

Written for dsinf from scratch; no code is copied from other projects.
"""
import argparse
import contextlib
import json
import math
import statistics
import sys
import time

# Flag -> built-in default; flags left unset come from --config, then from here.
DEFAULTS = {"n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024, "vocab": 50257,
            "batch": 8, "gas": 1, "lr": 6e-4, "betas": [0.9, 0.999], "eps": 1e-8,
            "weight_decay": 0.0, "clip": 1.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="dsinf JSON config; explicit flags override it")
    for flag, kind, text in [("--n-layer", int, "transformer blocks"), ("--n-head", int, "heads"),
                             ("--n-embd", int, "channels"),
                             ("--n-positions", int, "sequence length T"),
                             ("--vocab", int, "vocabulary size"),
                             ("--batch", int, "micro-batch (windows)"),
                             ("--gas", int, "gradient accumulation steps"),
                             ("--lr", float, "AdamW learning rate"), ("--eps", float, "AdamW eps"),
                             ("--weight-decay", float, "AdamW weight decay"),
                             ("--clip", float, "global grad-norm clip, 0 for none")]:
        default = DEFAULTS[flag[2:].replace("-", "_")]
        p.add_argument(flag, type=kind, help=f"{text} (default {default})")
    p.add_argument("--betas", type=float, nargs=2, metavar=("B1", "B2"),
                   help="AdamW betas (default 0.9 0.999)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--mode", choices=["eager", "compile", "both"], default="both")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--peak-tflops", type=float,
                   help="peak for MFU (default 989.4 on H100/H200, 312 on A100, else none)")
    p.add_argument("--json", action="store_true", help="one JSON line per mode on stdout")
    p.add_argument("--allow-cpu", action="store_true",
                   help="run on CPU in fp32 when CUDA is missing (tiny smoke runs only)")
    a = p.parse_args(argv)

    cfg = {}
    if a.config:
        with open(a.config) as f:
            c = json.load(f)
        m, o = c.get("model", {}), c.get("optimizer", {}).get("params", {})
        cfg = {"n_layer": m.get("n_layer"), "n_head": m.get("n_head"), "n_embd": m.get("n_embd"),
               "n_positions": m.get("n_positions"), "vocab": m.get("vocab_size"),
               "batch": c.get("train_micro_batch_size_per_gpu"),
               "gas": c.get("gradient_accumulation_steps"), "lr": o.get("lr"),
               "betas": o.get("betas"), "eps": o.get("eps"),
               "weight_decay": o.get("weight_decay"), "clip": c.get("gradient_clipping")}
    for key, default in DEFAULTS.items():
        if getattr(a, key) is None:
            setattr(a, key, cfg.get(key) if cfg.get(key) is not None else default)
    a.betas = tuple(float(b) for b in a.betas)
    if a.n_embd % a.n_head:
        p.error(f"--n-embd {a.n_embd} is not a multiple of --n-head {a.n_head}")
    if min(a.n_layer, a.n_head, a.n_positions, a.vocab, a.batch, a.gas, a.steps) < 1 or a.warmup < 0:
        p.error("sizes and --steps must be positive, --warmup not negative")
    return a


def build_model(a):
    """dsinf's GPT-2, parameters in fp32, with dsinf's initialisation."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, C, NH):
            super().__init__()
            self.NH = NH
            self.ln_1 = nn.LayerNorm(C, eps=1e-5)
            self.c_attn = nn.Linear(C, 3 * C)
            self.attn_proj = nn.Linear(C, C)
            self.ln_2 = nn.LayerNorm(C, eps=1e-5)
            self.c_fc = nn.Linear(C, 4 * C)
            self.mlp_proj = nn.Linear(4 * C, C)

        def forward(self, x):
            B, T, C = x.shape
            # qkv columns are [q | k | v], each head-major, as in Hugging Face's c_attn.
            qkv = self.c_attn(self.ln_1(x)).view(B, T, 3, self.NH, C // self.NH)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, NH, T, hs)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.attn_proj(y.transpose(1, 2).reshape(B, T, C))
            h = F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
            return x + self.mlp_proj(h)

    class GPT2(nn.Module):
        def __init__(self, L, NH, C, T, V):
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.wpe = nn.Embedding(T, C)
            self.h = nn.ModuleList(Block(C, NH) for _ in range(L))
            self.ln_f = nn.LayerNorm(C, eps=1e-5)
            resid_std = 0.02 / math.sqrt(2 * L)
            for name, p in self.named_parameters():
                if name.endswith("proj.weight"):  # residual projections
                    nn.init.normal_(p, 0.0, resid_std)
                elif p.dim() == 2:                # wte, wpe, c_attn, c_fc
                    nn.init.normal_(p, 0.0, 0.02)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)
                else:                             # LayerNorm weights
                    nn.init.ones_(p)

        def forward(self, idx, targets):
            T = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
            for block in self.h:
                x = block(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)  # tied lm head, no bias
            return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                                   targets.reshape(-1))

    return GPT2(a.n_layer, a.n_head, a.n_embd, a.n_positions, a.vocab)


def run_mode(torch, a, mode, device):
    torch.manual_seed(a.seed)
    model = build_model(a).to(device)
    params = list(model.parameters())
    num_params = sum(p.numel() for p in params)  # wte once (tied), wpe, biases, LayerNorms
    cuda = device.type == "cuda"
    opt = torch.optim.AdamW(params, lr=a.lr, betas=a.betas, eps=a.eps,
                            weight_decay=a.weight_decay, **({"fused": True} if cuda else {}))
    fwd = torch.compile(model) if mode == "compile" else model
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda \
        else contextlib.nullcontext
    B, T = a.batch, a.n_positions

    def step():
        total = torch.zeros((), device=device)
        for _ in range(a.gas):
            x = torch.randint(a.vocab, (B, T), device=device)
            y = torch.randint(a.vocab, (B, T), device=device)
            with autocast():
                loss = fwd(x, y)
            (loss / a.gas).backward()
            total += loss.detach()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total / a.gas

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t0 = time.perf_counter()
    for _ in range(a.warmup):
        step()
    sync()
    warmup_s = time.perf_counter() - t0
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    times, loss = [], None
    for _ in range(a.steps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = step()
            end.record()
            times.append((start, end))
        else:
            t = time.perf_counter()
            loss = step()
            times.append(time.perf_counter() - t)
    sync()
    if cuda:
        times = [s.elapsed_time(e) / 1e3 for s, e in times]
    step_s = statistics.median(times)

    flops_per_token = 6 * num_params + 12 * a.n_layer * a.n_embd * T
    tokens_per_s = B * a.gas * T / step_s
    tflops = flops_per_token * tokens_per_s / 1e12
    gpu = torch.cuda.get_device_name(device) if cuda else "cpu"
    peak = a.peak_tflops
    if peak is None and cuda:
        peak = 989.4 if ("H100" in gpu or "H200" in gpu) else 312.0 if "A100" in gpu else None
    peak = peak if peak and peak > 0 else None
    mfu = tflops / peak if peak else None
    result = {"system": "pytorch", "mode": mode, "torch": torch.__version__, "gpu": gpu,
              "params": num_params, "batch": B, "gas": a.gas, "T": T, "step_s": step_s,
              "tokens_per_s": tokens_per_s, "flops_per_token": flops_per_token,
              "tflops": tflops, "mfu": mfu, "peak_tflops": peak, "final_loss": loss.item(),
              "steps": a.steps, "warmup_s": warmup_s,
              "max_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None}
    mfu_text = f"MFU {100 * mfu:.1f}% of {peak:g}" if mfu is not None else "MFU n/a"
    print(f"pytorch {mode}: {num_params:,} params, batch {B} x {a.gas} x {T}, step "
          f"{step_s:.4f} s (median of {a.steps}; warm-up {warmup_s:.1f} s), "
          f"{tokens_per_s:,.0f} tokens/s, {tflops:.1f} TFLOP/s, {mfu_text}, "
          f"loss {result['final_loss']:.4f} [{gpu}, torch {torch.__version__}]", file=sys.stderr)
    if a.json:
        print(json.dumps(result), flush=True)
    del fwd, model, opt, params
    if cuda:
        torch.cuda.empty_cache()


def main(argv=None):
    a = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("torch_gpt2_bench: PyTorch is not installed", file=sys.stderr)
        return 2
    if torch.cuda.is_available():
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    elif a.allow_cpu:
        device = torch.device("cpu")
    else:
        print(f"torch_gpt2_bench: CUDA is not available (torch {torch.__version__}); this "
              "benchmark needs a GPU (--allow-cpu runs a tiny fp32 smoke test on CPU)",
              file=sys.stderr)
        return 2
    for mode in (["eager", "compile"] if a.mode == "both" else [a.mode]):
        run_mode(torch, a, mode, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
