//! Spectral diagnostics of the recurrence (DESIGN.md "Diagnostics"), measured at the updates
//! `diag_every` names: for every layer, the Lyapunov spectrum of its recurrence over an input
//! stream, and the singular values of products of its step Jacobians `∂s_t/∂s_{t−k}`.
//!
//! The stream is fixed for the run (seeded from its seed), so spectra at different updates
//! differ only by the parameters: `WARMUP + lyapunov_steps` time steps of the task's inputs,
//! from the zero state with the state carried: fresh sequences of a synthetic task one after
//! another, the validation text of charlm. One forward pass over it (batch 1) stores what the
//! step Jacobians ([`crate::model::jacobian`]) are built from:
//!
//! - the full Lyapunov spectrum (Benettin's QR method, [`Lyapunov`]) of each layer's own
//!   recurrence, averaged over the `lyapunov_steps` maps after the first `WARMUP`, with the
//!   Kaplan-Yorke dimension and the number of positive exponents;
//! - every singular value of `J_E J_{E−1} ⋯ J_{E−k+1}` at the end `E` of the stream, for `k` a
//!   power of two up to the task's sequence length and that length itself (bounded by the
//!   stream).
//!
//! Cost: `lyapunov_steps · 6n³` flops per layer for the spectrum (n = the state's dimension)
//! plus `2n³` per Jacobian of the products and `≈ 40n³` per singular value decomposition, in
//! f64: see the README for what that adds to a run.

use gradlab_kernels::gemm::{dgemm, GemmShape};
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::rnn::{self, Workspace};
use gradlab_kernels::Par;
use rayon::prelude::*;

use super::record::{SpectrumKind, SpectrumRow, StepRow};
use crate::model::jacobian::{state_dim, step_jacobian};
use crate::model::spectra::{kaplan_yorke_dimension, singular_values, Lyapunov};
use crate::model::Model;
use crate::task::{Batch, Task, TaskKind};

/// Time steps of the stream before the Lyapunov exponents start to average.
pub const WARMUP: usize = 100;

/// Seed of the stream's synthetic sequences (xor the run's seed).
const STREAM_SEED: u64 = 0x5BEC_7A0D_0000_0002;

/// The stream and the workspace of its forward pass.
#[derive(Debug)]
pub struct SpectrumDiag {
    /// `[len][1][I]`.
    x: Vec<f32>,
    len: usize,
    ws: Workspace,
    /// The longest product of step Jacobians.
    k_max: usize,
}

impl SpectrumDiag {
    /// The diagnostics of `model` on `task` over `WARMUP + steps` inputs, or `None` when
    /// `steps` is 0 (turned off) or the task yields no input.
    pub fn new(model: &Model, task: &Task, seed: u64, steps: usize) -> Option<Self> {
        if steps == 0 {
            return None;
        }
        let x = input_stream(task, seed, WARMUP + steps);
        let i = model.stack.input;
        let len = x.len() / i;
        if len <= WARMUP {
            return None;
        }
        Some(SpectrumDiag {
            ws: Workspace::new(model.stack, len, 1),
            k_max: task.time_steps().min(len),
            len,
            x,
        })
    }

