//! Initialisations, spectra and training diagnostics against independent f64 computations:
//! orthogonal blocks are orthonormal, smart-tanh reaches spectral radius 0.95 (checked by the
//! Gelfand formula, not by the power iteration it uses), `spectral_radius` and `sigma_max` find
//! known spectra, and the diagnostic statistics give hand-computed values.

use gradlab_experiments::config::Init;
use gradlab_experiments::model::init::initialize;
use gradlab_experiments::model::spectra::{sigma_max, spectral_radius};
use gradlab_experiments::model::Model;
use gradlab_experiments::train::diagnostics::{
    decay_rate, forget_gate_stats, truncation_bias, FORGET_SATURATION,
};
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::rnn::{self, Workspace};
use gradlab_kernels::{Activation, Cell, Par, StackShape};

/// `a · b` of `n × n` row-major matrices.
fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                c[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    c
}

fn frobenius(a: &[f64]) -> f64 {
    a.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// Spectral radius by the Gelfand formula ρ = lim ‖Wᵏ‖^(1/k) at k = 2^16, by repeated squaring
/// with the scale kept as a logarithm. ρ ≤ estimate ≤ ρ · (√n κ(V))^(1/k), κ(V) the condition
/// number of the eigenvectors: an independent check of the power iteration, complex pairs
/// included.
fn gelfand_radius(w: &[f64], n: usize) -> f64 {
    let norm = frobenius(w);
    if norm == 0.0 {
        return 0.0;
    }
    let mut a: Vec<f64> = w.iter().map(|v| v / norm).collect();
    let mut log_norm = norm.ln();
    let squarings = 16;
    for _ in 0..squarings {
        a = matmul(&a, &a, n);
        let norm = frobenius(&a);
        if norm == 0.0 {
            return 0.0;
        }
        a.iter_mut().for_each(|v| *v /= norm);
        log_norm = 2.0 * log_norm + norm.ln();
    }
    (log_norm / f64::from(1u32 << squarings)).exp()
}

/// All eigenvalues of a symmetric `n × n` matrix by cyclic Jacobi rotations.
fn symmetric_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off <= 1e-30 * frobenius(&a).powi(2) {
            return (0..n).map(|i| a[i * n + i]).collect();
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation in the (p, q) plane that zeroes a_pq: A ← Jᵀ A J.
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    panic!("Jacobi did not converge in 100 sweeps");
}

/// σ_max of a `rows × cols` matrix as √λ_max(WᵀW), by Jacobi.
fn jacobi_sigma_max(w: &[f32], rows: usize, cols: usize) -> f64 {
    let mut wtw = vec![0.0; cols * cols];
    for i in 0..cols {
        for j in 0..cols {
            wtw[i * cols + j] = (0..rows)
                .map(|r| f64::from(w[r * cols + i]) * f64::from(w[r * cols + j]))
                .sum();
        }
    }
    symmetric_eigenvalues(wtw, cols)
        .into_iter()
        .fold(0.0, f64::max)
        .sqrt()
}

fn to_f64(w: &[f32]) -> Vec<f64> {
    w.iter().map(|&v| f64::from(v)).collect()
}

fn to_f32(w: &[f64]) -> Vec<f32> {
    w.iter().map(|&v| v as f32).collect()
}

/// A model of `cell` with `hidden` units in 2 layers, initialised by `init` from `seed`.
fn initialised(cell: Cell, hidden: usize, init: Init, seed: u64) -> Model {
    let stack = StackShape {
        cell,
        input: 3,
        hidden,
        layers: 2,
    };
    let mut model = Model::new(stack, 2);
    initialize(&mut model, init, 1.0, &mut SplitMix64(seed));
    model
}

/// The `h × h` blocks of W_hh of every layer (one per gate).
fn w_hh_blocks(model: &Model) -> Vec<Vec<f32>> {
    let (s, h) = (model.stack, model.stack.hidden);
    (0..s.layers)
        .flat_map(|l| model.params[s.layer_ranges(l).w_hh].chunks_exact(h * h))
        .map(<[f32]>::to_vec)
        .collect()
}

#[test]
fn orthogonal_init_gives_orthonormal_recurrent_blocks() {
    // Catches a Gram-Schmidt that loses orthogonality, skips normalisation, or fills only the
    // first gate block of an LSTM.
    for cell in [Cell::Rnn(Activation::Tanh), Cell::Lstm, Cell::Gru] {
        for h in [1, 7, 32] {
            let model = initialised(cell, h, Init::Orthogonal, 11);
            let blocks = w_hh_blocks(&model);
            assert_eq!(blocks.len(), 2 * cell.gates(), "{cell:?} H={h}");
            for (k, w) in blocks.iter().enumerate() {
                for i in 0..h {
                    for j in 0..h {
                        let dot: f64 = (0..h)
                            .map(|r| f64::from(w[r * h + i]) * f64::from(w[r * h + j]))
                            .sum();
                        let want = if i == j { 1.0 } else { 0.0 };
                        assert!(
                            (dot - want).abs() < 1e-5,
                            "{cell:?} H={h} block {k}: (WᵀW)[{i}][{j}] = {dot}"
                        );
                    }
                    let row: f64 = w[i * h..(i + 1) * h]
                        .iter()
                        .map(|&v| f64::from(v) * f64::from(v))
                        .sum::<f64>()
                        .sqrt();
                    assert!(
                        (row - 1.0).abs() < 1e-6,
                        "{cell:?} H={h} block {k}: row {i} has norm {row}"
                    );
                }
            }
            if h > 1 {
                assert_ne!(
                    blocks[0], blocks[1],
                    "{cell:?} H={h}: blocks are drawn apart"
                );
            }
        }
    }
}

#[test]
fn smart_tanh_init_has_spectral_radius_095_and_15_inputs_per_unit() {
    // Catches a rescaling by a wrong radius estimate (e.g. a Rayleigh quotient that oscillates on
    // a dominant complex pair) and a wrong number of non-zeros per row.
    for h in [15, 50, 100] {
        for seed in 0..3 {
            let model = initialised(Cell::Rnn(Activation::Tanh), h, Init::SmartTanh, seed);
            for (l, w) in w_hh_blocks(&model).iter().enumerate() {
                for (i, row) in w.chunks_exact(h).enumerate() {
                    let nonzero = row.iter().filter(|&&v| v != 0.0).count();
                    assert_eq!(nonzero, 15.min(h), "H={h} seed {seed} layer {l} row {i}");
                }
                let rho = gelfand_radius(&to_f64(w), h);
                assert!(
                    (rho - 0.95).abs() < 1e-2,
                    "H={h} seed {seed} layer {l}: spectral radius {rho}, want 0.95"
                );
            }
        }
    }
}

#[test]
fn spectral_radius_finds_known_spectra_including_a_dominant_complex_pair() {
    // Catches an estimator that needs a real dominant eigenvalue (Rayleigh quotient), reads the
    // matrix transposed wrongly, or mishandles a nilpotent matrix.
    let (r, theta) = (0.9f64, 1.0f64);
    let d = [
        [r * theta.cos(), -r * theta.sin(), 0.0, 0.0],
        [r * theta.sin(), r * theta.cos(), 0.0, 0.0],
        [0.0, 0.0, 0.5, 0.0],
        [0.0, 0.0, 0.0, -0.3],
    ]
    .concat();
    // The same spectrum, non-normal: P D P⁻¹ with P = I + N, N strictly upper triangular, so
    // P⁻¹ = I − N + N² − N³.
    let n = 4;
    let mut nil = vec![0.0; n * n];
    for i in 0..n {
        for j in i + 1..n {
            nil[i * n + j] = 0.7 + 0.3 * (i + j) as f64;
        }
    }
    let identity: Vec<f64> = (0..n * n)
        .map(|k| if k % (n + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    let p: Vec<f64> = identity.iter().zip(&nil).map(|(a, b)| a + b).collect();
    let (n2, n3) = (
        matmul(&nil, &nil, n),
        matmul(&matmul(&nil, &nil, n), &nil, n),
    );
    let p_inv: Vec<f64> = (0..n * n)
        .map(|k| identity[k] - nil[k] + n2[k] - n3[k])
        .collect();
    assert!(
        matmul(&p, &p_inv, n)
            .iter()
            .zip(&identity)
            .all(|(a, b)| (a - b).abs() < 1e-12),
        "P⁻¹ is the inverse of P"
    );
    let similar = matmul(&matmul(&p, &d, n), &p_inv, n);
    // The estimate is the mean growth over 200 power iterations: a non-normal matrix's
    // transient growth biases it by about ln(cond(P)) / 200 (seen: 0.8988 for 0.9).
    for (name, w, want, tol) in [
        ("rotation-scaling block", d.clone(), 0.9, 1e-3),
        ("similar to it, non-normal", similar, 0.9, 5e-3),
        ("diagonal", diag(&[0.3, -0.8, 0.5, 0.7]), 0.8, 1e-3),
        ("nilpotent", nil.clone(), 0.0, 1e-3),
    ] {
        let w = to_f32(&w);
        for seed in 0..3 {
            let got = spectral_radius(&w, n, &mut SplitMix64(seed));
            assert!(
                (got - want).abs() <= tol * want,
                "{name} seed {seed}: spectral radius {got}, want {want}"
            );
        }
    }
    // Random Gaussian matrices, N(0, 1/H), against the Gelfand formula.
    for (h, seed) in [(6, 1), (12, 2), (12, 3), (20, 4)] {
        let mut rng = SplitMix64(seed);
        let w: Vec<f32> = (0..h * h)
            .map(|_| (rng.normal() / (h as f64).sqrt()) as f32)
            .collect();
        let want = gelfand_radius(&to_f64(&w), h);
        let got = spectral_radius(&w, h, &mut SplitMix64(seed + 100));
        assert!(
            (got - want).abs() <= 1e-3 * want,
            "random H={h} seed {seed}: spectral radius {got}, Gelfand {want}"
        );
    }
}

fn diag(d: &[f64]) -> Vec<f64> {
    let n = d.len();
    let mut w = vec![0.0; n * n];
    for (i, v) in d.iter().enumerate() {
        w[i * n + i] = *v;
    }
    w
}

#[test]
fn sigma_max_finds_known_singular_values() {
    // Catches a power iteration on W instead of WᵀW, swapped rows and columns of a non-square
    // W_hh, and a missing square root.
    let w = to_f32(&diag(&[3.0, -5.0, 1.0, 0.5]));
    let got = sigma_max(&w, 4, 4, &mut SplitMix64(1));
    assert!((got - 5.0).abs() < 1e-9, "diagonal: σ_max {got}, want 5");
    assert_eq!(sigma_max(&[0.0; 12], 4, 3, &mut SplitMix64(1)), 0.0);

    let (u, v) = (
        [1.0f32, -2.0, 0.5, 3.0, 0.25, -1.5],
        [2.0f32, 1.0, -0.5, 4.0],
    );
    let outer: Vec<f32> = u
        .iter()
        .flat_map(|a| v.iter().map(move |b| a * b))
        .collect();
    let norm = |x: &[f32]| x.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
    let want = norm(&u) * norm(&v);
    let got = sigma_max(&outer, 6, 4, &mut SplitMix64(2));
    assert!(
        (got - want).abs() < 1e-9 * want,
        "rank 1: σ_max {got}, want |u||v| = {want}"
    );

    for (h, seed) in [(3, 3), (7, 4), (16, 5)] {
        let w = SplitMix64(seed).vec_f32(4 * h * h, 1.0);
        // An LSTM W_hh, 4H × H, and its transpose, H × 4H.
        let transposed: Vec<f32> = (0..h)
            .flat_map(|c| (0..4 * h).map(move |r| (r, c)))
            .map(|(r, c)| w[r * h + c])
            .collect();
        let want = jacobi_sigma_max(&w, 4 * h, h);
        assert!(
            (want - jacobi_sigma_max(&transposed, h, 4 * h)).abs() < 1e-10 * want,
            "Jacobi agrees with itself on Wᵀ"
        );
        for (name, m, rows, cols) in [("4H×H", &w, 4 * h, h), ("H×4H", &transposed, h, 4 * h)] {
            let got = sigma_max(m, rows, cols, &mut SplitMix64(seed));
            assert!(
                (got - want).abs() < 1e-6 * want,
                "{name} H={h}: σ_max {got}, Jacobi {want}"
            );
        }
    }
}

#[test]
fn forget_gate_stats_read_the_f_block_and_count_saturation_outside_the_closed_band() {
    // Catches reading the i, g or o block instead of f, and a band that counts its own end
    // points 0.05 and 0.95 as saturated.
    assert_eq!(FORGET_SATURATION, 0.05);
    let h = 2;
    let forget = [0.05f32, 0.95, 0.5, 0.04, 0.96, 0.0];
    // Rows [T·B][4H] of gates i, f, g, o; the other gates are saturated on purpose.
    let gates: Vec<f32> = forget
        .chunks_exact(h)
        .flat_map(|f| {
            [1.0, 1.0]
                .into_iter()
                .chain(f.iter().copied())
                .chain([0.0; 4])
        })
        .collect();
    assert_eq!(gates.len(), 3 * 4 * h);
    let (mean, saturated) = forget_gate_stats(&gates, h);
    let want_mean = forget.iter().map(|&f| f64::from(f)).sum::<f64>() / 6.0;
    assert!(
        (mean - want_mean).abs() < 1e-12,
        "mean {mean}, want {want_mean}"
    );
    assert_eq!(saturated, 3.0 / 6.0, "0.04, 0.96 and 0.0 are saturated");
}

#[test]
fn gru_update_gate_stats_read_z_from_the_stored_gate_rows() {
    // Catches the diagnostics reading r, n or hn of a GRU's stored rows [r | z | n | hn] as its
    // "forget" gate: with W_iz = W_hz = 0 every z is σ(b_iz + b_hz), whatever the input.
    let shape = StackShape {
        cell: Cell::Gru,
        input: 3,
        hidden: 5,
        layers: 1,
    };
    let mut model = Model::new(shape, 1);
    initialize(&mut model, Init::Default, 1.0, &mut SplitMix64(3));
    let (h, r) = (shape.hidden, shape.layer_ranges(0));
    let params = &mut model.params;
    params[r.w_ih.start + h * 3..r.w_ih.start + 2 * h * 3].fill(0.0);
    params[r.w_hh.start + h * h..r.w_hh.start + 2 * h * h].fill(0.0);
    params[r.b_ih.start + h..r.b_ih.start + 2 * h].fill(0.5);
    params[r.b_hh.start + h..r.b_hh.start + 2 * h].fill(0.25);
    let (t, b) = (4, 2);
    let x = SplitMix64(4).vec_f32(t * b * 3, 1.0);
    let mut ws = Workspace::new(shape, t, b);
    rnn::forward(model.stack_params(), &x, None, None, &mut ws, Par::Seq);
    let (mean, saturated) = forget_gate_stats(ws.gates(0), h);
    let z = 1.0 / (1.0 + (-0.75f64).exp());
    assert!((mean - z).abs() < 1e-6, "mean z {mean}, want σ(0.75) = {z}");
    assert_eq!(saturated, 0.0, "σ(0.75) = 0.68 is not saturated");
}

#[test]
fn decay_rate_fits_the_slope_of_the_top_layers_log_flow_beyond_lag_0() {
    // Catches fitting lag 0 (which carries the loss's direct gradient), the bottom layer, or
    // lags counted from the wrong end.
    let (layers, len) = (2, 12);
    let probe_of = |f: &dyn Fn(usize) -> f64| -> Vec<f32> {
        let bottom = (0..len).map(|t| (0.5 * t as f64).exp() as f32);
        let top = (0..len).map(|t| match len - 1 - t {
            0 => 100.0,
            lag => f(lag) as f32,
        });
        bottom.chain(top).collect()
    };
    // Powers of 2 are exact in f32, so the slope is −ln 2 to f64 rounding.
    let exact = probe_of(&|lag| (-(lag as f64)).exp2());
    let got = decay_rate(&exact, layers, len).unwrap();
    assert!(
        (got + std::f64::consts::LN_2).abs() < 1e-12,
        "slope {got}, want −ln 2"
    );
    // exp(−0.3·lag) rounded to f32: ln of each point is off by up to 6e-8, the slope by less
    // than 1e-7.
    let got = decay_rate(&probe_of(&|lag| (-0.3 * lag as f64).exp()), layers, len).unwrap();
    assert!((got + 0.3).abs() < 1e-7, "slope {got}, want −0.3");
    // Zero, infinite and NaN points are left out, not fitted as ±∞.
    let mut gappy = probe_of(&|lag| (-0.3 * lag as f64).exp());
    gappy[len + 2] = 0.0;
    gappy[len + 4] = f32::INFINITY;
    gappy[len + 5] = f32::NAN;
    let got = decay_rate(&gappy, layers, len).unwrap();
    assert!(
        (got + 0.3).abs() < 1e-7,
        "with gaps: slope {got}, want −0.3"
    );
    // Fewer than two usable points: no slope (null in the runs table, not NaN).
    let mut one = vec![0.0f32; layers * len];
    one[2 * len - 3] = 0.5;
    one[2 * len - 1] = 1.0;
    assert_eq!(decay_rate(&one, layers, len), None, "one point at lag ≥ 1");
    assert_eq!(
        decay_rate(&vec![0.0; layers * len], layers, len),
        None,
        "zeros"
    );
    assert_eq!(decay_rate(&[1.0, 0.5, 1.0, 0.5], 2, 2), None, "len 2");
    assert_eq!(decay_rate(&[], 2, 0), None, "len 0");
}

#[test]
fn truncation_bias_is_cosine_and_norm_ratio_of_truncated_to_full() {
    // Catches a swapped ratio (full / truncated) and an unnormalised dot product.
    let full = [0.5f32, -1.0, 2.0, 0.25];
    let (cos, ratio) = truncation_bias(&full, &full);
    assert!(
        (cos - 1.0).abs() < 1e-12 && (ratio - 1.0).abs() < 1e-12,
        "{cos} {ratio}"
    );
    let doubled: Vec<f32> = full.iter().map(|v| 2.0 * v).collect();
    let (cos, ratio) = truncation_bias(&doubled, &full);
    assert!(
        (cos - 1.0).abs() < 1e-12 && (ratio - 2.0).abs() < 1e-12,
        "{cos} {ratio}"
    );
    let negated: Vec<f32> = full.iter().map(|v| -v).collect();
    let (cos, ratio) = truncation_bias(&negated, &full);
    assert!(
        (cos + 1.0).abs() < 1e-12 && (ratio - 1.0).abs() < 1e-12,
        "{cos} {ratio}"
    );
    // Orthogonal to `full`; the ratio is √5 / √5.3125.
    let orthogonal = [2.0f32, 1.0, 0.0, 0.0];
    let (cos, ratio) = truncation_bias(&orthogonal, &full);
    let want = 5f64.sqrt() / 5.3125f64.sqrt();
    assert!(cos.abs() < 1e-12, "cosine {cos}");
    assert!((ratio - want).abs() < 1e-12, "ratio {ratio}, want {want}");
}
