//! The training gradient against an f64 reference written from the definitions: the stack by
//! `gradlab_kernels::reference`, the head and the loss by hand, and TBPTT(k1, k2) as Williams &
//! Peng define it: every k1 time steps, the losses of those steps are backpropagated k2 time
//! steps back from the last of them. TBPTT(k, k) is the special case whose shorter last chunk is
//! thereby extended back to k steps. A truncated gradient is not the gradient of any loss, so
//! finite differences check the reference only for full BPTT; the reference then checks the
//! trainer for every truncation.

mod common;

use std::ops::Range;

use common::{assert_matches_finite_differences, assert_matches_reference};

use gradlab_experiments::config::RunConfig;
use gradlab_experiments::task::{Batch, Targets, NO_LABEL};
use gradlab_experiments::train::Trainer;
use gradlab_kernels::omega::OMEGA_BOUND;
use gradlab_kernels::reference::{self, pascanu_omega};
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::rnn::OutputGrads;
use gradlab_kernels::{Cell, Par, StackShape};

/// A model in f64: the stack, then `head.weight` `(O, H)` and `head.bias` `(O)`.
#[derive(Clone, Copy)]
struct Net<'a> {
    stack: StackShape,
    output: usize,
    params: &'a [f64],
}

impl Net<'_> {
    fn stack_params(&self) -> &[f64] {
        &self.params[..self.stack.num_params()]
    }

    fn head(&self) -> (&[f64], &[f64]) {
        self.params[self.stack.num_params()..].split_at(self.output * self.stack.hidden)
    }
}

/// Loss terms of a batch: one per sequence (MSE), one per labelled (step, sequence) (CE).
fn loss_terms(batch: &Batch) -> usize {
    match &batch.targets {
        Targets::Last(values) => values.len(),
        Targets::Classes(labels) => labels.iter().filter(|&&l| l != NO_LABEL).count(),
    }
}

/// The state `[L][B][H]` (h, and c for an LSTM) after the first `w` steps of `x` from zero.
fn state_at(net: Net<'_>, x: &[f64], w: usize, b: usize) -> (Vec<f64>, Vec<f64>) {
    let s = net.stack;
    let lbh = s.layers * b * s.hidden;
    let lstm = s.cell.has_cell_state();
    if w == 0 {
        return (vec![0.0; lbh], vec![0.0; if lstm { lbh } else { 0 }]);
    }
    let trace = reference::forward(
        s,
        net.stack_params(),
        &x[..w * b * s.input],
        None,
        None,
        w,
        b,
    );
    let h = (0..s.layers).flat_map(|l| trace.h_n(l).to_vec()).collect();
    let c = (0..s.layers).flat_map(|l| trace.c_n(l).to_vec()).collect();
    (h, c)
}

/// The summed loss of batch steps `steps` from the top layer's outputs `y` (`[len][B][H]`,
/// starting at batch step `offset`) and its number of terms; adds the gradient of the summed
/// loss times `scale` to `dy` (like `y`) and to `dhead` (`head.weight`, then `head.bias`).
fn head_loss(
    net: Net<'_>,
    batch: &Batch,
    (y, offset): (&[f64], usize),
    steps: Range<usize>,
    scale: f64,
    dy: &mut [f64],
    dhead: &mut [f64],
) -> (f64, usize) {
    let (h, o, b) = (net.stack.hidden, net.output, batch.batch);
    let (w, bias) = net.head();
    let (dw, db) = dhead.split_at_mut(o * h);
    let (mut loss, mut terms) = (0.0, 0);
    for step in steps {
        for row in 0..b {
            let at = ((step - offset) * b + row) * h;
            let hv = &y[at..at + h];
            let z: Vec<f64> = (0..o)
                .map(|k| bias[k] + (0..h).map(|j| w[k * h + j] * hv[j]).sum::<f64>())
                .collect();
            // d(loss)/dz of this term.
            let dz: Vec<f64> = match &batch.targets {
                Targets::Last(values) if step + 1 == batch.time_steps => {
                    let e = z[0] - f64::from(values[row]);
                    loss += e * e;
                    vec![2.0 * e]
                }
                Targets::Last(_) => continue,
                Targets::Classes(labels) => {
                    let label = labels[step * b + row];
                    if label == NO_LABEL {
                        continue;
                    }
                    let label = label as usize;
                    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
                    loss -= z[label] - max - sum.ln();
                    let p = z.iter().map(|v| (v - max).exp() / sum);
                    p.enumerate()
                        .map(|(k, p)| p - f64::from(u8::from(k == label)))
                        .collect()
                }
            };
            terms += 1;
            for k in 0..o {
                let g = scale * dz[k];
                db[k] += g;
                for j in 0..h {
                    dw[k * h + j] += g * hv[j];
                    dy[at + j] += g * w[k * h + j];
                }
            }
        }
    }
    (loss, terms)
}

