//! Diagnostics of a logged update (DESIGN.md "Diagnostics"), on the batch it trained on and with
//! the parameters before the update:
//!
//! - truncation bias: cosine and norm ratio of the truncated gradient against the full-BPTT
//!   gradient of the same loss ([`truncation_bias`]);
//! - the probe: the last time step's loss alone, backpropagated through the whole window without
//!   truncation, so the decay of ‖∂L/∂h_t‖ beyond the truncation is visible; [`decay_rate`] fits
//!   its slope per step of lag;
//! - spectral radius and largest singular value of every W_hh ([`crate::model::spectra`]);
//! - the gate that keeps the previous state, LSTM forget gate f or GRU update gate z: mean and
//!   fraction saturated outside [0.05, 0.95] ([`forget_gate_stats`]; both log as the `layers`
//!   table's `forget_mean` and `forget_saturation`, see `results/README.md`).
//! - Pascanu's norm-preservation ratio of the probe's top layer ([`norm_preservation`]) and the
//!   distance of every W_hh from orthogonality.
//!
//! The Jacobian spectra, which cost more, are measured less often: see [`super::spectrum`].
//!
//! It has buffers of its own, so the engine's gradient is read, never copied.

use gradlab_kernels::norm::global_norm;
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::rnn::Workspace;
use gradlab_kernels::{Cell, StackShape};

use super::engine::{Backprop, Ctx, Engine, Scored};
use super::record::{push_flow, FlowRow, FlowSource, StepRow};
use crate::model::spectra::{orthogonality_distance, sigma_max, spectral_radius};
use crate::task::{Batch, MetricAcc};

/// A forget (LSTM) or update (GRU) gate counts as saturated outside [0.05, 0.95].
pub const FORGET_SATURATION: f32 = 0.05;

/// The diagnostics' buffers.
#[derive(Debug)]
pub struct Diagnostics {
    bp: Backprop,
    /// The full-BPTT gradient, then the probe's.
    grads: Vec<f32>,
    /// Time steps of the last probe, whose flow `bp` still holds (0: none yet).
    probe_len: usize,
}

impl Diagnostics {
    /// Buffers for `model`'s windows of `t` time steps of batch `b`.
    pub fn new(model: &crate::model::Model, t: usize, b: usize) -> Self {
        Diagnostics {
            bp: Backprop::new(model.stack, t, b),
            grads: vec![0.0; model.params.len()],
            probe_len: 0,
        }
    }

    /// Fills the diagnostic columns of `row` for the update `row.step` that trained on `batch`
    /// (whose truncated gradient `engine` holds), and appends the probe's flow to `flow`.
    pub(crate) fn diagnose(
        &mut self,
        ctx: Ctx<'_>,
        engine: &mut Engine,
        batch: &Batch,
        row: &mut StepRow,
        flow: &mut Vec<FlowRow>,
    ) {
        let (t, b) = (batch.time_steps, batch.batch);
        let truncated = engine.truncates(t);
        let (ws, trunc) = engine.replay_window(ctx, batch);
        let mut acc = MetricAcc::default();
        let whole = Scored {
            batch,
            offset: 0,
            times: batch.targets.loss_range(t, b),
        };
        (row.trunc_cosine, row.trunc_norm_ratio) = if truncated {
            self.grads.fill(0.0);
            let scale = 1.0 / batch.loss_terms().max(1) as f32;
            self.bp
                .loss_grad(ctx, ws, whole.clone(), scale, &mut self.grads, &mut acc);
            let (cos, ratio) = truncation_bias(trunc, &self.grads);
            (Some(cos), Some(ratio))
        } else {
            (Some(1.0), Some(1.0))
        };
        // The probe: the final time step's loss only, through the whole window.
        let last = whole.times.end.max(1) - 1;
        let terms = batch.targets.terms(last..last + 1, b);
        self.grads.fill(0.0);
        let probe = Scored {
            times: last..last + 1,
            ..whole
        };
        self.bp.loss_grad(
            ctx,
            ws,
            probe,
            1.0 / terms.max(1) as f32,
            &mut self.grads,
            &mut acc,
        );
        self.probe_len = t;
        let layers = ctx.model.stack.layers;
        (row.norm_ratio_mean, row.norm_ratio_min) =
            norm_preservation(&self.bp.flow()[(layers - 1) * t..layers * t]);
        push_flow(flow, row.step, self.bp.flow(), t, FlowSource::Probe);
        layer_stats(ctx.model.stack, ctx.model.stack_params(), ws, row);
    }

    /// The last probe's flow `[L][len]` and `len` (len 0 before the first).
    pub fn last_probe(&self) -> (&[f32], usize) {
        (self.bp.flow(), self.probe_len)
    }

