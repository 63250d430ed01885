//! The Jacobian diagnostics against independent computations: step Jacobians against central
//! finite differences of the f64 reference, their chain against the kernels' backward, the
//! Lyapunov spectrum of linear maps (and of a ReLU RNN that stays linear) against the log-moduli
//! of their eigenvalues, singular values and the Kaplan-Yorke dimension against known values,
//! and the new columns and `spectrum` rows of a training run.

use gradlab_experiments::config::RunConfig;
use gradlab_experiments::model::jacobian::{state_dim, step_jacobian};
use gradlab_experiments::model::spectra::{
    kaplan_yorke_dimension, orthogonality_distance, orthonormalize_rows,
    orthonormalize_rows_blocked, singular_values, Lyapunov,
};
use gradlab_experiments::model::Model;
use gradlab_experiments::task::{Task, TaskKind};
use gradlab_experiments::train::diagnostics::norm_preservation;
use gradlab_experiments::train::record::SpectrumKind;
use gradlab_experiments::train::spectrum::{SpectrumDiag, WARMUP};
use gradlab_experiments::train::Trainer;
use gradlab_kernels::reference;
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::rnn::{self, Grads, OutputGrads, Workspace};
use gradlab_kernels::{Activation, Cell, Par, StackShape};

const CELLS: [Cell; 4] = [
    Cell::Rnn(Activation::Tanh),
    Cell::Rnn(Activation::Relu),
    Cell::Lstm,
    Cell::Gru,
];

fn uniform(rng: &mut SplitMix64, n: usize, scale: f64) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-scale, scale) as f32).collect()
}

/// A random orthogonal `n × n` matrix.
fn orthogonal(n: usize, rng: &mut SplitMix64) -> Vec<f64> {
    let mut q: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
    orthonormalize_rows(&mut q, n, &mut vec![0.0; n]);
    q
}

fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            for j in 0..n {
                c[i * n + j] += a[i * k + p] * b[p * n + j];
            }
        }
    }
    c
}

fn transpose(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    let mut t = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            t[j * m + i] = a[i * n + j];
        }
    }
    t
}

/// A 2-layer stack with random parameters and states, run forward by the f32 kernels.
fn random_forward(cell: Cell, seed: u64) -> (StackShape, Vec<f32>, Vec<f32>, Workspace) {
    let s = StackShape {
        cell,
        input: 3,
        hidden: 5,
        layers: 2,
    };
    let (t, b) = (6, 2);
    let mut rng = SplitMix64(seed);
    let params = uniform(&mut rng, s.num_params(), 0.8);
    let x = uniform(&mut rng, t * b * s.input, 1.0);
    let lbh = s.layers * b * s.hidden;
    let h0 = uniform(&mut rng, lbh, 0.9);
    let c0 = uniform(&mut rng, lbh, 0.9);
    let mut ws = Workspace::new(s, t, b);
    let c0 = (cell == Cell::Lstm).then_some(c0.as_slice());
    rnn::forward(&params, &x, Some(&h0), c0, &mut ws, Par::Seq);
    (s, params, x, ws)
}

