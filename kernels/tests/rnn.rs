//! Forward and backward of RNN, LSTM and GRU stacks: the f64 reference against central finite
//! differences, the f32 kernels against the f64 reference, truncation, and determinism.

mod common;

use common::{rel_err, run_kernels, run_kernels_in, Outputs, Problem};
use gradlab_kernels::reference::{self, Trace};
use gradlab_kernels::rnn::{OutputGrads, Workspace};
use gradlab_kernels::{Activation, Cell, Par, StackShape};

const CELLS: [Cell; 4] = [
    Cell::Rnn(Activation::Tanh),
    Cell::Rnn(Activation::Relu),
    Cell::Lstm,
    Cell::Gru,
];

fn shape(cell: Cell, input: usize, hidden: usize, layers: usize) -> StackShape {
    StackShape {
        cell,
        input,
        hidden,
        layers,
    }
}

fn ref_forward(
    p: &Problem,
    params: &[f64],
    x: &[f64],
    h0: Option<&[f64]>,
    c0: Option<&[f64]>,
) -> Trace<f64> {
    reference::forward(p.shape, params, x, h0, c0, p.t, p.b)
}

/// The probe loss L = <dy, y> + Σ_l <dh_n, h_n> + <dc_n, c_n>, whose gradients backward computes.
fn loss(p: &Problem, tr: &Trace<f64>) -> f64 {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let bh = p.b * p.shape.hidden;
    let mut l = dot(&p.dy, tr.output());
    for k in 0..p.shape.layers {
        if let Some(d) = &p.dh_n {
            l += dot(&d[k * bh..][..bh], tr.h_n(k));
        }
        if let Some(d) = &p.dc_n {
            l += dot(&d[k * bh..][..bh], tr.c_n(k));
        }
    }
    l
}

/// Central differences of the probe loss with respect to every element of one input.
fn finite_diff(p: &Problem, which: usize) -> Vec<f64> {
    let eps = 1e-6;
    let base = [
        Some(p.params.clone()),
        Some(p.x.clone()),
        p.h0.clone(),
        p.c0.clone(),
    ];
    let n = base[which].as_ref().map_or(0, Vec::len);
    (0..n)
        .map(|e| {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[which].as_mut().unwrap()[e] += delta;
                let tr = ref_forward(
                    p,
                    v[0].as_ref().unwrap(),
                    v[1].as_ref().unwrap(),
                    v[2].as_deref(),
                    v[3].as_deref(),
                );
                loss(p, &tr)
            };
            (at(eps) - at(-eps)) / (2.0 * eps)
        })
        .collect()
}

fn ref_backward(p: &Problem, steps: usize) -> (Trace<f64>, reference::RefGrads<f64>) {
    let tr = ref_forward(p, &p.params, &p.x, p.h0.as_deref(), p.c0.as_deref());
    let loss = OutputGrads {
        dy: &p.dy[..],
        dh_n: p.dh_n.as_deref(),
        dc_n: p.dc_n.as_deref(),
    };
    let g = reference::backward(p.shape, &p.params, &p.x, &tr, loss, steps);
    (tr, g)
}

#[test]
fn reference_backward_matches_central_finite_differences() {
    for cell in CELLS {
        for layers in [1, 3] {
            for with_state in [false, true] {
                let p = Problem::new(
                    shape(cell, 3, 5, layers),
                    6,
                    2,
                    with_state,
                    11 + layers as u64,
                );
                let (_, g) = ref_backward(&p, usize::MAX);
                let mut checks = vec![
                    ("params", &g.params, finite_diff(&p, 0)),
                    ("dx", &g.dx, finite_diff(&p, 1)),
                ];
                if with_state {
                    checks.push(("dh0", &g.dh0, finite_diff(&p, 2)));
                }
                if with_state && cell.has_cell_state() {
                    checks.push(("dc0", &g.dc0, finite_diff(&p, 3)));
                }
                for (what, analytic, numeric) in checks {
                    let e = rel_err(analytic, &numeric);
                    assert!(e < 1e-6, "{cell:?} L={layers} state={with_state} {what}: rel err {e:e} vs finite differences");
                }
            }
        }
    }
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    let e = rel_err(got, want);
    assert!(e < tol, "{what}: rel err {e:e} > {tol:e}");
}

