//! Parameter initialisations (DESIGN.md "Training semantics"), seeded and reproducible.
//!
//! For the gated cells (LSTM, GRU) `smart-tanh` and `orthogonal` initialise each `H × H` gate
//! block of W_hh on its own (LSTM i, f, g, o; GRU r, z, n), as PyTorch users do with
//! `nn.init.orthogonal_` per chunk; `identity` (IRNN) is for vanilla RNNs only and the
//! configuration refuses it for the others.

use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::{Cell, StackShape};

use super::spectra::{orthonormalize_rows, spectral_radius};
use super::Model;
use crate::config::Init;

/// Non-zero incoming recurrent weights per unit of the "smart tanh" initialisation.
const SMART_TANH_FAN_IN: usize = 15;
/// Its target spectral radius.
const SMART_TANH_RADIUS: f64 = 0.95;
/// σ of its input and head weights (`smart_tanh` of Pascanu's code, `pascanur/trainingRNNs`).
const SMART_TANH_SIGMA: f64 = 0.01;

/// Initialises every parameter of `model` as `init` says, then sets the LSTM forget-gate bias
/// (`bias_ih` of the f block = `forget_bias`, `bias_hh` of it = 0, as PyTorch users do), in
/// every recurrent stack (the encoder's first, for seq2seq).
pub fn initialize(model: &mut Model, init: Init, forget_bias: f32, rng: &mut SplitMix64) {
    let h = model.stack.hidden;
    // PyTorch's default for RNN, LSTM, GRU and the head alike: U(-1/√H, 1/√H); or U(-a, a).
    let bound = match init {
        Init::Uniform(a) => f64::from(a),
        _ => 1.0 / (h as f64).sqrt(),
    };
    for p in model.params.iter_mut() {
        *p = rng.uniform(-bound, bound) as f32;
    }
    for (stack, at) in model.stacks() {
        let p = &mut model.params[at..][..stack.num_params()];
        initialize_stack(stack, p, init, forget_bias, rng);
    }
    if init == Init::SmartTanh {
        let (w, b) = model.head_ranges();
        for v in &mut model.params[w] {
            *v = (rng.normal() * SMART_TANH_SIGMA) as f32;
        }
        model.params[b].fill(0.0);
    }
}

/// The part of [`initialize`] for the parameters `p` of one stack.
fn initialize_stack(
    stack: StackShape,
    p: &mut [f32],
    init: Init,
    forget_bias: f32,
    rng: &mut SplitMix64,
) {
    let (h, g) = (stack.hidden, stack.cell.gates());
    for l in 0..stack.layers {
        let r = stack.layer_ranges(l);
        match init {
            Init::Default | Init::Uniform(_) => {}
            Init::Normal(sd) => {
                for v in &mut p[r.w_ih.start..r.w_hh.end] {
                    *v = (rng.normal() * f64::from(sd)) as f32;
                }
                p[r.b_ih.start..r.b_hh.end].fill(0.0);
            }
            Init::SmartTanh | Init::Identity | Init::Orthogonal => {
                for block in p[r.w_hh.clone()].chunks_exact_mut(h * h) {
                    match init {
                        Init::SmartTanh => smart_tanh(block, h, rng),
                        Init::Identity => identity(block, h),
                        _ => orthogonal(block, h, rng),
                    }
                }
                p[r.b_ih.start..r.b_hh.end].fill(0.0);
                // Small Gaussian input weights: IRNN (Le et al. 2015 use σ = 0.001), and
                // Pascanu's smart tanh (σ = 0.01).
                let sigma = match init {
                    Init::Identity => Some(0.001),
                    Init::SmartTanh => Some(SMART_TANH_SIGMA),
                    _ => None,
                };
                if let Some(sigma) = sigma {
                    for v in &mut p[r.w_ih.clone()] {
                        *v = (rng.normal() * sigma) as f32;
                    }
                }
            }
        }
        if stack.cell == Cell::Lstm {
            // A GRU has no forget gate: `forget_bias` does not apply to it (nor to an RNN).
            p[r.b_ih.start + h..r.b_ih.start + 2 * h].fill(forget_bias);
            p[r.b_hh.start + h..r.b_hh.start + 2 * h].fill(0.0);
        }
        debug_assert_eq!(r.w_hh.len(), g * h * h);
    }
}

fn identity(w: &mut [f32], h: usize) {
    w.fill(0.0);
    for i in 0..h {
        w[i * h + i] = 1.0;
    }
}

/// Sparse Gaussian rows with `SMART_TANH_FAN_IN` non-zeros, scaled to spectral radius 0.95.
fn smart_tanh(w: &mut [f32], h: usize, rng: &mut SplitMix64) {
    w.fill(0.0);
    let fan_in = SMART_TANH_FAN_IN.min(h);
    for row in w.chunks_exact_mut(h) {
        let mut placed = 0;
        while placed < fan_in {
            let j = rng.below(h);
            if row[j] == 0.0 {
                row[j] = rng.normal() as f32;
                placed += 1;
            }
        }
    }
    let rho = spectral_radius(w, h, rng);
    if rho > 0.0 {
        let s = (SMART_TANH_RADIUS / rho) as f32;
        w.iter_mut().for_each(|v| *v *= s);
    }
}

/// An orthogonal matrix: Gram-Schmidt (twice, for stability) on the rows of a Gaussian matrix.
fn orthogonal(w: &mut [f32], h: usize, rng: &mut SplitMix64) {
    let mut q: Vec<f64> = (0..h * h).map(|_| rng.normal()).collect();
    let mut norms = vec![0.0; h];
    orthonormalize_rows(&mut q, h, &mut norms);
    for (d, s) in w.iter_mut().zip(&q) {
        *d = *s as f32;
    }
}