#[test]
fn step_jacobians_match_central_differences_of_the_f64_reference() {
    for cell in CELLS {
        let (s, params, x, ws) = random_forward(cell, 7);
        let (h, n) = (s.hidden, state_dim(cell, s.hidden));
        for (l, t, row) in [(0, 0, 0), (0, 3, 1), (1, 5, 0), (1, 2, 1)] {
            let r = s.layer_ranges(l);
            let mut jac = vec![0.0; n * n];
            step_jacobian(s, &params[r.w_hh.clone()], &ws, (l, t, row), &mut jac);
            // One step of layer l alone, in f64, from the state and input the forward saw.
            let one = StackShape {
                input: s.layer_input(l),
                layers: 1,
                ..s
            };
            let p: Vec<f64> = params[r.w_ih.start..r.b_hh.end]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let input: Vec<f64> = if l == 0 {
                x[(t * ws.batch() + row) * s.input..][..s.input]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect()
            } else {
                ws.h_at(l - 1, t + 1)[row * h..][..h]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect()
            };
            let mut state: Vec<f64> = ws.h_at(l, t)[row * h..][..h]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            if cell == Cell::Lstm {
                state.extend(ws.c_at(l, t)[row * h..][..h].iter().map(|&v| f64::from(v)));
            }
            let step = |s0: &[f64]| -> Vec<f64> {
                let c0 = (cell == Cell::Lstm).then(|| &s0[h..]);
                let tr = reference::forward(one, &p, &input, Some(&s0[..h]), c0, 1, 1);
                let mut out = tr.h_n(0).to_vec();
                out.extend_from_slice(tr.c_n(0));
                out
            };
            let eps = 1e-6;
            let scale = jac.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for k in 0..n {
                let (mut plus, mut minus) = (state.clone(), state.clone());
                plus[k] += eps;
                minus[k] -= eps;
                let (fp, fm) = (step(&plus), step(&minus));
                for j in 0..n {
                    let fd = (fp[j] - fm[j]) / (2.0 * eps);
                    assert!(
                        (jac[j * n + k] - fd).abs() <= 2e-6 * scale,
                        "{cell:?} layer {l} t {t} row {row}: J[{j}][{k}] = {}, finite differences {fd}",
                        jac[j * n + k]
                    );
                }
            }
        }
    }
}

#[test]
fn chained_step_jacobians_give_the_kernels_backward_flow_of_the_top_layer() {
    for cell in CELLS {
        let (s, params, x, mut ws) = random_forward(cell, 11);
        let (t, b, h, n) = (ws.steps(), ws.batch(), s.hidden, state_dim(cell, s.hidden));
        // A loss on the last output only: below it, the top layer's gradient is carried back
        // by its own recurrence alone.
        let mut rng = SplitMix64(3);
        let last = uniform(&mut rng, b * h, 1.0);
        let mut dy = vec![0.0f32; t * b * h];
        dy[(t - 1) * b * h..].copy_from_slice(&last);
        let lbh = s.layers * b * h;
        let (mut grads, mut dx, mut dh0, mut dc0) = (
            vec![0.0; s.num_params()],
            Vec::new(),
            vec![0.0; lbh],
            vec![0.0; if cell == Cell::Lstm { lbh } else { 0 }],
        );
        let mut flow = vec![0.0f32; s.layers * t];
        let out = Grads {
            params: &mut grads,
            dx: &mut dx,
            dh0: &mut dh0,
            dc0: &mut dc0,
            flow: &mut flow,
        };
        let loss = OutputGrads {
            dy: &dy,
            dh_n: None,
            dc_n: None,
        };
        rnn::backward(&params, &x, loss, t, &mut ws, out, Par::Seq);
        let top = s.layers - 1;
        let w_hh = &params[s.layer_ranges(top).w_hh];
        let mut jac = vec![0.0; n * n];
        // Per batch row, g_{t-1} = g_t · J_t from g_{T-1} = (dy_{T-1}, 0).
        let mut g: Vec<Vec<f64>> = (0..b)
            .map(|row| {
                let mut v = vec![0.0; n];
                for j in 0..h {
                    v[j] = f64::from(last[row * h + j]);
                }
                v
            })
            .collect();
        for step in (0..t).rev() {
            let norm = g
                .iter()
                .map(|v| v[..h].iter().map(|x| x * x).sum::<f64>())
                .sum::<f64>()
                .sqrt();
            let kernel = f64::from(flow[top * t + step]);
            assert!(
                (norm - kernel).abs() <= 1e-5 * kernel,
                "{cell:?} step {step}: chained ‖∂L/∂h‖ {norm}, kernel flow {kernel}"
            );
            for (row, v) in g.iter_mut().enumerate() {
                step_jacobian(s, w_hh, &ws, (top, step, row), &mut jac);
                *v = (0..n)
                    .map(|k| (0..n).map(|j| v[j] * jac[j * n + k]).sum())
                    .collect();
            }
        }
    }
}

