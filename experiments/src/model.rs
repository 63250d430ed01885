//! The model: a stack of recurrent layers and a linear output head, in PyTorch's layout, and the
//! head's loss (mean squared error or softmax cross-entropy) with its gradient.

use std::ops::Range;

use gradlab_kernels::gemm::{sgemm, Mat};
use gradlab_kernels::{Activation, Cell, Par, StackShape};

use crate::config::{CellKind, Nonlinearity, RunConfig};
use crate::tasks::{LossKind, MetricAcc, Targets, Task, NO_LABEL};

/// Stacked RNN/LSTM + linear head. Parameters are one flat vector: the stack in
/// `named_parameters()` order, then `head.weight` `(O, H)` and `head.bias` `(O)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub stack: StackShape,
    pub output: usize,
    pub params: Vec<f32>,
}

impl Model {
    /// A zero-initialised model for `cfg` on `task`.
    pub fn new(cfg: &RunConfig, task: &Task) -> Self {
        let cell = match (cfg.cell, cfg.nonlinearity) {
            (CellKind::Lstm, _) => Cell::Lstm,
            (CellKind::Rnn, Nonlinearity::Tanh) => Cell::Rnn(Activation::Tanh),
            (CellKind::Rnn, Nonlinearity::Relu) => Cell::Rnn(Activation::Relu),
        };
        let stack = StackShape {
            cell,
            input: task.input_size(),
            hidden: cfg.hidden,
            layers: cfg.depth,
        };
        Self::with_shape(stack, task.output_size())
    }

    /// A zero-initialised model of this shape.
    pub fn with_shape(stack: StackShape, output: usize) -> Self {
        let n = stack.num_params() + output * stack.hidden + output;
        Model {
            stack,
            output,
            params: vec![0.0; n],
        }
    }

    /// `head.weight` and `head.bias` in the flat vector.
    pub fn head_ranges(&self) -> (Range<usize>, Range<usize>) {
        let w = self.stack.num_params()..self.stack.num_params() + self.output * self.stack.hidden;
        let b = w.end..w.end + self.output;
        (w, b)
    }

    /// PyTorch names, shapes and ranges of every parameter.
    pub fn param_names(&self) -> Vec<(String, Vec<usize>, Range<usize>)> {
        let (w, b) = self.head_ranges();
        let mut names = self.stack.param_names();
        names.push((
            "head.weight".into(),
            vec![self.output, self.stack.hidden],
            w,
        ));
        names.push(("head.bias".into(), vec![self.output], b));
        names
    }
}

/// The steps of a `t`-step window whose targets carry a loss.
pub fn loss_steps(targets: &Targets, t: usize, b: usize) -> Range<usize> {
    match targets {
        Targets::Last(_) => t - 1..t,
        Targets::Classes(labels) => {
            let has = |s: usize| labels[s * b..(s + 1) * b].iter().any(|&l| l != NO_LABEL);
            let first = (0..t).find(|&s| has(s)).unwrap_or(t);
            let last = (0..t).rev().find(|&s| has(s)).map_or(first, |s| s + 1);
            first..last
        }
    }
}

/// Number of loss terms of a window (the mean's denominator).
pub fn loss_terms(targets: &Targets) -> usize {
    match targets {
        Targets::Last(y) => y.len(),
        Targets::Classes(labels) => labels.iter().filter(|&&l| l != NO_LABEL).count(),
    }
}

/// Scratch of the head: logits and their gradient for the loss rows of one window.
#[derive(Clone, Debug, Default)]
pub struct HeadScratch {
    logits: Vec<f32>,
}

/// Head forward and loss for steps `steps` of a window whose top-layer output is `y`
/// (`[T][B][H]`, the window starting at global step `offset` of the batch's targets).
///
/// Adds to `acc` the loss and the metric counts. With `grad = Some((scale, dy, dhead))`, also
/// adds `scale ×` the gradient of the summed loss to `dy` (the output gradient of the stack,
/// `[T][B][H]`) and to `dhead` (`head.weight` then `head.bias`).
#[allow(clippy::too_many_arguments)]
pub fn head_loss(
    model: &Model,
    task: &Task,
    y: &[f32],
    targets: &Targets,
    (offset, b): (usize, usize),
    steps: Range<usize>,
    scratch: &mut HeadScratch,
    acc: &mut MetricAcc,
    grad: Option<(f32, &mut [f32], &mut [f32])>,
    par: Par,
) {
    let (h, o) = (model.stack.hidden, model.output);
    let rows = steps.len() * b;
    if rows == 0 {
        return;
    }
    let (wr, br) = model.head_ranges();
    let (w, bias) = (&model.params[wr], &model.params[br]);
    let ys = &y[steps.start * b * h..steps.end * b * h];
    scratch.logits.clear();
    scratch
        .logits
        .extend((0..rows).flat_map(|_| bias.iter().copied()));
    sgemm(
        rows,
        h,
        o,
        Mat::rows(ys, h),
        Mat::transposed(w, h),
        1.0,
        &mut scratch.logits,
        o,
        par,
    );
    // Loss and d(loss)/d(logits) per row, in place.
    for (r, z) in scratch.logits.chunks_exact_mut(o).enumerate() {
        let (step, row) = (offset + steps.start + r / b, r % b);
        match (task.loss(), targets) {
            (LossKind::Mse, Targets::Last(values)) => {
                let e = z[0] - values[row];
                acc.loss_sum += f64::from(e) * f64::from(e);
                acc.loss_terms += 1;
                z[0] = 2.0 * e;
            }
            (LossKind::CrossEntropy, Targets::Classes(labels)) => {
                let label = labels[step * b + row];
                if label == NO_LABEL {
                    z.fill(0.0);
                    continue;
                }
                let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let argmax = z.iter().position(|&v| v == max).unwrap_or(0);
                let sum: f64 = z.iter().map(|&v| f64::from(v - max).exp()).sum();
                let log_p = f64::from(z[label as usize] - max) - sum.ln();
                acc.loss_sum -= log_p;
                acc.loss_terms += 1;
                if task.scored(step) {
                    acc.scored += 1;
                    acc.correct += usize::from(argmax == label as usize);
                }
                for v in z.iter_mut() {
                    *v = (f64::from(*v - max).exp() / sum) as f32;
                }
                z[label as usize] -= 1.0;
            }
            _ => unreachable!("the task's loss matches its targets"),
        }
    }
    if let Some((scale, dy, dhead)) = grad {
        let dz = &mut scratch.logits;
        dz.iter_mut().for_each(|v| *v *= scale);
        let (dw, db) = dhead.split_at_mut(o * h);
        // dW += dZᵀ Y, db += Σ dZ, dY += dZ W.
        sgemm(
            o,
            rows,
            h,
            Mat::transposed(dz, o),
            Mat::rows(ys, h),
            1.0,
            dw,
            h,
            par,
        );
        for z in dz.chunks_exact(o) {
            db.iter_mut().zip(z).for_each(|(d, v)| *d += v);
        }
        let dys = &mut dy[steps.start * b * h..steps.end * b * h];
        sgemm(
            rows,
            o,
            h,
            Mat::rows(dz, o),
            Mat::rows(w, h),
            1.0,
            dys,
            h,
            par,
        );
    }
}
