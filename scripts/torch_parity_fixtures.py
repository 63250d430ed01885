#!/usr/bin/env python3
"""Write the PyTorch training-step fixtures that experiments/tests/torch_parity.rs checks gradlab against.

    python3 scripts/torch_parity_fixtures.py [--out experiments/tests/fixtures/torch_parity]

Each fixture is one case: a model as gradlab's `stack` model builds it (nn.RNN, nn.LSTM or
nn.GRU, then an nn.Linear head on every step's top-layer output), its initial parameters, three
batches, and the parameters after three full training steps, each: forward from the zero state
(charlm: from the state the previous window ended in, detached), gradlab's loss, backward
(full BPTT), clipping, one optimiser step. Tensors (all float32):

    initial.<name>, final.<name>   weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ...,
                                   head.weight, head.bias (PyTorch's names and shapes)
    batch<k>.input                 (T, B, I), k = 0, 1, 2
    batch<k>.target                adding: (B,) the value read at the last step;
                                   otherwise (T, B) classes, -1 where a step has no loss

The losses are gradlab's: adding, MSE of the head's one output at the last step, the mean over
the B sequences; temporal-order, cross-entropy at the last step, the mean over B; charlm and
hello, cross-entropy at every step, the mean over the T * B terms (F.cross_entropy with
ignore_index=-1 is that mean over the labelled terms). Clipping is DESIGN.md's: `norm:t`, one
global L2 norm over every parameter (stack and head), `if norm > t: g *= t / norm` (Pascanu et
al.); `value:t`, torch.nn.utils.clip_grad_value_. The optimisers are PyTorch's own classes with
gradlab's hyper-parameters (lr, momentum and nesterov from the case; the rest gradlab's fixed
values).

The metadata is one JSON object under `fixture` (one key, so that writing the fixtures again
gives the same bytes): `gradlab.config` (the run configuration, TOML, that gradlab trains the
case with; a charlm case's text file is the test's to supply, with as many distinct characters
as the input size), `case` (cell, nonlinearity, depth, sizes, task, loss, clip, the optimiser's
class and arguments, and `differs_from_pytorch`: where gradlab's semantics differ from
PyTorch's defaults and how far PyTorch's default alone lands from the fixture), `expect`
(`match`, or `differ` for a fixture computed with the optimiser's PyTorch defaults where gradlab
differs on purpose, with `difference` and `documented_rel_err`: how far, per tensor, gradlab's
semantics land from it), `losses`, `grad_norms` (before clipping) and `clipped` per step, the
torch version, and `torch_f32_rel_err`: how far the same three steps in float32 PyTorch land
from the fixture (the scale of agreement to expect from any float32 implementation).

As in scripts/gru_parity_fixture.py, the parameters and batches are drawn in float32 and the
three steps are computed in float64 from those exact values; the final parameters are rounded
to float32 once.

The fixtures are committed; CI does not run this script (it needs torch and safetensors:
pip install torch safetensors).
"""

import argparse
import copy
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

STEPS = 3

# gradlab's fixed optimiser values (experiments/src/train/optim.rs).
EPS = 1e-8
RMSPROP_DECAY = 0.95
ADAM_BETAS = (0.9, 0.999)

# Tasks: input size, output size, loss, whether the state carries from one batch to the next.
# charlm's vocabulary size is the fixture's own (the test writes a text with that many
# characters); hello's is "ehlo", sorted as gradlab's corpus sorts it.
CHARLM_VOCAB = 5
HELLO = "hello"
HELLO_VOCAB = sorted(set(HELLO))
TASKS = {
    "adding": dict(input=2, output=1, loss="mse, many-to-one: the head's output at the last "
                   "step against the target, mean over the B sequences", carries=False),
    "temporal-order": dict(input=6, output=4, loss="cross-entropy, many-to-one: the last "
                           "step's class, mean over the B sequences", carries=False),
    "charlm": dict(input=CHARLM_VOCAB, output=CHARLM_VOCAB, loss="cross-entropy, many-to-many: "
                   "the next character at every step, mean over the T*B terms; the state "
                   "carries from one window to the next, detached", carries=True),
    "hello": dict(input=len(HELLO_VOCAB), output=len(HELLO_VOCAB), loss="cross-entropy, "
                  "many-to-many: 'hell' -> 'ello', mean over the T*B terms", carries=False),
}