/// `Q B Qᵀ` for a block-diagonal `B` of rotation-scalings `r (cos θ, −sin θ; sin θ, cos θ)` and
/// real entries: a normal matrix with eigenvalue moduli `r`.
fn normal_matrix(blocks: &[(f64, f64)], reals: &[f64], rng: &mut SplitMix64) -> (Vec<f64>, usize) {
    let n = 2 * blocks.len() + reals.len();
    let mut m = vec![0.0; n * n];
    for (i, &(r, theta)) in blocks.iter().enumerate() {
        let k = 2 * i;
        let (c, s) = (r * theta.cos(), r * theta.sin());
        (
            m[k * n + k],
            m[k * n + k + 1],
            m[(k + 1) * n + k],
            m[(k + 1) * n + k + 1],
        ) = (c, -s, s, c);
    }
    for (i, &d) in reals.iter().enumerate() {
        let k = 2 * blocks.len() + i;
        m[k * n + k] = d;
    }
    let q = orthogonal(n, rng);
    (
        matmul(&matmul(&q, &m, n, n, n), &transpose(&q, n, n), n, n, n),
        n,
    )
}

#[test]
fn the_lyapunov_spectrum_of_a_linear_map_is_the_log_moduli_of_its_eigenvalues() {
    let mut rng = SplitMix64(5);
    let (w, n) = normal_matrix(&[(1.1, 0.7), (0.5, 2.0)], &[0.9, -0.3, 2.0e-3], &mut rng);
    let mut want: Vec<f64> = [1.1, 1.1, 0.5, 0.5, 0.9, 0.3, 2.0e-3]
        .iter()
        .map(|r: &f64| r.ln())
        .collect();
    want.sort_by(|a, b| b.total_cmp(a));
    let mut lyapunov = Lyapunov::new(n, 10);
    for _ in 0..2000 {
        lyapunov.push(&w);
    }
    let got = lyapunov.exponents();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 2e-3, "exponents {got:?}, want {want:?}");
    }
    // A non-normal (upper triangular) map: the exponents are the logs of its diagonal.
    let diag = [0.8, -1.5, 0.2, 1.0];
    let mut t = vec![0.0; 16];
    for i in 0..4 {
        t[i * 4 + i] = diag[i];
        for j in i + 1..4 {
            t[i * 4 + j] = rng.uniform(-2.0, 2.0);
        }
    }
    let mut lyapunov = Lyapunov::new(4, 50);
    for _ in 0..3000 {
        lyapunov.push(&t);
    }
    let mut want: Vec<f64> = diag.iter().map(|d: &f64| d.abs().ln()).collect();
    want.sort_by(|a, b| b.total_cmp(a));
    for (g, w) in lyapunov.exponents().iter().zip(&want) {
        assert!((g - w).abs() < 1e-2, "triangular: {g} against {w}");
    }
    // A map that annihilates a direction has an exponent of -inf, and the frame stays whole.
    let mut singular = Lyapunov::new(2, 0);
    for _ in 0..10 {
        singular.push(&[1.0, 0.0, 0.0, 0.0]);
    }
    assert_eq!(singular.exponents(), vec![0.0, f64::NEG_INFINITY]);
}

#[test]
fn blocked_gram_schmidt_agrees_with_the_unblocked_one_across_block_boundaries() {
    let (rows, cols) = (90, 110);
    let mut rng = SplitMix64(17);
    let mut a: Vec<f64> = (0..rows * cols).map(|_| rng.normal()).collect();
    // A zero row is replaced by a unit vector orthogonal to the rows before it; a row in the
    // span of earlier ones (last, as the direction its rounding noise leaves is arbitrary)
    // keeps a norm at rounding level.
    a[40 * cols..41 * cols].fill(0.0);
    for j in 0..cols {
        a[89 * cols + j] = 2.0 * a[3 * cols + j] - a[65 * cols + j];
    }
    let (mut unblocked, mut unblocked_norms) = (a.clone(), vec![0.0; rows]);
    orthonormalize_rows(&mut unblocked, cols, &mut unblocked_norms);
    for block in [1, 7, 32, 90, 1000] {
        let (mut q, mut norms) = (a.clone(), vec![0.0; rows]);
        orthonormalize_rows_blocked(&mut q, cols, &mut norms, block);
        if block >= rows {
            assert_eq!(
                q, unblocked,
                "block {block} >= rows is the unblocked algorithm"
            );
        }
        let gram = matmul(&q, &transpose(&q, rows, cols), rows, cols, rows);
        for i in 0..rows {
            for j in 0..rows {
                let want = f64::from(u8::from(i == j));
                assert!(
                    (gram[i * rows + j] - want).abs() < 1e-13,
                    "block {block}: QQᵀ[{i}][{j}] = {}",
                    gram[i * rows + j]
                );
            }
        }
        assert_eq!(norms[40], 0.0, "block {block}: the zero row");
        assert!(
            norms[89] < 1e-12,
            "block {block}: the dependent row's norm {}",
            norms[89]
        );
        for (i, (n, u)) in norms.iter().zip(&unblocked_norms).enumerate().take(89) {
            assert!(
                (n - u).abs() <= 1e-12 * u.max(1.0),
                "block {block}, row {i}: norm {n} against {u}"
            );
        }
    }
}

