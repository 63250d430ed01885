//! Pascanu, Mikolov & Bengio (2013)'s vanishing-gradient regulariser Ω of a vanilla RNN stack,
//! as their code (`pascanur/trainingRNNs`, `RNN.py`) computes it, in PyTorch's layout.
//!
//! For one layer, with `v_k = ∂C/∂h_k` the total gradient of the cost with respect to the state
//! `h_k` (through every later step and the head) and the step `h_k = f(W_ih x_k + W_hh h_{k-1}
//! + b)`, `W_hh` `(H_out, H_in)`:
//!
//! - `a_k = v_k ⊙ f'(h_k)` (tanh: `1 − h_k²`, relu: `1[h_k > 0]`) and `u_k = a_k W_hh`, the
//!   gradient the step carries back to `h_{k-1}` (`= v_k ∂h_k/∂h_{k-1}`);
//! - `r_kb = ‖u_kb‖² / ‖v_kb‖²` per step k and sequence b: squared norms, as the authors' code
//!   has them (the paper writes norms);
//! - `Ω = Σ_k mean_b (m_kb (r_kb − 1)²) / Σ_k mean_b m_kb`, where `m_kb = [‖v_kb‖² ≥ 10⁻²⁰]`
//!   ([`OMEGA_BOUND`]) leaves out the pairs whose gradient has vanished. Every step has the same
//!   B rows, so this is the mean of `(r − 1)²` over the N pairs that count.
//!
//! Its gradient is taken with respect to `W_hh` alone, `v_k` and `h_k` held fixed (the authors
//! substitute the computed `∂C/∂h` and `h` after differentiating): `∂Ω/∂W_hh = (1/N) Σ_kb m_kb
//! 4 (r_kb − 1) / ‖v_kb‖² · a_kbᵀ u_kb`. Where no pair counts, Ω is undefined (the authors' code
//! divides 0 by 0) and adds no gradient.
//!
//! Everything it needs is what [`crate::rnn::backward`] leaves in the workspace: `a_k` is the
//! RNN's stored pre-activation gradient and `‖v_k‖²` the squared gradient flow of each row. A
//! window costs two products over its T·B rows per layer, `U = A·W_hh` and `Aᵀ·(diag(s) U)`
//! (about 4·T·B·H² FLOPs, against 6·T·B·H·(I + H) for forward and backward). U is computed
//! again rather than kept from backward's step loop, which stays as it is. Updates that
//! backpropagate several windows (truncated BPTT) [`PascanuOmega::accumulate`] each, and their
//! pairs count together.

use crate::gemm::{contiguous_spans, gemm, Mat, MatMut, PackedB};
use crate::rnn::{Cell, StackShape, Workspace};
use crate::simd::axpy;
use crate::Par;

/// A pair (k, b) counts in Ω when `‖v_kb‖²` is at least this (the authors' `bound`).
pub const OMEGA_BOUND: f64 = 1e-20;

/// Ω of every layer of a vanilla RNN stack and its gradient with respect to each `W_hh`,
/// summed over the windows [`PascanuOmega::accumulate`]d since [`PascanuOmega::clear`].
#[derive(Clone, Debug)]
pub struct PascanuOmega {
    shape: StackShape,
    /// Σ (r − 1)² over the pairs that count, per layer.
    sum: Vec<f64>,
    /// The pairs that count, per layer.
    count: Vec<u64>,
    /// Σ 4 (r − 1) / ‖v‖² · a_kbᵀ u_kb over the pairs that count, per layer `[L][H][H]`.
    grad: Vec<f32>,
    /// `Uᵀ = W_hhᵀ·Aᵀ` of one layer's window, then `(diag(s) U)ᵀ`, `[H][T·B]`: the pairs are
    /// columns, so that both products read it, and A, through the packing's fast path.
    ut: Vec<f32>,
    /// `‖u_kb‖²` per pair, `[T·B]`.
    u_sq: Vec<f64>,
    /// The scale `s_kb = 4 (r_kb − 1) / ‖v_kb‖²` of a pair that counts, 0 of one that does not.
    s: Vec<f32>,
    /// `Aᵀ` as the right operand of `Uᵀ = W_hhᵀ·Aᵀ`.
    packed_a: PackedB,
    /// `diag(s) U` as the right operand of `Aᵀ·(diag(s) U)`.
    packed_u: PackedB,
}