# The covering set: every cell with 1 and 2 layers, every loss, every clip mode, every
# optimiser with at least two cells. H never a multiple of 16 and never I. temporal-order
# needs T >= 10 (gradlab's minimum), hello has T = 4. Norm clipping at every step would hide
# the scale of the gradient (the loss's reduction) from an SGD case, so the SGD case's
# threshold clips some steps only (as do three of the others); the LSTM's Adagrad case clips
# every step, where Adagrad's eps shows the most (its PyTorch-defaults fixture).
CASES = [
    dict(cell="rnn-tanh", depth=1, hidden=7, task="adding", seq_len=6, batch=4,
         clip="none", optimizer="sgd", lr=0.1, seed=11),
    dict(cell="rnn-tanh", depth=2, hidden=12, task="temporal-order", seq_len=10, batch=3,
         clip="norm:1.0", optimizer="adagrad", lr=0.05, seed=12),
    dict(cell="rnn-relu", depth=1, hidden=9, task="charlm", seq_len=6, batch=3,
         clip="value:0.05", optimizer="rmsprop", lr=0.01, seed=13),
    dict(cell="rnn-relu", depth=2, hidden=10, task="adding", seq_len=8, batch=4,
         clip="norm:2.0", optimizer="adam", lr=0.01, seed=14),
    dict(cell="lstm", depth=1, hidden=11, task="temporal-order", seq_len=10, batch=4,
         clip="value:0.02", optimizer="sgd", lr=0.5, momentum=0.9, seed=15),
    dict(cell="lstm", depth=2, hidden=8, task="charlm", seq_len=5, batch=2,
         clip="none", optimizer="adam", lr=0.02, seed=24),
    dict(cell="gru", depth=1, hidden=5, task="adding", seq_len=7, batch=3,
         clip="value:0.05", optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True, seed=17),
    dict(cell="gru", depth=2, hidden=6, task="charlm", seq_len=4, batch=3,
         clip="norm:0.25", optimizer="rmsprop", lr=0.005, seed=18),
    dict(cell="lstm", depth=1, hidden=12, task="adding", seq_len=8, batch=2,
         clip="norm:0.125", optimizer="adagrad", lr=0.1, seed=23),
    dict(cell="gru", depth=1, hidden=9, task="temporal-order", seq_len=10, batch=4,
         clip="none", optimizer="sgd", lr=0.3, seed=20),
    dict(cell="rnn-tanh", depth=1, hidden=6, task="hello", seq_len=4, batch=2,
         clip="norm:0.625", optimizer="sgd", lr=0.2, momentum=0.8, seed=21),
    dict(cell="rnn-relu", depth=1, hidden=8, task="temporal-order", seq_len=10, batch=3,
         clip="none", optimizer="sgd", lr=0.1, momentum=0.5, nesterov=True, seed=22),
]

# The cases whose result with the optimiser's PyTorch defaults is a fixture of its own
# (`expect = differ`): RMSprop's alpha, Adagrad's eps.
DIFFER_CASES = (2, 8)
# A difference must be this large to be proved at the test's 1e-5 tolerance.
PROVABLE = 1e-3
# The most float32 PyTorch may differ from the fixture: a case whose result float32 cannot
# resolve to well within the test's 1e-5 (an Adagrad or Adam step on a gradient element near
# its eps) is no test of gradlab, and is refused here.
F32_SPREAD_MAX = 1e-6


def case_name(c):
    opt = c["optimizer"]
    if c.get("nesterov"):
        opt += "-nesterov"
    elif c.get("momentum"):
        opt += "-momentum"
    clip = c["clip"].split(":")[0]
    return f"{c['cell']}-l{c['depth']}-{c['task']}-clip-{clip}-{opt}"


def rel_err(a, b):
    """Norm-wise relative error ||a - b|| / ||b||."""
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()


class Net(torch.nn.Module):
    """The recurrent stack and the linear head on every step's top-layer output."""

    def __init__(self, c, inp, out):
        super().__init__()
        cell, _, nonlinearity = c["cell"].partition("-")
        if cell == "rnn":
            self.rnn = torch.nn.RNN(inp, c["hidden"], c["depth"], nonlinearity=nonlinearity)
        elif cell == "lstm":
            self.rnn = torch.nn.LSTM(inp, c["hidden"], c["depth"])
        else:
            self.rnn = torch.nn.GRU(inp, c["hidden"], c["depth"])
        self.head = torch.nn.Linear(c["hidden"], out)

    def forward(self, x, state):
        y, state = self.rnn(x, state)
        return self.head(y), state

    def named(self):
        """Parameters under gradlab's checkpoint names (the stack's without a prefix)."""
        return {n.removeprefix("rnn."): p for n, p in self.named_parameters()}


