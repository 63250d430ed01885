#!/usr/bin/env python3
"""Train the PyTorch twin of a gradlab run on the exact batches `gradlab data` wrote.

    gradlab data --config run.toml --out data.safetensors
    python3 scripts/torch_twin.py data.safetensors --out curve.csv [--init gradlab|torch]
        [--threads N]

The file's metadata holds the run's configuration; the twin builds the same model (nn.RNN,
nn.LSTM or nn.GRU with `depth` layers of `hidden` units, and an nn.Linear head on the top
layer's outputs) and trains it as gradlab does:

- one update per training batch of the file, in order; the loss is the mean over the steps
  that `loss_mask` marks (MSE of the last step's output for `adding`, cross-entropy of every
  marked step otherwise); a task that carries its state (charlm) starts each batch from the
  previous batch's final (h, c), detached, the others from zeros;
- clipping `norm:t` scales the gradient by t/||g|| when its global norm ||g|| (every
  parameter, head included) exceeds t, `value:t` clamps each element to [-t, t];
- SGD (momentum, Nesterov), Adagrad, RMSprop (alpha = the run's rmsprop_decay) or Adam (0.9, 0.999), eps 1e-8,
  with gradlab's `step:<every>:<gamma>` schedule;
- evaluation after every `eval_every` updates (the first `eval_sequences` sequences of the
  file's evaluation data; all of charlm's validation windows, the state carried from one to
  the next) and after the last update (all of it); the loss is the mean over every marked step
  of the evaluation, the metric the task's (MSE, accuracy, error rate, bits per character);
- a row of the CSV at every update gradlab logs (every `log_every`, the first and the last,
  every evaluation): step, loss, grad_norm (before clipping), eval_loss, eval_metric, seconds.

`--init gradlab` (the default) starts from the file's `init.*` tensors, gradlab's initial
parameters for that seed; `--init torch` draws PyTorch's own (seeded with the run's seed), which
for `init = "default"` is the same distribution (U(-1/sqrt(H), 1/sqrt(H)) for every parameter),
with the LSTM forget-gate bias set as gradlab sets it (`bias_ih` = forget_bias, `bias_hh` = 0).

A summary (final and best evaluation loss, metric, success, wall time) is printed as JSON and
written beside the CSV (`curve.json`). Stack models only (not seq2seq), full BPTT of each batch
(`truncation` >= the batch's steps). Needs: torch, safetensors.
"""

import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from safetensors import safe_open


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


class Data:
    """A `gradlab data` file: its metadata and lazily read tensors."""

    def __init__(self, path):
        self.file = safe_open(path, framework="pt")
        meta = self.file.metadata() or {}
        if meta.get("format") != "gradlab-data":
            fail(f"{path} is not a `gradlab data` file (no format = gradlab-data in its metadata)")
        if meta.get("format_version") != "1":
            fail(f"{path}: format_version {meta.get('format_version')}, this script reads 1")
        self.config = json.loads(meta["config"])
        self.task = json.loads(meta["task"])
        self.evaluation = json.loads(meta["evaluation"])
        self.batches = int(meta["batches"])
        self.run_id = meta["run_id"]
        self.names = set(self.file.keys())

    def batch(self, prefix, k):
        """Batch (or evaluation window) k: inputs [T][B][I], targets, loss mask, metric mask."""
        get = lambda name: self.file.get_slice(prefix + name)[k]
        metric = get("metric_mask") if prefix + "metric_mask" in self.names else None
        return get("inputs"), get("targets"), get("loss_mask"), metric

    def windows(self, prefix):
        return self.file.get_slice(prefix + "inputs").get_shape()[0]

    def init(self):
        return {n[len("init."):]: self.file.get_tensor(n) for n in self.names if n.startswith("init.")}


class Twin(torch.nn.Module):
    """The stack and its head."""

    def __init__(self, cfg, task):
        super().__init__()
        i, h, layers = task["input_size"], cfg["hidden"], cfg["depth"]
        if cfg["cell"] == "lstm":
            self.rnn = torch.nn.LSTM(i, h, num_layers=layers)
        elif cfg["cell"] == "gru":
            self.rnn = torch.nn.GRU(i, h, num_layers=layers)
        else:
            self.rnn = torch.nn.RNN(i, h, num_layers=layers, nonlinearity=cfg["nonlinearity"])
        self.head = torch.nn.Linear(h, task["output_size"])

    def forward(self, x, state):
        y, state = self.rnn(x, state)
        return self.head(y), state


