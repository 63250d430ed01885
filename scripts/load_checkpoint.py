#!/usr/bin/env python3
"""Load a gradlab checkpoint into PyTorch and check gradlab's gradients against autograd.

    python3 scripts/load_checkpoint.py results/NAME/checkpoints/RUN_ID.safetensors \
        [--gradlab target/release/gradlab] [--seq-len 12] [--batch 4] [--seed 0]

A gradlab checkpoint is a safetensors file with PyTorch's parameter names: the recurrent stack
(`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, ... per layer) loads into
`nn.LSTM`, `nn.GRU` or `nn.RNN` with `load_state_dict` (the cell follows from the rows of
`weight_hh_l0`: 4H, 3H or H), and `head.weight`, `head.bias` into an `nn.Linear`; the run
configuration (TOML) is in the metadata under `gradlab.config`.

The script builds that model, computes a mean squared error loss of the head's output on a
random batch and its gradients with autograd, then runs `gradlab grad` on the same weights,
input and d loss / d output, and compares the outputs and every gradient. It prints the loss
and the largest differences, and exits 1 when a difference exceeds the tolerance
(|gradlab - torch| <= atol + rtol * max |torch|, per tensor).

Needs: torch and safetensors (pip install torch safetensors).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import tomllib

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def load_model(path):
    """The stack (nn.LSTM, nn.GRU or nn.RNN), the head (nn.Linear) and the run configuration."""
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    config = tomllib.loads(meta["gradlab.config"]) if "gradlab.config" in meta else {}
    stack_sd = {k: v for k, v in tensors.items() if not k.startswith("head.")}
    head_sd = {k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")}
    layers = sum(1 for k in stack_sd if k.startswith("weight_ih_l"))
    rows, input_size = stack_sd["weight_ih_l0"].shape
    hidden = stack_sd["weight_hh_l0"].shape[1]
    cell = {4 * hidden: "lstm", 3 * hidden: "gru"}.get(rows, "rnn")
    nonlinearity = "tanh"
    if cell == "lstm":
        stack = torch.nn.LSTM(input_size, hidden, num_layers=layers)
    elif cell == "gru":
        stack = torch.nn.GRU(input_size, hidden, num_layers=layers)
    else:
        nonlinearity = config.get("nonlinearity", "tanh")
        stack = torch.nn.RNN(input_size, hidden, num_layers=layers, nonlinearity=nonlinearity)
    stack.load_state_dict(stack_sd, strict=True)
    out_size = head_sd["weight"].shape[0]
    head = torch.nn.Linear(hidden, out_size)
    head.load_state_dict(head_sd, strict=True)
    return stack, head, dict(cell=cell, nonlinearity=nonlinearity, layers=layers,
                             input=input_size, hidden=hidden, output=out_size), config


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--gradlab", default=os.environ.get("GRADLAB", "gradlab"),
                    help="the gradlab binary [default: $GRADLAB or gradlab on PATH]")
    ap.add_argument("--seq-len", type=int, default=12)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--atol", type=float, default=1e-6)
    a = ap.parse_args()

    stack, head, shape, config = load_model(a.checkpoint)
    print(f"loaded {a.checkpoint}: {shape['layers']}-layer {shape['cell']} "
          f"(input {shape['input']}, hidden {shape['hidden']}) + Linear({shape['hidden']}, "
          f"{shape['output']}); task {config.get('task', '?')}")

    g = torch.Generator().manual_seed(a.seed)
    x = torch.randn(a.seq_len, a.batch, shape["input"], generator=g, requires_grad=True)
    target = torch.randn(a.seq_len, a.batch, shape["output"], generator=g)
    output, _ = stack(x)
    output.retain_grad()
    loss = torch.nn.functional.mse_loss(head(output), target)
    loss.backward()
    print(f"loss {loss.item():.6f} on a random batch (T={a.seq_len}, B={a.batch})")

    with tempfile.TemporaryDirectory() as tmp:
        w, i, o = (os.path.join(tmp, n) for n in ("w.safetensors", "x.safetensors", "g.safetensors"))
        save_file({k: v.detach().contiguous() for k, v in stack.state_dict().items()}, w)
        save_file({"input": x.detach().contiguous(),
                   "grad_output": output.grad.detach().contiguous()}, i)
        cmd = [a.gradlab, "grad", "--cell", shape["cell"], "--layers", str(shape["layers"]),
               "--input-size", str(shape["input"]), "--hidden", str(shape["hidden"]),
               "--nonlinearity", shape["nonlinearity"], "--weights", w, "--input", i,
               "--out", o, "--threads", "1"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"gradlab grad failed ({run.returncode}): {run.stderr.strip()}")
        got = load_file(o)

    want = {"output": output.detach(), "grad.input": x.grad}
    for name, p in stack.named_parameters():
        want[f"grad.{name}"] = p.grad
    worst, failed = 0.0, []
    for name, t in want.items():
        diff = (got[name] - t).abs().max().item()
        scale = t.abs().max().item()
        rel = diff / max(scale, 1e-30)
        worst = max(worst, rel)
        ok = diff <= a.atol + a.rtol * scale
        print(f"  {name:<22} max |gradlab - torch| = {diff:.3e}  (max |torch| {scale:.3e}, "
              f"relative {rel:.2e}){'' if ok else '  MISMATCH'}")
        if not ok:
            failed.append(name)
    if failed:
        sys.exit(f"gradlab and torch disagree on {', '.join(failed)}")
    print(f"gradlab grad matches torch autograd on {len(want)} tensors "
          f"(largest relative difference {worst:.2e})")


if __name__ == "__main__":
    main()