def batches(c, g):
    """STEPS batches (input, target) in float32, as the case's task makes them."""
    t, b, task = c["seq_len"], c["batch"], c["task"]
    out = []
    if task == "charlm":
        # One character stream per sequence; window k reads characters kT..kT+T-1 and predicts
        # the next, so the carried state has read the characters before the window.
        ids = torch.randint(0, CHARLM_VOCAB, (STEPS * t + 1, b), generator=g)
    for k in range(STEPS):
        if task == "adding":
            x = torch.zeros(t, b, 2)
            x[:, :, 0] = torch.rand(t, b, generator=g)
            y = torch.zeros(b)
            for row in range(b):
                m1 = torch.randint(0, t // 2, (), generator=g).item()
                m2 = t // 2 + torch.randint(0, t - t // 2, (), generator=g).item()
                x[[m1, m2], row, 1] = 1.0
                y[row] = x[m1, row, 0] + x[m2, row, 0]
        elif task == "temporal-order":
            # gradlab's generator: distractors 0..3, A = 4, B = 5 at positions in [0.1T, 0.2T)
            # and [0.5T, 0.6T); class 2 s1 + s2 at the last step.
            sym = torch.randint(0, 4, (t, b), generator=g)
            y = torch.full((t, b), -1.0)
            for row in range(b):
                p1 = int(0.1 * t) + torch.randint(0, max(int(0.2 * t) - int(0.1 * t), 1), (),
                                                  generator=g).item()
                p2 = int(0.5 * t) + torch.randint(0, max(int(0.6 * t) - int(0.5 * t), 1), (),
                                                  generator=g).item()
                s1, s2 = torch.randint(0, 2, (2,), generator=g).tolist()
                sym[p1, row], sym[p2, row] = 4 + s1, 4 + s2
                y[t - 1, row] = 2 * s1 + s2
            x = F.one_hot(sym, 6).float()
        elif task == "charlm":
            w = ids[k * t:(k + 1) * t + 1]
            x = F.one_hot(w[:-1], CHARLM_VOCAB).float()
            y = w[1:].float()
        else:
            seq = torch.tensor([HELLO_VOCAB.index(ch) for ch in HELLO])
            x = F.one_hot(seq[:-1], len(HELLO_VOCAB)).float()[:, None, :].repeat(1, b, 1)
            y = seq[1:].float()[:, None].repeat(1, b)
        out.append((x, y))
    return out


def optimizer_args(c, defaults=False):
    """The case's optimiser: PyTorch's class and its arguments, gradlab's hyper-parameters, or
    with `defaults` PyTorch's defaults where gradlab fixes another value."""
    o, lr = c["optimizer"], c["lr"]
    if o == "sgd":
        return torch.optim.SGD, dict(lr=lr, momentum=c.get("momentum", 0.0),
                                     nesterov=c.get("nesterov", False))
    if o == "adagrad":
        kw = dict(lr=lr, eps=EPS, initial_accumulator_value=0.0, lr_decay=0.0)
        if defaults:
            del kw["eps"]
        return torch.optim.Adagrad, kw
    if o == "rmsprop":
        kw = dict(lr=lr, alpha=RMSPROP_DECAY, eps=EPS, momentum=0.0, centered=False)
        if defaults:
            del kw["alpha"]
        return torch.optim.RMSprop, kw
    return torch.optim.Adam, dict(lr=lr, betas=ADAM_BETAS, eps=EPS, amsgrad=False)


def optimizer_meta(c, defaults=False):
    cls, kw = optimizer_args(c, defaults)
    return dict(name=c["optimizer"], cls=f"torch.optim.{cls.__name__}", kwargs=kw)


def clip(c, params, defaults=False):
    """Clips the gradients of `params` as the case says; returns whether anything changed.
    `defaults`: torch.nn.utils.clip_grad_norm_ instead of Pascanu's rule."""
    kind, _, tau = c["clip"].partition(":")
    grads = [p.grad for p in params]
    if kind == "norm":
        tau = float(tau)
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
        if defaults:
            torch.nn.utils.clip_grad_norm_(params, tau)
        elif norm > tau:
            for g in grads:
                g.mul_(tau / norm)
        return norm > tau
    if kind == "value":
        changed = any((g.abs() > float(tau)).any().item() for g in grads)
        torch.nn.utils.clip_grad_value_(params, float(tau))
        return changed
    return False


def loss_of(c, logits, target):
    if c["task"] == "adding":
        return F.mse_loss(logits[-1, :, 0], target)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1).long(),
                           ignore_index=-1)