/// The mean loss of `batch` from the zero state and its TBPTT(k1, k2) gradient: for every
/// chunk `[s, e)` of k1 steps (the last one possibly shorter), the losses of `[s, e)` are
/// backpropagated through `[max(e − k2, 0), e)`, that span being recomputed from the true
/// state at its start; the chunks' gradients are summed. k1 = k2 ≥ T is full BPTT.
///
/// With `alpha > 0` (a vanilla RNN), α ∂Ω/∂W_hh of Pascanu et al.'s Ω is added to each layer's
/// W_hh gradient: Ω is taken on every chunk's backward (v_k the gradient of the chunk's losses,
/// within the chunk), and the chunks' pairs count together, each chunk's Ω weighted by the
/// pairs it counted.
fn reference_gradient(
    net: Net<'_>,
    batch: &Batch,
    (k1, k2): (usize, usize),
    alpha: f64,
) -> (f64, Vec<f64>) {
    let (t, b, s) = (batch.time_steps, batch.batch, net.stack);
    let (k1, k2) = (k1.min(t), k2.min(t));
    assert!(k1 <= k2, "TBPTT({k1}, {k2})");
    let x: Vec<f64> = batch.x.iter().map(|&v| f64::from(v)).collect();
    let (n, row) = (s.num_params(), b * s.input);
    let scale = 1.0 / loss_terms(batch) as f64;
    let mut grad = vec![0.0; net.params.len()];
    let (mut loss, mut terms) = (0.0, 0);
    // Per layer: the pairs Ω counted, and its gradient weighted by them.
    let mut omega = vec![(0usize, vec![0.0; s.hidden * s.hidden]); s.layers];
    for start in (0..t).step_by(k1) {
        let end = (start + k1).min(t);
        let from = end.saturating_sub(k2);
        let (h0, c0) = state_at(net, &x, from, b);
        let c0 = s.cell.has_cell_state().then_some(&c0[..]);
        let (xs, len) = (&x[from * row..end * row], end - from);
        let trace = reference::forward(s, net.stack_params(), xs, Some(&h0), c0, len, b);
        let mut dy = vec![0.0; len * b * s.hidden];
        let (stack_grad, head_grad) = grad.split_at_mut(n);
        let (l, k) = head_loss(
            net,
            batch,
            (trace.output(), from),
            start..end,
            scale,
            &mut dy,
            head_grad,
        );
        (loss, terms) = (loss + l, terms + k);
        let out = OutputGrads {
            dy: &dy,
            dh_n: None,
            dc_n: None,
        };
        let g = reference::backward(s, net.stack_params(), xs, &trace, out, len);
        stack_grad
            .iter_mut()
            .zip(&g.params)
            .for_each(|(a, v)| *a += v);
        if alpha > 0.0 {
            let Cell::Rnn(act) = s.cell else {
                panic!("Ω is defined for vanilla RNNs only");
            };
            let lbh = len * b * s.hidden;
            for (l, (pairs, sum)) in omega.iter_mut().enumerate() {
                let w_hh = &net.stack_params()[s.layer_ranges(l).w_hh];
                let vs = &g.dh[l * lbh..][..lbh];
                let (_, og) = pascanu_omega(act, w_hh, trace.states(l), vs, (len, b, s.hidden));
                let n = vs
                    .chunks_exact(s.hidden)
                    .filter(|v| v.iter().map(|x| x * x).sum::<f64>() >= OMEGA_BOUND)
                    .count();
                *pairs += n;
                sum.iter_mut().zip(og).for_each(|(a, v)| *a += n as f64 * v);
            }
        }
    }
    for (l, (pairs, sum)) in omega.iter().enumerate().filter(|(_, o)| o.0 > 0) {
        let w_hh = &mut grad[s.layer_ranges(l).w_hh];
        for (a, v) in w_hh.iter_mut().zip(sum) {
            *a += alpha * v / *pairs as f64;
        }
    }
    assert_eq!(terms, loss_terms(batch), "every loss term is counted once");
    (loss / terms as f64, grad)
}