#[test]
fn the_lyapunov_spectrum_of_a_wide_linear_map_spans_several_blocks() {
    // 70 exponents: more than two of the blocks the frame is orthonormalised in. Three
    // eigenvalues are 0: the map's image of the frame is rank-deficient (to rounding, not
    // exactly), which is where a blocked Gram-Schmidt without its second pass loses the
    // frame's orthogonality and with it every exponent after.
    let mut rng = SplitMix64(23);
    let pairs: Vec<(f64, f64)> = (0..25)
        .map(|k| (0.3 + 0.03 * k as f64, 0.1 + 0.11 * k as f64))
        .collect();
    let reals: Vec<f64> = (0..20)
        .map(|k| match k {
            3 | 9 | 16 => 0.0,
            _ if k % 2 == 0 => 0.2 + 0.04 * k as f64,
            _ => -0.25 - 0.04 * k as f64,
        })
        .collect();
    let (w, n) = normal_matrix(&pairs, &reals, &mut rng);
    let mut want: Vec<f64> = pairs
        .iter()
        .flat_map(|&(r, _)| [r, r])
        .chain(reals.iter().map(|r: &f64| r.abs()))
        .map(f64::ln)
        .collect();
    want.sort_by(|a, b| b.total_cmp(a));
    let mut lyapunov = Lyapunov::new(n, 10);
    for _ in 0..1500 {
        lyapunov.push(&w);
    }
    let got = lyapunov.exponents();
    assert_eq!(got.len(), n);
    for (g, w) in got.iter().zip(&want) {
        if w.is_finite() {
            assert!((g - w).abs() < 5e-3, "exponents {got:?}, want {want:?}");
        } else {
            // ln of the rounding level a zero eigenvalue leaves each step.
            assert!(*g < -25.0, "exponents {got:?}, want {want:?}");
        }
    }
}

#[test]
fn a_relu_rnn_whose_state_stays_positive_has_the_spectrum_of_its_linear_recurrence() {
    // W_hh upper triangular with non-negative entries and a positive bias: every state is
    // positive, ReLU is the identity, and the recurrence is the linear map W_hh, whose
    // exponents are the logs of its diagonal.
    let task = Task::new(TaskKind::Adding, 20, None).unwrap();
    let s = StackShape {
        cell: Cell::Rnn(Activation::Relu),
        input: task.input_size(),
        hidden: 6,
        layers: 1,
    };
    let mut model = Model::new(s, task.output_size());
    let r = s.layer_ranges(0);
    let diag = [0.9, 0.75, 0.6, 0.5, 0.35, 0.2];
    let mut rng = SplitMix64(1);
    for (i, &d) in diag.iter().enumerate() {
        model.params[r.w_hh.start + i * 6 + i] = d;
        for j in i + 1..6 {
            model.params[r.w_hh.start + i * 6 + j] = rng.uniform(0.0, 0.3) as f32;
        }
    }
    model.params[r.b_ih.clone()].fill(1.0);
    let mut spectrum = SpectrumDiag::new(&model, &task, 0, 500).expect("a stream");
    let mut row = Default::default();
    let mut rows = Vec::new();
    spectrum.measure(&model, &mut row, &mut rows, Par::Seq);
    let exponents: Vec<f64> = rows
        .iter()
        .filter(|r| r.kind == SpectrumKind::Lyapunov)
        .map(|r| r.value)
        .collect();
    for (g, d) in exponents.iter().zip(diag) {
        assert!(
            (g - f64::from(d).ln()).abs() < 2e-3,
            "exponents {exponents:?} against ln {diag:?}"
        );
    }
    // Products of k identical Jacobians: singular values of W_hh^k.
    let w: Vec<f64> = model.params[r.w_hh].iter().map(|&v| f64::from(v)).collect();
    let mut power = w.clone();
    for k in 1..=20usize {
        if k > 1 {
            power = matmul(&power, &w, 6, 6, 6);
        }
        if k.is_power_of_two() || k == 20 {
            let got: Vec<f64> = rows
                .iter()
                .filter(|r| r.kind == SpectrumKind::JacobianSv(k))
                .map(|r| r.value)
                .collect();
            let want = singular_values(&power, 6, 6);
            assert_eq!(got.len(), 6, "k = {k}");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-12 * want[0],
                    "k = {k}: {got:?} against {want:?}"
                );
            }
        }
    }
    assert_eq!(row.lyapunov_positive, vec![Some(0)]);
    assert_eq!(row.kaplan_yorke_dim, vec![Some(0.0)]);
}