def detach(state):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def initialise(model, data, how, cfg):
    if how == "gradlab":
        sd = data.init()
        model.rnn.load_state_dict({k: v for k, v in sd.items() if not k.startswith("head.")})
        model.head.load_state_dict({k[len("head."):]: v for k, v in sd.items() if k.startswith("head.")})
        return
    if cfg["init"] != "default":
        fail(f"--init torch draws gradlab's init = \"default\" only, this run has "
             f"init = \"{cfg['init']}\"; use --init gradlab (the file's initial parameters)")
    torch.manual_seed(cfg["seed"])
    model.rnn.reset_parameters()
    model.head.reset_parameters()
    if cfg["cell"] == "lstm":
        h = cfg["hidden"]
        with torch.no_grad():
            for layer in range(cfg["depth"]):
                getattr(model.rnn, f"bias_ih_l{layer}")[h:2 * h] = cfg["forget_bias"]
                getattr(model.rnn, f"bias_hh_l{layer}")[h:2 * h] = 0.0


def optimiser(params, cfg):
    if cfg.get("regularizer", "none") != "none":
        fail(f"regularizer = \"{cfg['regularizer']}\" (Pascanu's Ω) is not supported by the twin")
    kind, lr = cfg["optimizer"], cfg["lr"]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"], nesterov=cfg["nesterov"])
    if kind == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=1e-8)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=cfg.get("rmsprop_decay", 0.95), eps=1e-8)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    fail(f"unknown optimizer {kind}")