fn assert_matches_reference(p: &Problem, steps: usize, label: &str) {
    let (tr, g) = ref_backward(p, steps);
    let k = run_kernels(p, steps, Par::Seq);
    let layers = p.shape.layers;
    let h_n: Vec<f64> = (0..layers).flat_map(|l| tr.h_n(l).to_vec()).collect();
    let c_n: Vec<f64> = (0..layers).flat_map(|l| tr.c_n(l).to_vec()).collect();
    let tol = 1e-4;
    assert_close(&format!("{label} y"), &k.y, tr.output(), tol);
    assert_close(&format!("{label} h_n"), &k.h_n, &h_n, tol);
    if p.shape.cell.has_cell_state() {
        assert_close(&format!("{label} c_n"), &k.c_n, &c_n, tol);
    }
    assert_close(&format!("{label} grads"), &k.grads, &g.params, tol);
    assert_close(&format!("{label} dx"), &k.dx, &g.dx, tol);
    assert_close(&format!("{label} flow"), &k.flow, &g.flow, tol);
    if steps >= p.t && p.h0.is_some() {
        assert_close(&format!("{label} dh0"), &k.dh0, &g.dh0, tol);
        if p.shape.cell.has_cell_state() {
            assert_close(&format!("{label} dc0"), &k.dc0, &g.dc0, tol);
        }
    }
}

#[test]
fn kernels_match_f64_reference() {
    // Widths that hit the 16-lane vectors and 64-column panels exactly, one short and one over.
    for cell in CELLS {
        for (i, h, layers, t, b) in [
            (3, 5, 1, 6, 2),
            (7, 16, 3, 5, 3),
            (17, 63, 1, 9, 7),
            (65, 65, 2, 4, 13),
            (1, 130, 1, 3, 1),
        ] {
            for with_state in [false, true] {
                let p = Problem::new(
                    shape(cell, i, h, layers),
                    t,
                    b,
                    with_state,
                    (i * 1000 + h) as u64,
                );
                assert_matches_reference(
                    &p,
                    usize::MAX,
                    &format!("{cell:?} I={i} H={h} L={layers} T={t} B={b} state={with_state}"),
                );
            }
        }
    }
}

#[test]
fn truncated_backward_equals_full_backward_of_the_window() {
    // TBPTT over the last k steps is full BPTT of those k steps started from the carried state.
    for cell in CELLS {
        let (t, k) = (9, 4);
        let t0 = t - k;
        let p = Problem::new(shape(cell, 4, 6, 2), t, 3, true, 5);
        let (bh, bi, layers) = (p.b * p.shape.hidden, p.b * p.shape.input, p.shape.layers);
        let prefix = ref_forward(
            &Problem { t: t0, ..p.clone() },
            &p.params,
            &p.x[..t0 * bi],
            p.h0.as_deref(),
            p.c0.as_deref(),
        );
        let window = Problem {
            t: k,
            x: p.x[t0 * bi..].to_vec(),
            dy: p.dy[t0 * bh..].to_vec(),
            h0: Some((0..layers).flat_map(|l| prefix.h_n(l).to_vec()).collect()),
            c0: cell
                .has_cell_state()
                .then(|| (0..layers).flat_map(|l| prefix.c_n(l).to_vec()).collect()),
            ..p.clone()
        };
        let (_, truncated) = ref_backward(&p, k);
        let (_, full) = ref_backward(&window, usize::MAX);
        assert_close(
            &format!("{cell:?} params"),
            &truncated.params,
            &full.params,
            1e-12,
        );
        assert_close(
            &format!("{cell:?} dx"),
            &truncated.dx[t0 * bi..],
            &full.dx,
            1e-12,
        );
        assert!(
            truncated.dx[..t0 * bi].iter().all(|&v| v == 0.0),
            "{cell:?}: dx before the window must be zero"
        );
        let window_flow: Vec<f64> = (0..layers)
            .flat_map(|l| truncated.flow[l * t + t0..(l + 1) * t].to_vec())
            .collect();
        assert_close(&format!("{cell:?} flow"), &window_flow, &full.flow, 1e-12);
        // And the kernels agree with the reference under truncation.
        assert_matches_reference(&p, k, &format!("{cell:?} truncated k={k}"));
    }
}

#[test]
fn window_of_k_at_least_t_is_exactly_full_bptt() {
    for cell in CELLS {
        let p = Problem::new(shape(cell, 5, 19, 2), 7, 4, true, 21);
        let full = run_kernels(&p, usize::MAX, Par::Seq);
        for k in [7, 8, 100] {
            assert_eq!(
                run_kernels(&p, k, Par::Seq).bits(),
                full.bits(),
                "{cell:?}: k={k} differs from full BPTT"
            );
        }
        assert_ne!(
            run_kernels(&p, 6, Par::Seq).bits(),
            full.bits(),
            "{cell:?}: k=6 < T must truncate"
        );
    }
}