#[test]
fn singular_values_of_known_matrices_at_any_scale() {
    let mut rng = SplitMix64(9);
    let (m, n) = (7, 4);
    let sv = [3.0, 1.0, 1e-3, 1e-9];
    let u = orthogonal(m, &mut rng);
    let v = orthogonal(n, &mut rng);
    // U[:, :4] diag(sv) Vᵀ.
    let mut a = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            a[i * n + j] = (0..n).map(|k| u[i * m + k] * sv[k] * v[j * n + k]).sum();
        }
    }
    for scale in [1.0, 1e-200, 1e200] {
        let scaled: Vec<f64> = a.iter().map(|x| x * scale).collect();
        for (got, (r, c)) in [
            (singular_values(&scaled, m, n), (m, n)),
            (singular_values(&transpose(&scaled, m, n), n, m), (n, m)),
        ] {
            assert_eq!(got.len(), 4, "{r} × {c}");
            for (g, w) in got.iter().zip(sv) {
                assert!(
                    (g / scale - w).abs() <= 1e-12 * 3.0 + 1e-6 * w,
                    "{r} × {c} at scale {scale:e}: {got:?} against {sv:?}"
                );
            }
        }
    }
    assert_eq!(singular_values(&[0.0; 6], 2, 3), vec![0.0, 0.0]);
}

#[test]
fn kaplan_yorke_dimension_of_known_spectra() {
    assert_eq!(kaplan_yorke_dimension(&[0.5, -0.2, -1.0]), 2.0 + 0.3 / 1.0);
    assert_eq!(kaplan_yorke_dimension(&[-0.1, -0.5]), 0.0);
    assert_eq!(kaplan_yorke_dimension(&[0.3, 0.1]), 2.0);
    assert_eq!(kaplan_yorke_dimension(&[0.2, -0.4]), 1.0 + 0.2 / 0.4);
    assert_eq!(kaplan_yorke_dimension(&[0.0, f64::NEG_INFINITY]), 1.0);
}

#[test]
fn orthogonality_distance_is_zero_for_orthogonal_blocks_and_exact_for_scaled_ones() {
    let mut rng = SplitMix64(2);
    let h = 9;
    let w: Vec<f32> = (0..4)
        .flat_map(|_| orthogonal(h, &mut rng))
        .map(|v| v as f32)
        .collect();
    assert!(orthogonality_distance(&w, 4, h) < 1e-6);
    // 2Q: ‖4I − I‖_F / √H = 3 for every block.
    let doubled: Vec<f32> = w.iter().map(|v| 2.0 * v).collect();
    assert!((orthogonality_distance(&doubled, 4, h) - 3.0).abs() < 1e-5);
    // One block 2Q, three blocks Q: the root mean square over blocks is √(9/4).
    let mut mixed = w.clone();
    mixed[..h * h].iter_mut().for_each(|v| *v *= 2.0);
    assert!((orthogonality_distance(&mixed, 4, h) - 1.5).abs() < 1e-5);
}

