#!/usr/bin/env python3
"""Write the PyTorch nn.GRU parity fixture that kernels/tests/gru_parity.rs checks gradlab against.

    python3 scripts/gru_parity_fixture.py [--out kernels/tests/fixtures/gru_pytorch.safetensors]

For a 1-layer and a 2-layer nn.GRU (PyTorch's default initialisation, fixed seeds) it stores,
under the prefixes `l1.` and `l2.`: the parameters with their PyTorch names (`weight_ih_l0`,
`weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, ...), an input `input` (T, B, I), an initial state
`h0` (L, B, H), and the weights of the loss

    loss = sum(output * grad_output) + sum(h_n * grad_h_n),

`grad_output` (T, B, H) and `grad_h_n` (L, B, H); then what nn.GRU gives for them: `output`,
`h_n`, and the gradients of the loss with respect to the input (`grad.input`), the initial
state (`grad.h0`) and every parameter (`grad.<name>`). Every tensor is float32. The parameters
and inputs are drawn in float32; the results are computed by nn.GRU in float64 from those
exact values and rounded to float32 once, so the fixture is PyTorch's definition without
float32 rounding of its own. The metadata records the torch version, the shapes, and how far
nn.GRU in float32 is from that float64 result (the scale of agreement to expect from any f32
implementation).

The fixture is committed; CI does not run this script (it needs torch and safetensors:
pip install torch safetensors).
"""

import argparse
import copy
import json
import os

import torch
from safetensors.torch import save_file

# name: (T, B, I, H, layers, seed). H = 20 and 33 end off the 16-lane vectors, and 33 makes the
# GRU's three gates straddle gradlab's 64-column panels.
CASES = {"l1": (7, 3, 5, 20, 1, 1), "l2": (5, 4, 3, 33, 2, 2)}


def rel_err(a, b):
    """Norm-wise relative error ||a - b|| / ||b||."""
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()


def run(gru, x, h0, g_out, g_hn):
    """output, h_n and the gradients of the loss, in the GRU's dtype."""
    x = x.clone().requires_grad_(True)
    h0 = h0.clone().requires_grad_(True)
    gru.zero_grad()
    output, h_n = gru(x, h0)
    loss = (output * g_out).sum() + (h_n * g_hn).sum()
    loss.backward()
    res = {"output": output.detach(), "h_n": h_n.detach(), "grad.input": x.grad,
           "grad.h0": h0.grad}
    for name, p in gru.named_parameters():
        res[f"grad.{name}"] = p.grad.detach()
    return res


def case(prefix, t, b, i, h, layers, seed):
    torch.manual_seed(seed)
    gru = torch.nn.GRU(i, h, num_layers=layers)  # float32, PyTorch's U(-1/sqrt(H), 1/sqrt(H))
    x = torch.randn(t, b, i)
    h0 = 0.5 * torch.randn(layers, b, h)
    g_out = torch.randn(t, b, h)
    g_hn = torch.randn(layers, b, h)

    exact = run(copy.deepcopy(gru).double(), x.double(), h0.double(), g_out.double(),
                g_hn.double())
    single = run(gru, x, h0, g_out, g_hn)
    f32_err = {k: rel_err(single[k], v) for k, v in exact.items()}

    tensors = {f"{prefix}.{n}": p.detach().clone() for n, p in gru.named_parameters()}
    tensors.update({f"{prefix}.input": x, f"{prefix}.h0": h0,
                    f"{prefix}.grad_output": g_out, f"{prefix}.grad_h_n": g_hn})
    tensors.update({f"{prefix}.{k}": v.float() for k, v in exact.items()})
    shape = dict(t=t, b=b, input=i, hidden=h, layers=layers, seed=seed)
    return tensors, shape, f32_err


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(
        root, "kernels", "tests", "fixtures", "gru_pytorch.safetensors"))
    a = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    tensors, meta = {}, {"torch": torch.__version__,
                         "loss": "sum(output * grad_output) + sum(h_n * grad_h_n)",
                         "computed": "nn.GRU in float64 from float32 parameters and inputs"}
    for prefix, dims in CASES.items():
        tt, shape, f32_err = case(prefix, *dims)
        tensors.update(tt)
        meta[f"{prefix}.shape"] = json.dumps(shape)
        meta[f"{prefix}.torch_f32_rel_err"] = json.dumps(f32_err)
        worst = max(f32_err.items(), key=lambda kv: kv[1])
        print(f"{prefix}: {shape}; nn.GRU float32 vs float64: largest norm-wise relative "
              f"error {worst[1]:.2e} ({worst[0]})")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, a.out, metadata=meta)
    print(f"wrote {a.out}: {len(tensors)} tensors, {os.path.getsize(a.out)} bytes")


if __name__ == "__main__":
    main()