/// The mean loss of `batch` from the zero state (forward only, for finite differences).
fn full_loss(net: Net<'_>, batch: &Batch) -> f64 {
    let (t, b, s) = (batch.time_steps, batch.batch, net.stack);
    let x: Vec<f64> = batch.x.iter().map(|&v| f64::from(v)).collect();
    let trace = reference::forward(s, net.stack_params(), &x, None, None, t, b);
    let (mut dy, mut dhead) = (vec![0.0; t * b * s.hidden], vec![0.0; net.params.len()]);
    let n = s.num_params();
    let (loss, terms) = head_loss(
        net,
        batch,
        (trace.output(), 0),
        0..t,
        1.0,
        &mut dy,
        &mut dhead[n..],
    );
    loss / terms as f64
}

/// A trainer of `cell` with `depth` layers of 6 units on `task`, batch 3, truncated by
/// `truncation` (TOML lines). The adding and temporal-order windows are 10 steps long, the copy
/// window 21 (delay 1).
fn trainer(cell: &str, depth: usize, task: &str, truncation: &str) -> Trainer {
    let seq_len = if task == "copy" { 1 } else { 10 };
    let toml = format!(
        "task = '{task}'\nseq_len = {seq_len}\ncell = '{cell}'\nhidden = 6\ndepth = {depth}\n\
         batch = 3\nclip = 'none'\nseed = {depth}\n{truncation}\n"
    );
    let cfg = RunConfig::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    Trainer::new(cfg, Par::Seq).expect("valid config")
}

const CASES: [(&str, usize, &str); 15] = [
    ("rnn", 1, "adding"),
    ("rnn", 2, "adding"),
    ("lstm", 1, "adding"),
    ("lstm", 2, "adding"),
    ("rnn", 1, "copy"),
    ("rnn", 2, "copy"),
    ("lstm", 1, "copy"),
    ("lstm", 2, "copy"),
    ("rnn", 1, "temporal-order"),
    ("rnn", 2, "temporal-order"),
    ("lstm", 1, "temporal-order"),
    ("lstm", 2, "temporal-order"),
    ("gru", 1, "adding"),
    ("gru", 2, "copy"),
    ("gru", 2, "temporal-order"),
];

#[test]
fn the_f64_reference_gradient_matches_finite_differences_of_the_full_bptt_loss() {
    // Catches a reference head or loss whose gradient is wrong (a missing factor 2 of the MSE,
    // a softmax gradient without the label's −1, a wrong 1/terms): the oracle of the other tests.
    for (cell, depth, task) in CASES {
        let tr = trainer(cell, depth, task, "");
        let batch = tr.task.fresh_batch(&mut SplitMix64(9), 3);
        let p: Vec<f64> = tr.model.params.iter().map(|&v| f64::from(v)).collect();
        let (stack, output) = (tr.model.stack, tr.model.output);
        let net = |params| Net {
            stack,
            output,
            params,
        };
        let (_, g) = reference_gradient(net(&p), &batch, (usize::MAX, usize::MAX), 0.0);
        let what = format!("{cell} depth {depth} {task}");
        assert_matches_finite_differences(&what, &p, &g, |params| {
            full_loss(
                Net {
                    stack,
                    output,
                    params,
                },
                &batch,
            )
        });
    }
}