#[test]
fn results_are_bit_identical_for_any_thread_count() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    for cell in CELLS {
        for (i, h, layers, t, b) in [(5, 37, 2, 9, 7), (80, 80, 1, 6, 33)] {
            let p = Problem::new(shape(cell, i, h, layers), t, b, true, 3);
            let seq: Outputs = run_kernels(&p, usize::MAX, Par::Seq);
            for n in [2, 3, 5] {
                let par = pool.install(|| run_kernels(&p, usize::MAX, Par::rayon(n)));
                assert_eq!(
                    par.bits(),
                    seq.bits(),
                    "{cell:?} I={i} H={h}: Rayon({n}) differs from Seq"
                );
            }
        }
    }
}

#[test]
fn a_diverging_input_gives_nan_not_a_panic() {
    // Divergence is detected by the caller from non-finite values; the kernels must carry them.
    for cell in CELLS {
        let mut p = Problem::new(shape(cell, 3, 17, 1), 4, 2, false, 9);
        p.x[0] = f64::NAN;
        let k = run_kernels(&p, usize::MAX, Par::Seq);
        assert!(
            k.y.iter().any(|v| v.is_nan()) && k.grads.iter().any(|v| v.is_nan()),
            "{cell:?}"
        );
    }
}

/// Every state, stored gate and the output a workspace holds after a pass, as bits.
fn held(ws: &Workspace) -> Vec<Vec<u32>> {
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut all = vec![bits(ws.output())];
    for s in 0..=ws.steps() {
        let (h, c) = ws.state(s);
        all.extend([bits(&h), bits(&c)]);
    }
    all.extend((0..ws.shape().layers).map(|l| bits(ws.gates(l))));
    all
}

#[test]
fn a_resized_workspace_gives_the_results_of_a_fresh_one() {
    // Buffers keep what the larger size wrote when shrunk: every pass must write before it reads.
    for cell in [Cell::Rnn(Activation::Tanh), Cell::Lstm, Cell::Gru] {
        for layers in [1, 2] {
            for par in [Par::Seq, Par::rayon(2)] {
                let s = shape(cell, 5, 19, layers);
                let mut ws = Workspace::new(s, 6, 5);
                run_kernels_in(&mut ws, &Problem::new(s, 6, 5, true, 1), usize::MAX, par);
                // Smaller, the same, larger in T and B, larger in one only, then back down.
                for (t, b) in [(3, 2), (6, 5), (9, 7), (2, 9), (11, 1), (4, 3)] {
                    for steps in [usize::MAX, t - 1] {
                        let label = format!("{cell:?} L={layers} {par:?} T={t} B={b} k={steps}");
                        let p = Problem::new(s, t, b, true, (t * 10 + b) as u64);
                        ws.resize(t, b);
                        assert_eq!((ws.steps(), ws.batch()), (t, b), "{label}");
                        let got = run_kernels_in(&mut ws, &p, steps, par);
                        let mut fresh = Workspace::new(s, t, b);
                        let want = run_kernels_in(&mut fresh, &p, steps, par);
                        assert_eq!(got.bits(), want.bits(), "{label}: outputs or gradients");
                        assert_eq!(held(&ws), held(&fresh), "{label}: states or gates");
                    }
                }
            }
        }
    }
}

#[test]
fn state_into_copies_what_state_returns() {
    for cell in [Cell::Rnn(Activation::Relu), Cell::Lstm, Cell::Gru] {
        for layers in [1, 2] {
            let p = Problem::new(shape(cell, 4, 21, layers), 5, 3, true, 7);
            let mut ws = Workspace::new(p.shape, p.t, p.b);
            run_kernels_in(&mut ws, &p, usize::MAX, Par::Seq);
            let (h_len, c_len) = (ws.state(0).0.len(), ws.state(0).1.len());
            assert_eq!(c_len, if cell.has_cell_state() { h_len } else { 0 });
            for s in 0..=p.t {
                let (mut h, mut c) = (vec![f32::NAN; h_len], vec![f32::NAN; c_len]);
                ws.state_into(s, &mut h, &mut c);
                let (h_want, c_want) = ws.state(s);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&h),
                    bits(&h_want),
                    "{cell:?} L={layers} h after {s} steps"
                );
                assert_eq!(
                    bits(&c),
                    bits(&c_want),
                    "{cell:?} L={layers} c after {s} steps"
                );
            }
        }
    }
}

#[test]
#[should_panic(expected = "step 6 is past the window")]
fn a_shrunk_workspace_refuses_steps_past_its_window() {
    // The buffers still hold step 6 of the longer window; returning it would be stale state.
    let s = shape(Cell::Lstm, 3, 8, 1);
    let mut ws = Workspace::new(s, 8, 2);
    run_kernels_in(
        &mut ws,
        &Problem::new(s, 8, 2, false, 3),
        usize::MAX,
        Par::Seq,
    );
    ws.resize(4, 2);
    ws.c_at(0, 6);
}