def lr_at(cfg, step):
    schedule = cfg["lr_schedule"]
    if schedule == "constant":
        return cfg["lr"]
    kind, every, gamma = schedule.split(":")
    if kind != "step":
        fail(f"lr_schedule = \"{schedule}\" is not supported by the twin (constant and step:<every>:<gamma> are)")
    return cfg["lr"] * float(gamma) ** (step // int(every))


class Loss:
    """Sum of the loss over marked steps, their count, and the metric's counts."""

    def __init__(self):
        self.sum, self.terms, self.correct, self.scored = 0.0, 0, 0, 0

    def mean(self):
        return self.sum / self.terms if self.terms else float("nan")


def batch_loss(task, logits, targets, mask, acc=None, metric=None):
    """The mean loss of a batch over the steps `mask` marks; with `acc`, also adds its sum (in
    float64), its terms and the metric's counts (`metric`: the scored steps) to `acc`."""
    if task["loss"] == "mse":
        err = logits[-1, :, 0] - targets
        if acc is not None:
            acc.sum += float((err.double() ** 2).sum())
            acc.terms += targets.numel()
        return (err ** 2).mean()
    flat = logits.reshape(-1, logits.shape[-1])
    labels = targets.reshape(-1)
    if acc is not None:
        acc.sum += float(F.cross_entropy(flat.double(), labels, reduction="sum"))
        acc.terms += int(mask.sum())
        scored = metric.reshape(-1)
        acc.correct += int((flat.argmax(-1)[scored] == labels[scored]).sum())
        acc.scored += int(scored.sum())
    return F.cross_entropy(flat, labels)


def task_metric(task, acc):
    name = task["metric"]
    accuracy = acc.correct / acc.scored if acc.scored else float("nan")
    if name == "MSE":
        return acc.mean()
    if name == "bits/char":
        return acc.mean() / math.log(2)
    if name == "error rate":
        return 1.0 - accuracy
    return accuracy


@torch.no_grad()
def evaluate(model, data, task, sequences=None):
    """Loss and metric on the evaluation data (its first `sequences` sequences if given)."""
    acc, state = Loss(), None
    chunk = 1000
    for w in range(data.windows("eval_")):
        x, y, mask, metric = data.batch("eval_", w)
        if task["carries_state"]:
            logits, state = model(x, state)
            batch_loss(task, logits, y, mask, acc, metric)
            continue
        n = x.shape[1] if sequences is None else min(sequences, x.shape[1])
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            yb = y[a:b] if task["loss"] == "mse" else y[:, a:b]
            logits, _ = model(x[:, a:b], None)
            batch_loss(task, logits, yb, mask[:, a:b], acc, None if metric is None else metric[:, a:b])
    return acc.mean(), task_metric(task, acc)


def clip(params, cfg):
    """gradlab's clipping of the gradient; returns its global norm before clipping."""
    grads = [p.grad for p in params]
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    kind = cfg["clip"]
    if kind != "none":
        how, tau = kind.split(":")
        tau = float(tau)
        if how == "norm" and math.isfinite(norm) and norm > tau:
            scale = torch.tensor(tau / norm, dtype=torch.float32)
            for g in grads:
                g.mul_(scale)
        elif how == "value":
            for g in grads:
                g.clamp_(-tau, tau)
    return norm


def logged(cfg, step):
    """Whether gradlab logs update `step` (before evaluations, which are always logged)."""
    last = step + 1 == cfg["steps"]
    spectrum = cfg["lyapunov_steps"] > 0 and (
        step == 0 or last or (cfg["diag_every"] > 0 and step % cfg["diag_every"] == 0))
    return step % cfg["log_every"] == 0 or last or spectrum


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="a file written by `gradlab data`")
    ap.add_argument("--out", required=True, help="the learning curve (CSV); the summary goes beside it as .json")
    ap.add_argument("--init", choices=["gradlab", "torch"], default="gradlab",
                    help="start from the file's initial parameters (gradlab's) or draw PyTorch's")
    ap.add_argument("--threads", type=int, default=1, help="torch threads [default: 1]")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = Data(args.data)
    cfg, task = data.config, data.task
    if cfg["model"] != "stack":
        fail("the twin trains stack models only (model = \"stack\"), not seq2seq")
    k1 = cfg.get("truncation_k1") or (None if cfg["truncation"] == "full" else cfg["truncation"])
    k2 = cfg.get("truncation_k2") or k1
    if (k1 is not None and k1 < task["time_steps"]) or (k2 is not None and k2 < task["time_steps"]):
        fail(f"the twin backpropagates through whole batches; this run truncates BPTT to "
             f"({k1}, {k2}) of {task['time_steps']} steps")
    steps = min(cfg["steps"], data.batches)
    if data.batches < cfg["steps"]:
        print(f"note: the file holds {data.batches} of the run's {cfg['steps']} batches; "
              f"training on those", file=sys.stderr)
        cfg["steps"] = steps

    model = Twin(cfg, task)
    initialise(model, data, args.init, cfg)
    params = list(model.parameters())
    opt = optimiser(params, cfg)
    rows, state, best = [], None, float("inf")
    diverged_at, start = None, time.perf_counter()
    for step in range(steps):
        x, y, mask, _ = data.batch("", step)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        opt.zero_grad(set_to_none=False)
        logits, new_state = model(x, detach(state) if task["carries_state"] else None)
        loss = batch_loss(task, logits, y, mask)
        loss.backward()
        state = new_state
        norm = clip(params, cfg)
        row = dict(step=step, loss=loss.item(), grad_norm=norm, eval_loss="", eval_metric="")
        if not (math.isfinite(row["loss"]) and math.isfinite(norm)):
            diverged_at = step
            rows.append(row)
            break
        opt.step()
        last = step + 1 == steps
        log = logged(cfg, step)
        if (step + 1) % cfg["eval_every"] == 0 and not last:
            row["eval_loss"], row["eval_metric"] = evaluate(model, data, task, cfg["eval_sequences"])
            best = min(best, row["eval_loss"])
            log = True
        if last:
            row["eval_loss"], row["eval_metric"] = evaluate(model, data, task)
            best = min(best, row["eval_loss"])
        if log:
            row["seconds"] = time.perf_counter() - start
            rows.append(row)
    wall = time.perf_counter() - start

    final = rows[-1]["eval_loss"] if diverged_at is None else float("nan")
    metric = rows[-1]["eval_metric"] if diverged_at is None else float("nan")
    criterion = task["criterion"]
    success = None
    if criterion is not None:
        success = bool(metric < criterion["threshold"] if criterion["op"] == "<"
                       else metric >= criterion["threshold"])
    columns = ["step", "loss", "grad_norm", "eval_loss", "eval_metric", "seconds"]
    with open(args.out, "w") as f:
        f.write(",".join(columns) + "\n")
        for r in rows:
            f.write(",".join(repr(r.get(c, wall)).strip("'") for c in columns) + "\n")
    summary = dict(run_id=data.run_id, task=task["name"], seed=cfg["seed"], init=args.init,
                   steps=steps, final_loss=final, best_loss=best if best < float("inf") else final,
                   metric=metric, success=success, diverged_at_step=diverged_at,
                   first_loss=rows[0]["loss"], wall_seconds=wall, threads=args.threads,
                   torch=torch.__version__)
    summary_path = args.out.rsplit(".", 1)[0] + ".json"
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