/// Checks the trainer's loss and gradient against the f64 reference for TBPTT(`k1`, `k2`)
/// (`truncation` as TOML) in every case; returns, per case, how far the truncated reference
/// gradient is from the full one (‖·‖∞), so a test can make sure it truncates.
fn check_against_reference(truncation: &str, k: (usize, usize)) -> Vec<f64> {
    CASES
        .iter()
        .map(|&(cell, depth, task)| {
            let mut tr = trainer(cell, depth, task, truncation);
            let batch = tr.task.fresh_batch(&mut SplitMix64(4), 3);
            let p: Vec<f64> = tr.model.params.iter().map(|&v| f64::from(v)).collect();
            let (stack, output) = (tr.model.stack, tr.model.output);
            let net = Net {
                stack,
                output,
                params: &p,
            };
            let (want_loss, want) = reference_gradient(net, &batch, k, 0.0);
            let what = format!("{cell} depth {depth} {task} [{truncation}]");
            assert_matches_reference(&what, tr.loss_and_gradient(&batch), (want_loss, &want));
            let (_, full) = reference_gradient(net, &batch, (usize::MAX, usize::MAX), 0.0);
            full.iter()
                .zip(&want)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
        })
        .collect()
}

#[test]
fn the_full_bptt_training_gradient_matches_the_f64_reference() {
    // Catches a wrong stack or head gradient, or a wrong mean over the loss terms, in f32 training.
    check_against_reference("", (usize::MAX, usize::MAX));
    check_against_reference("truncation = 21", (21, 21));
}

#[test]
fn tbptt_k_training_gradient_extends_the_short_last_chunk_back_to_k_steps() {
    // Catches a last chunk backpropagated only over its own length ([8, 10) instead of [6, 10)
    // at T = 10, k = 4; [20, 21) instead of [17, 21) at T = 21), chunks that drop the carried
    // state, and chunk gradients that are not summed.
    let bias = check_against_reference("truncation = 4", (4, 4));
    assert!(
        bias.iter().all(|&d| d > 1e-3),
        "k = 4 < T must truncate in every case: {bias:?}"
    );
}

#[test]
fn tbptt_k1_k2_training_gradient_backpropagates_every_k1_steps_k2_steps() {
    // Catches TBPTT(3, 5) that backpropagates k1 instead of k2 steps, recomputes the k2-window
    // from the wrong state, or counts a loss in two overlapping windows.
    let bias = check_against_reference("truncation_k1 = 3\ntruncation_k2 = 5", (3, 5));
    assert!(
        bias.iter().all(|&d| d > 1e-3),
        "TBPTT(3, 5) must truncate in every case: {bias:?}"
    );
}

#[test]
fn pascanu_omega_adds_its_w_hh_gradient_on_every_backpropagated_chunk() {
    // Catches Ω taken on the wrong v (the loss's dy alone, or v before the recurrent part is
    // added), its gradient on a transposed W_hh or on the wrong layer, α applied twice or not at
    // all, a chunk's backward left out of Ω, and any regulariser gradient outside W_hh.
    let alpha = 2.5;
    for (truncation, k) in [
        ("", (usize::MAX, usize::MAX)),
        ("truncation = 4", (4, 4)),
        ("truncation_k1 = 3\ntruncation_k2 = 5", (3, 5)),
    ] {
        for (nonlinearity, depth, task) in [
            ("tanh", 1, "adding"),
            ("relu", 2, "temporal-order"),
            ("tanh", 2, "copy"),
            ("relu", 1, "copy"),
        ] {
            let extra = format!(
                "{truncation}\nnonlinearity = '{nonlinearity}'\nregularizer = 'pascanu:{alpha}'"
            );
            let mut tr = trainer("rnn", depth, task, &extra);
            let batch = tr.task.fresh_batch(&mut SplitMix64(4), 3);
            let p: Vec<f64> = tr.model.params.iter().map(|&v| f64::from(v)).collect();
            let net = Net {
                stack: tr.model.stack,
                output: tr.model.output,
                params: &p,
            };
            let (want_loss, want) = reference_gradient(net, &batch, k, alpha);
            let (_, plain) = reference_gradient(net, &batch, k, 0.0);
            let what = format!("{nonlinearity} depth {depth} {task} [{extra}]");
            assert_matches_reference(&what, tr.loss_and_gradient(&batch), (want_loss, &want));
            for l in 0..depth {
                let r = tr.model.stack.layer_ranges(l).w_hh;
                let moved = want[r.clone()]
                    .iter()
                    .zip(&plain[r])
                    .any(|(a, b)| (a - b).abs() > 1e-3);
                assert!(
                    moved,
                    "{what}: Ω leaves layer {l}'s W_hh gradient as it was"
                );
            }
        }
    }
}
