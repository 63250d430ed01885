#!/usr/bin/env python3
"""Time PyTorch's nn.GRU / nn.LSTM / nn.RNN forward+backward on gradlab's benchmark shapes.

    python3 scripts/torch_rnn_bench.py [--shape gru-small --shape gru-large] [--threads 2]
        [--repeats 11] [--json]

What `gradlab bench` times, done by PyTorch on the CPU: one forward over the whole window
(T, B, I) -> (T, B, H) from a zero state, then the backward of a fixed output gradient
(uniform in [-1, 1]) to every parameter and to the input; parameters as PyTorch initialises
them. Each figure is the median of --repeats timed runs after two warm-up runs. GFLOP/s uses
gradlab's count (README, "Benchmarks"): forward = 2·T·B·G·H·(I+H) per layer, G = 1, 3, 4 for
RNN, GRU, LSTM, and forward+backward = 3 × forward, so the figures compare with gradlab's
directly. Run it beside `gradlab bench --threads N` with the same N.

Needs: torch (pip install torch).
"""

import argparse
import json
import statistics
import time

import torch

# name: (cell, T, B, I, H, layers), as in kernels/src/bench.rs.
SHAPES = {
    "rnn-small": ("rnn", 64, 32, 64, 128, 1),
    "lstm-small": ("lstm", 64, 32, 64, 128, 1),
    "gru-small": ("gru", 64, 32, 64, 128, 1),
    "lstm-char": ("lstm", 50, 50, 65, 128, 2),
    "lstm-medium": ("lstm", 100, 64, 256, 512, 1),
    "rnn-large": ("rnn", 50, 64, 1024, 1024, 1),
    "lstm-large": ("lstm", 50, 64, 1024, 1024, 1),
    "gru-large": ("gru", 50, 64, 1024, 1024, 1),
}
MODULES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def train_flops(cell, t, b, i, h, layers):
    fwd = sum(2.0 * t * b * GATES[cell] * h * ((i if l == 0 else h) + h) for l in range(layers))
    return 3.0 * fwd


def time_shape(name, repeats):
    cell, t, b, i, h, layers = SHAPES[name]
    torch.manual_seed(0)
    net = MODULES[cell](i, h, num_layers=layers)
    x = torch.rand(t, b, i) * 2 - 1
    x.requires_grad_(True)
    dy = torch.rand(t, b, h) * 2 - 1

    def step():
        net.zero_grad(set_to_none=False)
        x.grad = None
        out, _ = net(x)
        out.backward(dy)

    for _ in range(2):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    sec = statistics.median(times)
    return dict(shape=name, cell=cell, t=t, b=b, input=i, hidden=h, layers=layers,
                ms=sec * 1e3, gflops=train_flops(cell, t, b, i, h, layers) / sec / 1e9)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", action="append", choices=sorted(SHAPES),
                    help="shape to run (repeatable) [default: gru-small and gru-large]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--json", action="store_true", help="one JSON object per shape")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    shapes = a.shape or ["gru-small", "gru-large"]
    if not a.json:
        print(f"torch {torch.__version__}: forward+backward, f32, {torch.get_num_threads()} "
              f"thread(s), median of {a.repeats} runs")
        print("| shape | T | B | I | H | L | ms | GFLOP/s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in shapes:
        r = time_shape(name, a.repeats)
        r["threads"], r["torch"] = a.threads, torch.__version__
        if a.json:
            print(json.dumps(r))
        else:
            print(f"| {name} | {r['t']} | {r['b']} | {r['input']} | {r['hidden']} | "
                  f"{r['layers']} | {r['ms']:.2f} | {r['gflops']:.1f} |")


if __name__ == "__main__":
    main()
