//! Pascanu et al. (2013)'s regulariser Ω: the f64 reference against central finite differences
//! and against the ratio taken through explicitly built step Jacobians, and the f32 kernel,
//! fed by a whole backward, against the reference (and bit-identical for any thread count).

mod common;

use common::{narrow, rel_err, run_kernels_in, widen, Problem, Rng};
use gradlab_kernels::omega::{PascanuOmega, OMEGA_BOUND};
use gradlab_kernels::reference::{self, pascanu_omega};
use gradlab_kernels::rnn::{OutputGrads, Workspace};
use gradlab_kernels::{Activation, Cell, Par, StackShape};

const ACTS: [Activation; 2] = [Activation::Tanh, Activation::Relu];

/// f'(h) from the activation's output.
fn slope(act: Activation, h: f64) -> f64 {
    match act {
        Activation::Tanh => 1.0 - h * h,
        Activation::Relu => f64::from(u8::from(h > 0.0)),
    }
}

/// Random states h_k (relu: non-negative, about a third at 0), gradients v_k with some rows
/// below the bound (left out) and some just above it (counted), and W_hh.
struct Case {
    act: Activation,
    dims: (usize, usize, usize),
    w: Vec<f64>,
    hs: Vec<f64>,
    vs: Vec<f64>,
}

impl Case {
    fn new(act: Activation, (t, b, h): (usize, usize, usize), seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let w = rng.vec(h * h, 0.9);
        let mut hs = rng.vec(t * b * h, 0.95);
        if act == Activation::Relu {
            hs.iter_mut().for_each(|x| *x = (*x + 0.3).max(0.0));
        }
        let mut vs = rng.vec(t * b * h, 1.0);
        for (i, row) in vs.chunks_exact_mut(h).enumerate() {
            let norm2: f64 = row.iter().map(|x| x * x).sum();
            // Every third row just below the bound (row 0 aside, so that a pair counts), and
            // rows 5 and 10 of every 15 just above it.
            let target = match i % 15 {
                0 | 3 | 6 | 9 | 12 => Some(0.5 * OMEGA_BOUND),
                5 | 10 => Some(2.0 * OMEGA_BOUND),
                _ => None,
            };
            if let Some(target) = target.filter(|_| i > 0) {
                let s = (target / norm2).sqrt();
                row.iter_mut().for_each(|x| *x *= s);
            }
        }
        Case {
            act,
            dims: (t, b, h),
            w,
            hs,
            vs,
        }
    }

    fn omega(&self, w: &[f64]) -> (Option<f64>, Vec<f64>) {
        pascanu_omega(self.act, w, &self.hs, &self.vs, self.dims)
    }
}

#[test]
fn the_reference_gradient_matches_central_finite_differences() {
    let eps = 1e-6;
    for act in ACTS {
        for (dims, seed) in [
            ((1, 1, 3), 1),
            ((3, 2, 5), 2),
            ((6, 4, 7), 3),
            ((4, 5, 9), 4),
        ] {
            let case = Case::new(act, dims, seed);
            let (omega, grad) = case.omega(&case.w);
            let omega = omega.expect("some pair counts");
            let fd: Vec<f64> = (0..case.w.len())
                .map(|e| {
                    let at = |d: f64| {
                        let mut w = case.w.clone();
                        w[e] += d;
                        case.omega(&w).0.unwrap()
                    };
                    (at(eps) - at(-eps)) / (2.0 * eps)
                })
                .collect();
            let err = rel_err(&grad, &fd);
            println!("{act:?} (T, B, H) = {dims:?}: Ω = {omega:.6}, ∂Ω/∂W_hh rel err {err:.2e} vs central differences");
            assert!(err < 1e-7, "{act:?} {dims:?}: rel err {err:e}");
        }
    }
}