def train(c, net, data, dtype, defaults=()):
    """STEPS training steps of a copy of `net` in `dtype`: the final parameters, and per step
    the loss, the gradient norm before clipping and whether it clipped. `defaults` names what
    takes PyTorch's defaults instead of gradlab's semantics: "optimizer", "clip"."""
    net = copy.deepcopy(net).to(dtype)
    params = list(net.parameters())
    cls, kw = optimizer_args(c, "optimizer" in defaults)
    opt = cls(params, **kw)
    depth, b, h = c["depth"], c["batch"], c["hidden"]
    zeros = torch.zeros(depth, b, h, dtype=dtype)
    state = (zeros, zeros) if c["cell"] == "lstm" else zeros
    losses, norms, clipped = [], [], []
    for x, target in data:
        opt.zero_grad()
        logits, new_state = net(x.to(dtype), state)
        loss = loss_of(c, logits, target.to(dtype))
        loss.backward()
        losses.append(loss.item())
        norms.append(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params)).item())
        clipped.append(clip(c, params, "clip" in defaults))
        opt.step()
        if TASKS[c["task"]]["carries"]:
            state = tuple(s.detach() for s in new_state) if isinstance(new_state, tuple) \
                else new_state.detach()
    final = {n: p.detach().clone() for n, p in net.named().items()}
    return final, losses, norms, clipped


def gradlab_config(c):
    """The run configuration gradlab trains the case with (TOML)."""
    cell, _, nonlinearity = c["cell"].partition("-")
    lines = [f'task = "{c["task"]}"', f"seq_len = {c['seq_len']}", f'cell = "{cell}"',
             f"hidden = {c['hidden']}", f"depth = {c['depth']}", f"batch = {c['batch']}",
             f"steps = {STEPS}", f'optimizer = "{c["optimizer"]}"', f"lr = {c['lr']!r}",
             f'clip = "{c["clip"]}"', 'truncation = "full"']
    if nonlinearity:
        lines.insert(3, f'nonlinearity = "{nonlinearity}"')
    if c.get("momentum"):
        lines.append(f"momentum = {c['momentum']!r}")
    if c.get("nesterov"):
        lines.append("nesterov = true")
    return "\n".join(lines) + "\n"


def differences(c, ref, net, data):
    """Where gradlab's semantics differ from PyTorch's defaults for this case, each with how far
    PyTorch's default alone lands from the fixture (the largest norm-wise relative error over
    the tensors): a list of {knob, what, pytorch_defaults_rel_err}, and the result of the
    optimiser's PyTorch defaults (None where they are gradlab's)."""
    notes = []
    if c["optimizer"] == "rmsprop":
        notes.append(("optimizer", f"RMSprop decay alpha = {RMSPROP_DECAY} (char-rnn's), "
                      "PyTorch's default is 0.99"))
    if c["optimizer"] == "adagrad":
        notes.append(("optimizer", f"Adagrad eps = {EPS:g} (sqrt(sum g^2) + eps, "
                      "min-char-rnn's), PyTorch's default is 1e-10; the initial accumulator "
                      "is 0 in both"))
    if c["clip"].startswith("norm"):
        notes.append(("clip", "norm clipping scales by t / norm when norm > t (Pascanu et "
                      "al.); torch.nn.utils.clip_grad_norm_ scales by t / (norm + 1e-6)"))
    out, optimizer_defaults = [], None
    for knob, what in notes:
        other = train(c, net, data, torch.float64, defaults=(knob,))
        worst = max(rel_err(other[0][n].float(), ref[n]) for n in ref)
        out.append(dict(knob=knob, what=what, pytorch_defaults_rel_err=worst))
        if knob == "optimizer":
            optimizer_defaults = other
    return out, optimizer_defaults


def write(path, tensors, meta):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path,
              metadata={"fixture": json.dumps(meta, indent=1)})
    print(f"wrote {path}: {os.path.getsize(path)} bytes")