#[test]
fn norm_preservation_is_the_ratio_of_consecutive_probe_norms() {
    assert_eq!(norm_preservation(&[4.0, 2.0, 2.0]), (Some(1.5), Some(1.0)));
    // A zero gradient after the step has no ratio; a single step has none at all.
    assert_eq!(norm_preservation(&[1.0, 0.0, 2.0]), (Some(0.0), Some(0.0)));
    assert_eq!(norm_preservation(&[3.0]), (None, None));
}

#[test]
fn a_run_logs_spectra_at_its_diagnosed_updates_and_the_new_columns_everywhere() {
    for cell in ["rnn", "lstm", "gru"] {
        let cfg = RunConfig::from_toml(&format!(
            "task = 'adding'\nseq_len = 12\ncell = '{cell}'\nhidden = 6\ndepth = 2\nbatch = 4\n\
             steps = 25\nlog_every = 5\neval_every = 100\neval_sequences = 20\n\
             diag_every = 10\nlyapunov_steps = 150\ninit = 'orthogonal'\n"
        ))
        .unwrap();
        let mut trainer = Trainer::new(cfg, Par::Seq).unwrap();
        let record = trainer.run(|_, _| {});
        let n = if cell == "lstm" { 12 } else { 6 };
        let measured = [0, 10, 20, 24];
        for &step in &measured {
            for layer in 0..2 {
                let of = |kind| {
                    record
                        .spectrum
                        .iter()
                        .filter(|r| r.step == step && r.layer == layer && r.kind == kind)
                        .map(|r| r.value)
                        .collect::<Vec<_>>()
                };
                let lyapunov = of(SpectrumKind::Lyapunov);
                assert_eq!(lyapunov.len(), n, "{cell} step {step} layer {layer}");
                assert!(
                    lyapunov.windows(2).all(|w| w[0] >= w[1]),
                    "descending: {lyapunov:?}"
                );
                for k in [1, 2, 4, 8, 12] {
                    assert_eq!(of(SpectrumKind::JacobianSv(k)).len(), n, "{cell} k = {k}");
                }
                assert!(
                    of(SpectrumKind::JacobianSv(16)).is_empty(),
                    "k is at most T"
                );
            }
        }
        let spectrum_steps: std::collections::BTreeSet<usize> =
            record.spectrum.iter().map(|r| r.step).collect();
        assert_eq!(spectrum_steps.into_iter().collect::<Vec<_>>(), measured);
        for row in &record.logged {
            let measured = measured.contains(&row.step);
            let summaries = row.lyapunov_max.iter().flatten().count();
            assert_eq!(summaries, if measured { 2 } else { 0 }, "step {}", row.step);
            assert_eq!(row.orthogonality.len(), 2);
            assert!(row
                .orthogonality
                .iter()
                .all(|d| d.is_some_and(f64::is_finite)));
            assert!(row.norm_ratio_mean.is_some() && row.norm_ratio_min <= row.norm_ratio_mean);
        }
        // Initialised orthogonal: W_hh starts at distance 0 (to f32 rounding).
        assert!(record.logged[0].orthogonality[0].unwrap() < 1e-6);
        // A tanh RNN with an orthogonal W_hh has step Jacobians diag(1 − h²) W_hh of norm at
        // most 1: no exponent above 0 (up to the f32 rounding of W_hh).
        if cell == "rnn" {
            assert!(record.logged[0].lyapunov_max[0].unwrap() <= 1e-6);
        }
    }
    assert_eq!(WARMUP, 100);
}

#[test]
fn lyapunov_steps_zero_turns_the_spectra_off() {
    let cfg = RunConfig::from_toml(
        "task = 'adding'\nseq_len = 10\nhidden = 4\nbatch = 2\nsteps = 3\nlog_every = 1\n\
         eval_sequences = 10\nlyapunov_steps = 0\n",
    )
    .unwrap();
    let record = Trainer::new(cfg, Par::Seq).unwrap().run(|_, _| {});
    assert!(record.spectrum.is_empty());
    assert!(record.logged.iter().all(|r| r.lyapunov_max.is_empty()));
}