/// Ω as the mean over the counted pairs of (r − 1)², with r = ‖J_kbᵀ v_kb‖² / ‖v_kb‖² and the
/// step Jacobian J_kb = ∂h_k/∂h_{k-1} = diag(f'(h_kb)) W_hh built as a matrix.
fn omega_through_jacobians(case: &Case) -> Option<f64> {
    let (t, b, h) = case.dims;
    let (mut sum, mut n) = (0.0, 0usize);
    for p in 0..t * b {
        let (hr, vr) = (&case.hs[p * h..][..h], &case.vs[p * h..][..h]);
        let jac: Vec<f64> = (0..h * h)
            .map(|e| slope(case.act, hr[e / h]) * case.w[e])
            .collect();
        let v2: f64 = vr.iter().map(|x| x * x).sum();
        if v2 < OMEGA_BOUND {
            continue;
        }
        let u2: f64 = (0..h)
            .map(|j| (0..h).map(|i| jac[i * h + j] * vr[i]).sum::<f64>().powi(2))
            .sum();
        sum += (u2 / v2 - 1.0).powi(2);
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

#[test]
fn omega_matches_the_ratio_through_explicit_step_jacobians() {
    for act in ACTS {
        for (dims, seed) in [((1, 1, 3), 5), ((3, 2, 5), 6), ((7, 3, 6), 7)] {
            let case = Case::new(act, dims, seed);
            let (got, want) = (case.omega(&case.w).0, omega_through_jacobians(&case));
            let (got, want) = (got.unwrap(), want.unwrap());
            assert!(
                (got - want).abs() <= 1e-12 * want.abs(),
                "{act:?} {dims:?}: Ω {got} against {want} through the Jacobians"
            );
        }
    }
}

#[test]
fn omega_has_its_closed_form_on_a_linear_step() {
    // A ReLU layer whose units are all active is linear: with W_hh = c·I every gradient is
    // carried back scaled by c, so r = c² and Ω = (c² − 1)², whatever v.
    let (t, b, h) = (4, 3, 6);
    let mut rng = Rng::new(9);
    let hs: Vec<f64> = rng.vec(t * b * h, 1.0).iter().map(|x| 1.5 + x).collect();
    let vs = rng.vec(t * b * h, 1.0);
    for c in [0.5, 1.0, 2.0] {
        let w: Vec<f64> = (0..h * h)
            .map(|e| if e / h == e % h { c } else { 0.0 })
            .collect();
        let (omega, _) = pascanu_omega(Activation::Relu, &w, &hs, &vs, (t, b, h));
        let want = (c * c - 1.0) * (c * c - 1.0);
        assert!(
            (omega.unwrap() - want).abs() < 1e-12,
            "c = {c}: Ω {omega:?}, want {want}"
        );
    }
    // No pair counts: Ω is undefined and adds no gradient.
    let tiny: Vec<f64> = vs.iter().map(|x| x * 1e-12).collect();
    let w = rng.vec(h * h, 1.0);
    let (omega, grad) = pascanu_omega(Activation::Tanh, &w, &hs, &tiny, (t, b, h));
    assert_eq!(omega, None);
    assert!(grad.iter().all(|&g| g == 0.0));
}

fn rnn(act: Activation, input: usize, hidden: usize, layers: usize) -> StackShape {
    StackShape {
        cell: Cell::Rnn(act),
        input,
        hidden,
        layers,
    }
}

/// A problem whose loss gradients vanish on the last two steps of batch row 0, so that its
/// pairs there have v = 0 and are left out, in every layer.
fn problem(s: StackShape, t: usize, b: usize, seed: u64) -> Problem {
    let mut p = Problem::new(s, t, b, true, seed);
    p.dh_n = None;
    for step in t.saturating_sub(2)..t {
        p.dy[step * b * s.hidden..][..s.hidden].fill(0.0);
    }
    p
}

/// The kernel's Ω per layer and its gradient (α = 1) after forward and backward of `p` over
/// its last `steps` steps.
fn kernel_omega(p: &Problem, steps: usize, par: Par) -> (Vec<Option<f64>>, Vec<f32>) {
    let mut ws = Workspace::new(p.shape, p.t, p.b);
    run_kernels_in(&mut ws, p, steps, par);
    let mut omega = PascanuOmega::new(p.shape, p.t, p.b);
    omega.accumulate(&narrow(&p.params), steps, &ws, par);
    let mut grad = vec![0.0; p.params.len()];
    omega.add_gradient(1.0, &mut grad);
    ((0..p.shape.layers).map(|l| omega.omega(l)).collect(), grad)
}

#[test]
fn the_kernel_matches_the_reference_through_a_whole_backward() {
    // Widths that hit the 16-lane vectors and 64-column panels exactly, one short and one over.
    let (mut worst_omega, mut worst_grad) = (0.0f64, 0.0f64);
    for act in ACTS {
        for (i, h, layers, t, b) in [
            (3, 5, 1, 6, 2),
            (7, 16, 2, 5, 3),
            (4, 63, 1, 9, 7),
            (5, 65, 2, 4, 13),
        ] {
            for steps in [usize::MAX, 3] {
                let label = format!("{act:?} I={i} H={h} L={layers} T={t} B={b} k={steps}");
                let p = problem(rnn(act, i, h, layers), t, b, (h * 10 + i) as u64);
                let (omega, grad) = kernel_omega(&p, steps, Par::Seq);
                let tr = reference::forward(p.shape, &p.params, &p.x, p.h0.as_deref(), None, t, b);
                let loss = OutputGrads {
                    dy: &p.dy[..],
                    dh_n: None,
                    dc_n: None,
                };
                let g = reference::backward(p.shape, &p.params, &p.x, &tr, loss, steps);
                let tbh = t * b * h;
                for (l, got) in omega.iter().enumerate() {
                    let w_hh = &p.params[p.shape.layer_ranges(l).w_hh];
                    // Steps before a truncated window have v = 0 in the reference: left out.
                    let vs = &g.dh[l * tbh..][..tbh];
                    let (want, want_grad) = pascanu_omega(act, w_hh, tr.states(l), vs, (t, b, h));
                    let (got, want) = (got.expect(&label), want.expect(&label));
                    worst_omega = worst_omega.max((got - want).abs() / want.abs());
                    assert!(
                        (got - want).abs() <= 1e-4 * want.abs(),
                        "{label} layer {l}: Ω {got} against the reference's {want}"
                    );
                    let got_grad = widen(&grad[p.shape.layer_ranges(l).w_hh]);
                    let e = rel_err(&got_grad, &want_grad);
                    worst_grad = worst_grad.max(e);
                    assert!(e < 1e-4, "{label} layer {l}: ∂Ω/∂W_hh rel err {e:e}");
                }
                // Nothing but W_hh gets a gradient.
                let w_hh: Vec<_> = (0..layers).map(|l| p.shape.layer_ranges(l).w_hh).collect();
                for (e, &g) in grad.iter().enumerate() {
                    assert!(
                        g == 0.0 || w_hh.iter().any(|r| r.contains(&e)),
                        "{label}: {e}"
                    );
                }
            }
        }
    }
    println!("f32 kernel against the f64 reference: Ω rel err <= {worst_omega:.2e}, ∂Ω/∂W_hh <= {worst_grad:.2e}");
}

#[test]
fn the_kernel_is_bit_identical_for_any_thread_count() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    for act in ACTS {
        for (i, h, layers, t, b) in [(5, 37, 2, 9, 7), (80, 80, 1, 6, 33)] {
            let p = problem(rnn(act, i, h, layers), t, b, 3);
            let bits = |(o, g): (Vec<Option<f64>>, Vec<f32>)| {
                let o: Vec<_> = o.iter().map(|x| x.map(f64::to_bits)).collect();
                (o, g.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            };
            let seq = bits(kernel_omega(&p, usize::MAX, Par::Seq));
            for n in [2, 3] {
                let par = pool.install(|| kernel_omega(&p, usize::MAX, Par::rayon(n)));
                assert_eq!(bits(par), seq, "{act:?} H={h}: Rayon({n}) differs from Seq");
            }
        }
    }
}

#[test]
fn windows_accumulated_count_their_pairs_together() {
    // The same window twice holds the same pairs twice: Ω and its gradient are those of one.
    // After `clear`, a window counts alone again.
    let p = problem(rnn(Activation::Tanh, 4, 20, 2), 6, 5, 8);
    let mut ws = Workspace::new(p.shape, p.t, p.b);
    run_kernels_in(&mut ws, &p, usize::MAX, Par::Seq);
    let params = narrow(&p.params);
    let gradient = |o: &PascanuOmega| {
        let mut g = vec![0.0; params.len()];
        o.add_gradient(2.5, &mut g);
        widen(&g)
    };
    let mut once = PascanuOmega::new(p.shape, p.t, p.b);
    once.accumulate(&params, usize::MAX, &ws, Par::Seq);
    let mut twice = once.clone();
    twice.accumulate(&params, usize::MAX, &ws, Par::Seq);
    for l in 0..2 {
        let (a, b) = (once.omega(l).unwrap(), twice.omega(l).unwrap());
        assert!((a - b).abs() <= 1e-12 * a, "layer {l}: {a} vs {b}");
    }
    assert!(rel_err(&gradient(&twice), &gradient(&once)) < 1e-6);
    twice.clear();
    assert_eq!(twice.omega(0), None);
    twice.accumulate(&params, usize::MAX, &ws, Par::Seq);
    assert_eq!(gradient(&twice), gradient(&once));
}