    /// Puts back what [`Diagnostics::last_probe`] returned (a resumed run's).
    pub fn set_last_probe(&mut self, flow: &[f32], len: usize) {
        self.bp.set_flow(flow);
        self.probe_len = len;
    }
}

/// Per layer of the stack `s` (parameters `params`): spectral radius (square W_hh only) and
/// σ_max of W_hh, the gates that keep the previous state (LSTM f, GRU z) over the window in
/// `ws`, and the distance of W_hh from orthogonality; appended to `row`'s per-layer
/// columns.
pub(crate) fn layer_stats(s: StackShape, params: &[f32], ws: &Workspace, row: &mut StepRow) {
    let mut rng = SplitMix64(row.step as u64);
    for l in 0..s.layers {
        let w_hh = &params[s.layer_ranges(l).w_hh];
        let square = s.cell.gates() == 1;
        row.spectral_radius
            .push(square.then(|| spectral_radius(w_hh, s.hidden, &mut rng)));
        row.sigma_max.push(Some(sigma_max(
            w_hh,
            s.cell.gates() * s.hidden,
            s.hidden,
            &mut rng,
        )));
        let (mean, saturation) = match s.cell {
            // GRU: h' = (1 − z) n + z h, so z keeps the previous state as an LSTM's f keeps c.
            Cell::Lstm | Cell::Gru => {
                let (mean, sat) = forget_gate_stats(ws.gates(l), s.hidden);
                (Some(mean), Some(sat))
            }
            Cell::Rnn(_) => (None, None),
        };
        row.forget_mean.push(mean);
        row.forget_saturation.push(saturation);
        row.orthogonality
            .push(Some(orthogonality_distance(w_hh, s.cell.gates(), s.hidden)));
    }
}

/// Pascanu et al.'s norm-preservation ratio `‖∂L/∂h_{t+1} · ∂h_{t+1}/∂h_t‖ / ‖∂L/∂h_{t+1}‖`
/// along a probe's top layer `[T]` (oldest first), whose only loss is at the last step, so that
/// the gradient at `t < T − 1` is exactly the one at `t + 1` carried back one step: the ratio is
/// `flow[t] / flow[t + 1]`. Its mean and minimum over the steps where it is defined.
pub fn norm_preservation(flow: &[f32]) -> (Option<f64>, Option<f64>) {
    let ratios: Vec<f64> = flow
        .windows(2)
        .map(|w| f64::from(w[0]) / f64::from(w[1]))
        .filter(|r| r.is_finite())
        .collect();
    if ratios.is_empty() {
        return (None, None);
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    (Some(mean), ratios.into_iter().reduce(f64::min))
}

/// Cosine and norm ratio of a truncated gradient against the full one.
pub fn truncation_bias(truncated: &[f32], full: &[f32]) -> (f64, f64) {
    let dot: f64 = truncated
        .iter()
        .zip(full)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum();
    let (nt, nf) = (global_norm(&[truncated]), global_norm(&[full]));
    (dot / (nt * nf), nt / nf)
}

/// Mean of the gates that keep the previous state, block 1 of stored gate rows `[..][4H]` (LSTM
/// `[i | f | g | o]`: f; GRU `[r | z | n | hn]`: z; see `Workspace::gates`), and the fraction of
/// them outside [FORGET_SATURATION, 1 - FORGET_SATURATION].
pub fn forget_gate_stats(gates: &[f32], h: usize) -> (f64, f64) {
    let (mut sum, mut saturated, mut n) = (0.0f64, 0usize, 0usize);
    for f in gates.chunks_exact(4 * h).flat_map(|g| &g[h..2 * h]) {
        sum += f64::from(*f);
        saturated += usize::from(!(FORGET_SATURATION..=1.0 - FORGET_SATURATION).contains(f));
        n += 1;
    }
    (sum / n as f64, saturated as f64 / n as f64)
}

/// Least-squares slope of ln ‖∂L/∂h‖ against lag for lags ≥ 1 of the top layer's probe
/// (`[L][len]`; lag 0 also carries the loss's direct gradient). `None` where no slope is
/// defined: fewer than two finite positive points (a window of 2 steps has one lag ≥ 1; a
/// profile of zeros, as a one-character text gives, has none; no probe yet).
pub fn decay_rate(probe: &[f32], layers: usize, len: usize) -> Option<f64> {
    if len == 0 {
        return None;
    }
    let top = &probe[(layers - 1) * len..layers * len];
    let pts: Vec<(f64, f64)> = top
        .iter()
        .enumerate()
        .map(|(t, &g)| ((len - 1 - t) as f64, f64::from(g)))
        .filter(|&(lag, g)| lag >= 1.0 && g > 0.0 && g.is_finite())
        .map(|(lag, g)| (lag, g.ln()))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    Some(sxy / sxx)
}