    /// Measures the spectra of `model` at update `row.step`: rows into `out`, the per-layer
    /// summaries into `row`. The layers are measured in parallel where `par` allows (each on
    /// one thread, so the figures do not depend on it).
    pub fn measure(
        &mut self,
        model: &Model,
        row: &mut StepRow,
        out: &mut Vec<SpectrumRow>,
        par: Par,
    ) {
        let s = model.stack;
        rnn::forward(
            model.stack_params(),
            &self.x,
            None,
            None,
            &mut self.ws,
            Par::Seq,
        );
        let layer = |l: usize| self.layer_spectra(model, l);
        let layers: Vec<LayerSpectra> = if par.degree() > 1 {
            (0..s.layers).into_par_iter().map(layer).collect()
        } else {
            (0..s.layers).map(layer).collect()
        };
        row.lyapunov_max = vec![None; s.layers];
        row.kaplan_yorke_dim = vec![None; s.layers];
        row.lyapunov_positive = vec![None; s.layers];
        for (l, spectra) in layers.into_iter().enumerate() {
            let exponents = &spectra.lyapunov;
            row.lyapunov_max[l] = exponents.first().copied();
            row.kaplan_yorke_dim[l] = Some(kaplan_yorke_dimension(exponents));
            row.lyapunov_positive[l] = Some(exponents.iter().filter(|&&e| e > 0.0).count());
            let kinds = std::iter::once((SpectrumKind::Lyapunov, spectra.lyapunov)).chain(
                spectra
                    .products
                    .into_iter()
                    .map(|(k, sv)| (SpectrumKind::JacobianSv(k), sv)),
            );
            for (kind, values) in kinds {
                out.extend(
                    values
                        .iter()
                        .enumerate()
                        .map(|(index, &value)| SpectrumRow {
                            step: row.step,
                            layer: l,
                            kind,
                            index,
                            value,
                        }),
                );
            }
        }
    }

    /// The spectra of layer `l` from the stream's forward pass.
    fn layer_spectra(&self, model: &Model, l: usize) -> LayerSpectra {
        let s = model.stack;
        let n = state_dim(s.cell, s.hidden);
        let (mut jac, mut product, mut next) =
            (vec![0.0; n * n], vec![0.0; n * n], vec![0.0; n * n]);
        let w_hh = &model.params[s.layer_ranges(l).w_hh];
        let mut lyapunov = Lyapunov::new(n, WARMUP);
        for t in 0..self.len {
            step_jacobian(s, w_hh, &self.ws, (l, t, 0), &mut jac);
            lyapunov.push(&jac);
        }
        // ∂s_E/∂s_{E−k}: the product grows by one Jacobian on the right per k.
        let mut products = Vec::new();
        let end = self.len - 1;
        step_jacobian(s, w_hh, &self.ws, (l, end, 0), &mut product);
        for k in 1..=self.k_max {
            if k > 1 {
                step_jacobian(s, w_hh, &self.ws, (l, end + 1 - k, 0), &mut jac);
                dgemm(GemmShape { m: n, k: n, n }, &product, &jac, &mut next);
                std::mem::swap(&mut product, &mut next);
            }
            if k.is_power_of_two() || k == self.k_max {
                products.push((k, singular_values(&product, n, n)));
            }
        }
        LayerSpectra {
            lyapunov: lyapunov.exponents(),
            products,
        }
    }
}

/// One layer's measurement: its Lyapunov exponents (descending) and, for each `k` measured,
/// the singular values of its product of `k` step Jacobians.
struct LayerSpectra {
    lyapunov: Vec<f64>,
    products: Vec<(usize, Vec<f64>)>,
}

/// `len` time steps of the task's inputs for one stream, `[len][I]` (shorter only if the
/// validation text of charlm is).
fn input_stream(task: &Task, seed: u64, len: usize) -> Vec<f32> {
    let cap = len * task.input_size();
    let mut x = Vec::with_capacity(cap);
    match task.kind {
        TaskKind::Charlm => {
            for batch in task.evaluation_batches(0, 1, seed) {
                if append_first_row(&mut x, &batch, cap) {
                    break;
                }
            }
        }
        _ => {
            let mut rng = SplitMix64(seed ^ STREAM_SEED);
            while !append_first_row(&mut x, &task.fresh_batch(&mut rng, 1), cap) {}
        }
    }
    x
}

/// Appends the inputs of `batch`'s first sequence to `x`, time step by time step, up to `cap`
/// values; whether `x` is full.
fn append_first_row(x: &mut Vec<f32>, batch: &Batch, cap: usize) -> bool {
    let i = batch.x.len() / (batch.time_steps * batch.batch).max(1);
    for t in 0..batch.time_steps {
        if x.len() >= cap {
            break;
        }
        x.extend_from_slice(&batch.x_range(t..t + 1)[..i]);
    }
    x.len() >= cap
}