impl PascanuOmega {
    /// Sums for `shape`, with room for windows of up to `t` steps of batch `b`.
    ///
    /// # Panics
    /// If the cell is not a vanilla RNN (Ω is built on the step Jacobian `diag(f'(h_k)) W_hh`).
    pub fn new(shape: StackShape, t: usize, b: usize) -> Self {
        assert!(
            matches!(shape.cell, Cell::Rnn(_)),
            "Pascanu's Ω is defined for vanilla RNN cells, not {:?}",
            shape.cell
        );
        let (h, l) = (shape.hidden, shape.layers);
        PascanuOmega {
            shape,
            sum: vec![0.0; l],
            count: vec![0; l],
            grad: vec![0.0; l * h * h],
            ut: Vec::with_capacity(t * b * h),
            u_sq: Vec::with_capacity(t * b),
            s: Vec::with_capacity(t * b),
            packed_a: PackedB::default(),
            packed_u: PackedB::default(),
        }
    }

    /// Forgets every window (a new update starts).
    pub fn clear(&mut self) {
        self.sum.fill(0.0);
        self.count.fill(0);
        self.grad.fill(0.0);
    }

    /// Adds the pairs of the window of `ws`'s last [`crate::rnn::backward`], which ran with
    /// `params` over the last `steps` steps, for every layer. Allocates nothing once a window
    /// as large has been seen.
    ///
    /// # Panics
    /// If `ws` is of another shape or `params` of another length.
    pub fn accumulate(&mut self, params: &[f32], steps: usize, ws: &Workspace, par: Par) {
        let s = self.shape;
        assert_eq!(ws.shape(), s, "PascanuOmega: workspace of another shape");
        assert_eq!(
            params.len(),
            s.num_params(),
            "PascanuOmega: parameter count"
        );
        let (t, b, h) = (ws.steps(), ws.batch(), s.hidden);
        let t0 = t - steps.min(t);
        let n = (t - t0) * b;
        if n == 0 {
            return;
        }
        self.ut.resize(h * n, 0.0);
        self.u_sq.resize(n, 0.0);
        self.s.resize(n, 0.0);
        for l in 0..s.layers {
            let (dg, v_sq) = ws.rnn_backward_rows(l);
            let (a, v_sq) = (&dg[t0 * b * h..t * b * h], &v_sq[t0 * b..t * b]);
            let w_hh = &params[s.layer_ranges(l).w_hh];
            // Uᵀ [H_in × n] = W_hhᵀ [H_in × H_out] · Aᵀ [H_out × n].
            self.packed_a
                .pack(h, contiguous_spans(n), Mat::transposed(a, h), par);
            let ut = MatMut::rows(&mut self.ut, n);
            gemm(h, Mat::transposed(w_hh, h), &self.packed_a, ut, false, par);
            self.u_sq.fill(0.0);
            for row in self.ut.chunks_exact(n) {
                for (acc, &u) in self.u_sq.iter_mut().zip(row) {
                    *acc += f64::from(u) * f64::from(u);
                }
            }
            for ((scale, &u2), &v2) in self.s.iter_mut().zip(&self.u_sq).zip(v_sq) {
                *scale = if v2 >= OMEGA_BOUND {
                    let d = u2 / v2 - 1.0;
                    self.sum[l] += d * d;
                    self.count[l] += 1;
                    (4.0 * d / v2) as f32
                } else {
                    0.0
                };
            }
            for row in self.ut.chunks_exact_mut(n) {
                for (u, &scale) in row.iter_mut().zip(&self.s) {
                    *u *= scale;
                }
            }
            // ∂ [H_out × H_in] += Aᵀ [H_out × n] · diag(s) U [n × H_in].
            self.packed_u
                .pack(n, contiguous_spans(h), Mat::transposed(&self.ut, n), par);
            let g = MatMut::rows(&mut self.grad[l * h * h..][..h * h], h);
            gemm(h, Mat::transposed(a, h), &self.packed_u, g, true, par);
        }
    }

    /// Ω of layer `l` over the windows accumulated; `None` where no pair counted.
    pub fn omega(&self, l: usize) -> Option<f64> {
        (self.count[l] > 0).then(|| self.sum[l] / self.count[l] as f64)
    }

    /// Adds `alpha · ∂Ω_l/∂W_hh` of every layer l to its `weight_hh_l{l}` in `grads`, the
    /// stack's gradient (laid out as its parameters); a layer where no pair counted adds
    /// nothing.
    ///
    /// # Panics
    /// If `grads` is not of the stack's parameter count.
    pub fn add_gradient(&self, alpha: f64, grads: &mut [f32]) {
        let (s, hh) = (self.shape, self.shape.hidden * self.shape.hidden);
        assert_eq!(grads.len(), s.num_params(), "PascanuOmega: gradient count");
        for l in 0..s.layers {
            if self.count[l] > 0 {
                let w = (alpha / self.count[l] as f64) as f32;
                axpy(
                    w,
                    &self.grad[l * hh..][..hh],
                    &mut grads[s.layer_ranges(l).w_hh],
                );
            }
        }
    }
}