def build(c, out_dir):
    task = TASKS[c["task"]]
    torch.manual_seed(c["seed"])
    net = Net(c, task["input"], task["output"])  # float32, PyTorch's default initialisation
    g = torch.Generator().manual_seed(c["seed"])
    data = batches(c, g)

    final, losses, norms, clipped = train(c, net, data, torch.float64)
    final = {n: v.float() for n, v in final.items()}
    single = train(c, net, data, torch.float32)[0]
    f32_err = {n: rel_err(single[n], final[n]) for n in final}

    assert max(f32_err.values()) <= F32_SPREAD_MAX, f"{case_name(c)}: float32 spread {f32_err}"
    kind = c["clip"].split(":")[0]
    if kind != "none":
        assert any(clipped), f"{case_name(c)}: {c['clip']} never clips (norms {norms})"
    if kind == "norm":
        tau = float(c["clip"].split(":")[1])
        assert all(abs(n - tau) > 1e-3 * tau for n in norms), \
            f"{case_name(c)}: a norm within 0.1% of the threshold: {norms}"

    diffs, other = differences(c, final, net, data)
    cell, _, nonlinearity = c["cell"].partition("-")
    case = dict(name=case_name(c), cell=cell, nonlinearity=nonlinearity or None,
                depth=c["depth"], input=task["input"], hidden=c["hidden"],
                output=task["output"], seq_len=c["seq_len"], batch=c["batch"],
                steps=STEPS, task=c["task"], loss=task["loss"], clip=c["clip"],
                optimizer=optimizer_meta(c),
                init_seed=c["seed"], differs_from_pytorch=diffs)

    tensors = {f"initial.{n}": p.detach().clone() for n, p in net.named().items()}
    for k, (x, y) in enumerate(data):
        tensors[f"batch{k}.input"] = x
        tensors[f"batch{k}.target"] = y
    meta = {"gradlab.config": gradlab_config(c), "case": case, "expect": "match",
            "torch": torch.__version__, "losses": losses, "grad_norms": norms,
            "clipped": clipped, "torch_f32_rel_err": f32_err,
            "computed": "PyTorch in float64 from float32 parameters and batches"}
    path = os.path.join(out_dir, case_name(c) + ".safetensors")
    write(path, {**tensors, **{f"final.{n}": v for n, v in final.items()}}, meta)
    worst = max(f32_err.items(), key=lambda kv: kv[1])
    print(f"  losses {[f'{v:.6g}' for v in losses]}, norms {[f'{v:.4g}' for v in norms]}, "
          f"clipped {clipped}; float32 PyTorch vs float64: {worst[1]:.2e} ({worst[0]})")
    for d in diffs:
        print(f"  differs from PyTorch's defaults: {d['what']}: "
              f"{d['pytorch_defaults_rel_err']:.2e}")
    return tensors, meta, final, other


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(
        root, "experiments", "tests", "fixtures", "torch_parity"))
    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    for old in os.listdir(a.out) if os.path.isdir(a.out) else []:
        if old.endswith(".safetensors"):
            os.remove(os.path.join(a.out, old))

    for i, c in enumerate(CASES):
        tensors, meta, final, other = build(c, a.out)
        if i not in DIFFER_CASES:
            continue
        # The same case computed with PyTorch's defaults: gradlab must land from it exactly as
        # far as its own semantics do.
        other_final = {n: v.float() for n, v in other[0].items()}
        documented = {n: rel_err(final[n], other_final[n]) for n in final}
        assert max(documented.values()) > PROVABLE, documented
        case = dict(meta["case"], name=meta["case"]["name"] + "-pytorch-defaults")
        case["optimizer"] = optimizer_meta(c, defaults=True)
        meta = dict(meta, case=case, expect="differ", losses=other[1], grad_norms=other[2],
                    clipped=other[3], documented_rel_err=documented,
                    partner=meta["case"]["name"],
                    difference=next(d["what"] for d in meta["case"]["differs_from_pytorch"]
                                    if d["knob"] == "optimizer"))
        del meta["torch_f32_rel_err"]
        path = os.path.join(a.out, case["name"] + ".safetensors")
        write(path, {**tensors, **{f"final.{n}": v for n, v in other_final.items()}}, meta)
        print(f"  gradlab's semantics land {max(documented.values()):.2e} from PyTorch's "
              "defaults (largest per tensor)")
    total = sum(os.path.getsize(os.path.join(a.out, f)) for f in os.listdir(a.out))
    print(f"{len(os.listdir(a.out))} fixtures, {total} bytes in {a.out}")


if __name__ == "__main__":
    main()
