#!/usr/bin/python3
"""Runs torch.optim.AdamW or torch.optim.Adam (float32, foreach=False) over
given parameters and gradients, as the reference for dsinf's fused CPU Adam.

Inputs in --dir, raw little-endian float32, the tensors of --sizes concatenated:
  params.f32   the initial parameters            (sum(sizes) floats)
  grads.f32    the gradients of every step       (steps * sum(sizes) floats)
Output:
  out.f32      after each step: params, exp_avg, exp_avg_sq (steps * 3 * sum(sizes))
The hyper-parameters are used exactly as given (pass float32 values printed
with 17 significant digits to match a float32 caller).
"""
import argparse
import os
import sys

import numpy as np
import torch


def load(path, count):
    if not os.path.isfile(path):
        sys.exit(f"torch_adam.py: missing input {path}")
    data = np.fromfile(path, dtype="<f4")
    if data.size != count or os.path.getsize(path) != 4 * count:
        sys.exit(f"torch_adam.py: {path} holds {os.path.getsize(path)} bytes, "
                 f"expected {4 * count}")
    if not np.all(np.isfinite(data)):
        sys.exit(f"torch_adam.py: {path} has non-finite values")
    return torch.from_numpy(data.astype(np.float32))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--sizes", required=True, help="comma-separated tensor sizes")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--mode", choices=["adamw", "adam"], required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--beta1", type=float, required=True)
    parser.add_argument("--beta2", type=float, required=True)
    parser.add_argument("--eps", type=float, required=True)
    parser.add_argument("--weight_decay", type=float, required=True)
    args = parser.parse_args()

    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        sys.exit(f"torch_adam.py: bad --sizes {args.sizes!r}")
    if not sizes or min(sizes) <= 0 or args.steps <= 0:
        sys.exit("torch_adam.py: --sizes and --steps must be positive")
    total = sum(sizes)

    torch.set_num_threads(1)
    flat = load(os.path.join(args.dir, "params.f32"), total)
    grads = load(os.path.join(args.dir, "grads.f32"), args.steps * total).view(args.steps, total)
    params = [torch.nn.Parameter(p.clone()) for p in torch.split(flat, sizes)]
    cls = torch.optim.AdamW if args.mode == "adamw" else torch.optim.Adam
    opt = cls(params, lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps,
              weight_decay=args.weight_decay, amsgrad=False, foreach=False, maximize=False)

    out = []
    for step in range(args.steps):
        for p, g in zip(params, torch.split(grads[step], sizes)):
            p.grad = g.clone()
        opt.step()
        for key in ("param", "exp_avg", "exp_avg_sq"):
            for p in params:
                t = p.detach() if key == "param" else opt.state[p][key]
                assert t.dtype == torch.float32
                out.append(t.reshape(-1).numpy().copy())  # t is updated in place
    # Per step: all params, then all exp_avg, then all exp_avg_sq.
    np.concatenate(out).astype("<f4").tofile(os.path.join(args.dir, "out.f32"))


if __name__ == "__main__":
    main()
