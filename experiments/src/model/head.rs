//! The output head: logits `Z = Y Wᵀ + b` of the top layer's outputs, through the kernels'
//! sgemm, and the task's loss on them (mean squared error or softmax cross-entropy) with its
//! gradient. Training, evaluation and sampling all compute logits with [`logits`], so a sampled
//! character is the one training's forward pass would predict.

use std::ops::Range;

use gradlab_kernels::gemm::{sgemm, GemmShape, Mat, MatMut};
use gradlab_kernels::Par;

use super::Model;
use crate::task::{LossKind, MetricAcc, Targets, Task, NO_LABEL};

/// Logits of `rows` top-layer outputs `y` (`[rows][H]`) into `out` (`[rows][O]`, resized).
pub fn logits(model: &Model, y: &[f32], rows: usize, out: &mut Vec<f32>, par: Par) {
    let (h, o) = (model.stack.hidden, model.output);
    let (wr, br) = model.head_ranges();
    let (w, bias) = (&model.params[wr], &model.params[br]);
    out.clear();
    out.extend((0..rows).flat_map(|_| bias.iter().copied()));
    sgemm(
        GemmShape {
            m: rows,
            k: h,
            n: o,
        },
        Mat::rows(&y[..rows * h], h),
        Mat::transposed(w, h),
        1.0,
        MatMut::rows(out, o),
        par,
    );
}

/// Scratch of the head: logits, then their gradient, for the loss rows of one window.
#[derive(Clone, Debug, Default)]
pub struct HeadScratch {
    logits: Vec<f32>,
}

/// The part of a window the head is scored on.
#[derive(Clone, Debug)]
pub struct LossWindow<'a> {
    /// The stack's output over the window, `[T][B][H]`.
    pub y: &'a [f32],
    /// The targets of the whole batch, `[T_batch][B]` or `[B]`.
    pub targets: &'a Targets,
    /// The batch time step at which the window starts.
    pub offset: usize,
    /// Sequences B.
    pub batch: usize,
    /// The window's time steps that carry a loss.
    pub times: Range<usize>,
}

/// Where the gradient of the summed loss goes, times `scale`.
pub struct HeadGrad<'a> {
    pub scale: f32,
    /// The output gradient of the stack over the window, `[T][B][H]` (added to).
    pub dy: &'a mut [f32],
    /// `head.weight` then `head.bias` (added to).
    pub dhead: &'a mut [f32],
}

/// Head forward and loss on `w`: adds the loss and the metric counts to `acc`; with `grad`,
/// also adds its scaled gradient to the stack's output gradient and to the head's parameters.
pub fn head_loss(
    model: &Model,
    task: &Task,
    w: LossWindow<'_>,
    scratch: &mut HeadScratch,
    acc: &mut MetricAcc,
    grad: Option<HeadGrad<'_>>,
    par: Par,
) {
    let (h, o, b) = (model.stack.hidden, model.output, w.batch);
    let rows = w.times.len() * b;
    if rows == 0 {
        return;
    }
    let ys = &w.y[w.times.start * b * h..w.times.end * b * h];
    logits(model, ys, rows, &mut scratch.logits, par);
    // Loss and d(loss)/d(logits) per row, in place.
    for (r, z) in scratch.logits.chunks_exact_mut(o).enumerate() {
        let (step, row) = (w.offset + w.times.start + r / b, r % b);
        match (task.loss(), w.targets) {
            (LossKind::Mse, Targets::Last(values)) => {
                let e = z[0] - values[row];
                acc.loss_sum += f64::from(e) * f64::from(e);
                acc.loss_terms += 1;
                if let Some(tol) = task.kind.abs_tolerance() {
                    acc.scored += 1;
                    acc.correct += usize::from(e.abs() < tol);
                }
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
    if let Some(HeadGrad { scale, dy, dhead }) = grad {
        let (wr, _) = model.head_ranges();
        let weight = &model.params[wr];
        let dz = &mut scratch.logits;
        dz.iter_mut().for_each(|v| *v *= scale);
        let (dw, db) = dhead.split_at_mut(o * h);
        // dW += dZᵀ Y, db += Σ dZ, dY += dZ W.
        sgemm(
            GemmShape {
                m: o,
                k: rows,
                n: h,
            },
            Mat::transposed(dz, o),
            Mat::rows(ys, h),
            1.0,
            MatMut::rows(dw, h),
            par,
        );
        for z in dz.chunks_exact(o) {
            db.iter_mut().zip(z).for_each(|(d, v)| *d += v);
        }
        let dys = &mut dy[w.times.start * b * h..w.times.end * b * h];
        sgemm(
            GemmShape {
                m: rows,
                k: o,
                n: h,
            },
            Mat::rows(dz, o),
            Mat::rows(weight, h),
            1.0,
            MatMut::rows(dys, h),
            par,
        );
    }
}
