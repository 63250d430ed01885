//! SIMD primitives against their scalar twins and against f64: activations, BLAS-1, gate math,
//! norms and clipping, on awkward lengths and on special values.

mod common;

use common::Rng;
use gradlab_kernels::gates::{
    self, Activation, GruBackwardIn, GruBackwardOut, GruForwardOut, LstmBackwardIn,
    LstmBackwardOut, LstmForwardOut,
};
use gradlab_kernels::norm::{self, clip_global_norm, clip_value, clip_value_scalar, global_norm};
use gradlab_kernels::simd::{self, LANES};

/// Lengths that hit 0, 1, an 8- and a 16-lane vector exactly and one either side, and odd sizes.
const LENGTHS: [usize; 14] = [
    0,
    1,
    7,
    8,
    9,
    LANES - 1,
    LANES,
    LANES + 1,
    17,
    31,
    33,
    127,
    257,
    1000,
];

const SPECIAL: [f32; 14] = [
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    2000.0,
    -2000.0,
    0.0,
    -0.0,
    1e-40,  // subnormal
    -1e-40, // subnormal
    f32::MIN_POSITIVE,
    88.7,
    -88.0,
    0.625,
    -0.624_999_9,
];

/// Inputs for length `n`: the special values first, then random values over [-scale, scale].
fn inputs(n: usize, scale: f64, seed: u64) -> Vec<f32> {
    let mut v = Rng::new(seed).vec_f32(n, scale);
    for (x, s) in v.iter_mut().zip(SPECIAL) {
        *x = s;
    }
    v
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

type InPlace = fn(&mut [f32]);
type Exact = fn(f64) -> f64;

const ACTIVATIONS: [(&str, InPlace, InPlace); 3] = [
    ("exp", simd::exp_inplace, simd::exp_inplace_scalar),
    ("tanh", simd::tanh_inplace, simd::tanh_inplace_scalar),
    (
        "sigmoid",
        simd::sigmoid_inplace,
        simd::sigmoid_inplace_scalar,
    ),
];

#[test]
fn activations_equal_their_scalar_twins_bit_for_bit() {
    for (name, vector, scalar) in ACTIVATIONS {
        for n in LENGTHS {
            for scale in [1.0, 10.0, 100.0] {
                let x = inputs(n, scale, n as u64);
                let (mut a, mut b) = (x.clone(), x.clone());
                vector(&mut a);
                scalar(&mut b);
                assert!(
                    same_bits(&a, &b),
                    "{name} n={n} scale={scale}: SIMD and scalar differ"
                );
            }
        }
    }
}

#[test]
fn tanh_and_sigmoid_are_within_3e7_of_f64_on_minus_30_to_30() {
    let x: Vec<f32> = (0..=600_000).map(|k| -30.0 + k as f32 * 1e-4).collect();
    let checks: [(&str, InPlace, Exact); 2] = [
        ("tanh", simd::tanh_inplace, f64::tanh),
        ("sigmoid", simd::sigmoid_inplace, |v| {
            1.0 / (1.0 + (-v).exp())
        }),
    ];
    for (name, f, exact) in checks {
        let mut y = x.clone();
        f(&mut y);
        let (worst, at) = y
            .iter()
            .zip(&x)
            .map(|(&y, &x)| ((f64::from(y) - exact(f64::from(x))).abs(), x))
            .fold((0.0, 0.0), |m, e| if e.0 > m.0 { e } else { m });
        println!("{name}: max abs error {worst:e} at x = {at}");
        assert!(worst <= 3e-7, "{name}: max abs error {worst:e} at x = {at}");
    }
}

#[test]
fn exp_is_within_2_ulp_of_f64_over_its_normal_range() {
    let x: Vec<f32> = (0..=200_000)
        .map(|k| -87.3 + k as f32 * (88.7 + 87.3) / 200_000.0)
        .collect();
    let mut y = x.clone();
    simd::exp_inplace(&mut y);
    let mut worst = 0.0f64;
    for (&y, &x) in y.iter().zip(&x) {
        let e = f64::from(x).exp();
        let rel = (f64::from(y) - e).abs() / e;
        worst = worst.max(rel);
        assert!(
            rel <= 2.0 * f64::from(f32::EPSILON),
            "exp({x}) = {y}, want {e}: rel error {rel:e}"
        );
    }
    println!(
        "exp: max rel error {worst:e} = {:.2} ulp(1)",
        worst / f64::from(f32::EPSILON)
    );
}

#[test]
fn activations_saturate_exactly_and_propagate_nan() {
    let cases: [(f32, f32, f32, f32); 9] = [
        // x, exp, tanh, sigmoid
        (f32::INFINITY, f32::INFINITY, 1.0, 1.0),
        (f32::NEG_INFINITY, 0.0, -1.0, 0.0),
        (2000.0, f32::INFINITY, 1.0, 1.0),
        (-2000.0, 0.0, -1.0, 0.0),
        (0.0, 1.0, 0.0, 0.5),
        (1e-40, 1.0, 1e-40, 0.5),
        (-1e-40, 1.0, -1e-40, 0.5),
        (88.8, f32::INFINITY, 1.0, 1.0),
        (-104.0, 0.0, -1.0, 0.0),
    ];
    for (x, e, t, s) in cases {
        for (name, f, want) in [
            ("exp", ACTIVATIONS[0].1, e),
            ("tanh", ACTIVATIONS[1].1, t),
            ("sigmoid", ACTIVATIONS[2].1, s),
        ] {
            let mut v = [x];
            f(&mut v);
            assert_eq!(v[0], want, "{name}({x})");
        }
    }
    for (name, f, _) in ACTIVATIONS {
        let mut v = vec![f32::NAN; 17];
        f(&mut v);
        assert!(v.iter().all(|y| y.is_nan()), "{name}(NaN) must be NaN");
    }
    // exp just below its overflow threshold, where 2^k needs k = 128, stays finite and close.
    let mut v = [88.72f32];
    simd::exp_inplace(&mut v);
    let e = f64::from(88.72f32).exp();
    assert!(
        ((f64::from(v[0]) - e) / e).abs() < 3e-7,
        "exp(88.72) = {}, want {e}",
        v[0]
    );
}

#[test]
fn blas1_kernels_equal_their_scalar_twins() {
    for n in LENGTHS {
        let mut rng = Rng::new(n as u64 + 7);
        let (x, y) = (rng.vec_f32(n, 2.0), rng.vec_f32(n, 2.0));
        let (mut a, mut b) = (y.clone(), y.clone());
        simd::axpy(0.37, &x, &mut a);
        simd::axpy_scalar(0.37, &x, &mut b);
        assert!(same_bits(&a, &b), "axpy n={n}");
        simd::scale(-1.7, &mut a);
        simd::scale_scalar(-1.7, &mut b);
        assert!(same_bits(&a, &b), "scale n={n}");
        let exact: f64 = x
            .iter()
            .zip(&y)
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum();
        let bound = 2.0
            * n as f64
            * f64::from(f32::EPSILON)
            * x.iter()
                .zip(&y)
                .map(|(p, q)| f64::from((p * q).abs()))
                .sum::<f64>();
        for (name, d) in [
            ("dot", simd::dot(&x, &y)),
            ("dot_scalar", simd::dot_scalar(&x, &y)),
        ] {
            assert!(
                (f64::from(d) - exact).abs() <= bound,
                "{name} n={n}: {d} vs {exact}"
            );
        }
    }
}

/// LSTM forward state: gates, c, tanh(c), h.
type LstmState = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

fn forward_out((gates, c, tc, h): &mut LstmState) -> LstmForwardOut<'_> {
    LstmForwardOut { gates, c, tc, h }
}

/// LSTM backward state: dh, dc, dgates.
type LstmGrads = (Vec<f32>, Vec<f32>, Vec<f32>);

fn backward_out((dh, dc, dgates): &mut LstmGrads) -> LstmBackwardOut<'_> {
    LstmBackwardOut { dh, dc, dgates }
}

fn lstm_forward_both(
    pre: &[f32],
    bias: &[f32],
    c_prev: &[f32],
    h: usize,
    rows: usize,
    units: std::ops::Range<usize>,
) -> [LstmState; 2] {
    let zeros = vec![0.0; rows * h];
    let mut out = [
        (pre.to_vec(), zeros.clone(), zeros.clone(), zeros.clone()),
        (pre.to_vec(), zeros.clone(), zeros.clone(), zeros),
    ];
    let [v, s] = &mut out;
    gates::lstm_forward_units(forward_out(v), bias, c_prev, h, rows, units.clone());
    gates::lstm_forward_units_scalar(forward_out(s), bias, c_prev, h, rows, units);
    out
}

#[test]
fn gate_kernels_equal_their_scalar_twins() {
    for h in [1, 7, 15, 16, 17, 33, 127] {
        let mut rng = Rng::new(h as u64);
        // Whole rows and an inner range that starts and ends off the vector grid.
        for units in [0..h, h / 3..h - h / 4] {
            for act in [Activation::Tanh, Activation::Relu] {
                let (pre, bias) = (rng.vec_f32(h, 3.0), rng.vec_f32(h, 1.0));
                let (mut a, mut b) = (pre.clone(), pre.clone());
                gates::rnn_forward_units(act, &mut a, &bias, units.clone());
                gates::rnn_forward_units_scalar(act, &mut b, &bias, units.clone());
                assert!(same_bits(&a, &b), "rnn forward {act:?} H={h} {units:?}");
                let (dy, dh) = (rng.vec_f32(h, 1.0), rng.vec_f32(h, 1.0));
                let (mut dh1, mut dh2, mut g1, mut g2) =
                    (dh.clone(), dh, vec![0.0; h], vec![0.0; h]);
                gates::rnn_backward_units(act, &a, &dy, &mut dh1, &mut g1, units.clone());
                gates::rnn_backward_units_scalar(act, &a, &dy, &mut dh2, &mut g2, units.clone());
                assert!(
                    same_bits(&dh1, &dh2) && same_bits(&g1, &g2),
                    "rnn backward {act:?} H={h} {units:?}"
                );
            }
            // Rows come in pairs whose dependency chains interleave, and an odd one at the end.
            for rows in [1, 2, 3, 5] {
                let (pre, bias) = (rng.vec_f32(rows * 4 * h, 4.0), rng.vec_f32(4 * h, 1.0));
                let c_prev = rng.vec_f32(rows * h, 2.0);
                let [v, s] = lstm_forward_both(&pre, &bias, &c_prev, h, rows, units.clone());
                let same = same_bits(&v.0, &s.0)
                    && same_bits(&v.1, &s.1)
                    && same_bits(&v.2, &s.2)
                    && same_bits(&v.3, &s.3);
                assert!(same, "lstm forward H={h} rows={rows} {units:?}");
                let outside =
                    v.1.iter()
                        .enumerate()
                        .all(|(e, &c)| units.contains(&(e % h)) || c == 0.0);
                assert!(outside, "lstm forward wrote outside {units:?}");
            }
            let c_prev = rng.vec_f32(h, 2.0);
            let [fwd, _] = lstm_forward_both(
                &rng.vec_f32(4 * h, 4.0),
                &rng.vec_f32(4 * h, 1.0),
                &c_prev,
                h,
                1,
                0..h,
            );
            let (dy, dh, dc) = (
                rng.vec_f32(h, 1.0),
                rng.vec_f32(h, 1.0),
                rng.vec_f32(h, 1.0),
            );
            let mut b1: LstmGrads = (dh.clone(), dc.clone(), vec![0.0; 4 * h]);
            let mut b2 = b1.clone();
            let inputs = LstmBackwardIn {
                gates: &fwd.0,
                c_prev: &c_prev,
                tc: &fwd.2,
                dy: &dy,
            };
            gates::lstm_backward_units(inputs, backward_out(&mut b1), h, units.clone());
            gates::lstm_backward_units_scalar(inputs, backward_out(&mut b2), h, units.clone());
            let same =
                same_bits(&b1.0, &b2.0) && same_bits(&b1.1, &b2.1) && same_bits(&b1.2, &b2.2);
            assert!(same, "lstm backward H={h} {units:?}");
        }
    }
}

/// `v` with the special values spread over it (every `stride`-th element, in turn).
fn with_specials(mut v: Vec<f32>, stride: usize) -> Vec<f32> {
    for (x, s) in v
        .iter_mut()
        .step_by(stride.max(1))
        .zip(SPECIAL.iter().cycle())
    {
        *x = *s;
    }
    v
}

#[test]
fn gru_gate_kernels_equal_their_scalar_twins_on_awkward_widths_and_special_values() {
    // H = 0, 1, lanes - 1, lanes + 1, 17, 127, 257; rows in pairs and an odd one; whole rows and
    // an inner range off the vector grid; NaN, ±inf, ±2000 and subnormals among the inputs.
    for h in [0, 1, LANES - 1, LANES, LANES + 1, 17, 127, 257] {
        let mut rng = Rng::new(h as u64 + 31);
        for units in [0..h, h / 3..h - h / 4] {
            for rows in [1, 2, 3, 5] {
                for special in [false, true] {
                    let label = format!("H={h} rows={rows} {units:?} special={special}");
                    let spice =
                        |v: Vec<f32>, k: usize| if special { with_specials(v, k) } else { v };
                    let pre = spice(rng.vec_f32(rows * 4 * h, 4.0), 7);
                    let bias = spice(rng.vec_f32(3 * h, 1.0), 11);
                    let h_prev = spice(rng.vec_f32(rows * h, 1.0), 5);
                    let (mut gv, mut gs) = (pre.clone(), pre.clone());
                    let (mut hv, mut hs) = (vec![0.0; rows * h], vec![0.0; rows * h]);
                    let out = GruForwardOut {
                        gates: &mut gv,
                        h: &mut hv,
                    };
                    gates::gru_forward_units(out, &bias, &h_prev, h, rows, units.clone());
                    let out = GruForwardOut {
                        gates: &mut gs,
                        h: &mut hs,
                    };
                    gates::gru_forward_units_scalar(out, &bias, &h_prev, h, rows, units.clone());
                    assert!(
                        same_bits(&gv, &gs) && same_bits(&hv, &hs),
                        "gru forward {label}"
                    );
                    let outside = hv
                        .iter()
                        .enumerate()
                        .all(|(e, &x)| units.contains(&(e % h.max(1))) || x == 0.0);
                    assert!(outside, "gru forward wrote outside {units:?}: {label}");
                    // Backward of one row, from the forward's gates.
                    let (dy, dh) = (spice(rng.vec_f32(h, 1.0), 3), rng.vec_f32(h, 1.0));
                    let inputs = GruBackwardIn {
                        gates: &gv[..4 * h],
                        h_prev: &h_prev[..h],
                        dy: &dy,
                    };
                    let mut both = [0, 1]
                        .map(|_| (dh.clone(), vec![0.0; h], vec![0.0; 3 * h], vec![0.0; 3 * h]));
                    for (k, (dh, d, dg, dgi)) in both.iter_mut().enumerate() {
                        let out = GruBackwardOut {
                            dh,
                            d,
                            dgates: dg,
                            dgates_ih: dgi,
                        };
                        if k == 0 {
                            gates::gru_backward_units(inputs, out, h, units.clone());
                        } else {
                            gates::gru_backward_units_scalar(inputs, out, h, units.clone());
                        }
                    }
                    let [v, s] = &both;
                    let same = same_bits(&v.0, &s.0)
                        && same_bits(&v.1, &s.1)
                        && same_bits(&v.2, &s.2)
                        && same_bits(&v.3, &s.3);
                    assert!(same, "gru backward {label}");
                }
            }
        }
    }
}

#[test]
fn global_norm_is_exact_and_overflow_safe_at_1e30_and_1e_minus_30() {
    for n in LENGTHS {
        let x = Rng::new(n as u64).vec_f32(n, 1.0);
        let exact: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
        let (a, b) = (norm::sum_squares(&x), norm::sum_squares_scalar(&x));
        let tol = 1e-15 * (n as f64 + 1.0) * exact;
        assert!(
            (a - exact).abs() <= tol && (b - exact).abs() <= tol,
            "sum_squares n={n}: {a} {b} vs {exact}"
        );
        let (head, tail) = x.split_at(n / 3);
        let g = global_norm(&[head, tail]);
        assert!(
            (g - exact.sqrt()).abs() <= 1e-15 * (n as f64 + 1.0) * exact.sqrt(),
            "global_norm n={n}: {g} vs {}",
            exact.sqrt()
        );
    }
    for scale in [1e30f32, 1e-30, f32::MAX, 1e-40] {
        let big = vec![scale; 1000];
        let want = f64::from(scale) * 1000f64.sqrt();
        for got in [
            global_norm(&[&big[..500], &big[500..]]),
            norm::global_norm_scalar(&[&big]),
        ] {
            assert!(
                ((got - want) / want).abs() < 1e-14,
                "norm of 1000 x {scale:e}: {got:e}, want {want:e}"
            );
        }
    }
}

#[test]
fn clip_by_norm_never_exceeds_the_threshold_and_keeps_the_direction() {
    for n in [1, 17, 1000] {
        for tau in [1e-3f32, 0.1, 1.0, 5.0, 1e3] {
            for scale in [1e-4, 1.0, 1e4, 1e30] {
                let orig: Vec<f32> = Rng::new(n as u64)
                    .vec(n, 1.0)
                    .iter()
                    .map(|v| (v * scale) as f32)
                    .collect();
                let (mut a, mut b) = (orig[..n / 2].to_vec(), orig[n / 2..].to_vec());
                let before = global_norm(&[&a, &b]);
                let out = clip_global_norm(&mut [&mut a, &mut b], tau);
                let after = global_norm(&[&a, &b]);
                assert_eq!(out.norm_before, before);
                assert_eq!(out.norm_after, after);
                assert!(
                    after <= f64::from(tau).max(before),
                    "n={n} tau={tau} scale={scale}: norm {before} -> {after}"
                );
                assert!(
                    after <= before,
                    "clipping increased the norm: {before} -> {after}"
                );
                assert_eq!(out.clipped, before > f64::from(tau));
                if out.clipped {
                    assert!(
                        (after - f64::from(tau)).abs() <= 1e-6 * f64::from(tau),
                        "clipped norm {after} should be {tau}"
                    );
                    let cos = orig
                        .iter()
                        .zip(a.iter().chain(&b))
                        .map(|(&p, &q)| f64::from(p) * f64::from(q))
                        .sum::<f64>()
                        / (before * after);
                    assert!((cos - 1.0).abs() < 1e-6, "direction changed: cos = {cos}");
                } else {
                    assert_eq!(
                        [a, b].concat(),
                        orig,
                        "no clipping must leave the gradient untouched"
                    );
                }
            }
        }
    }
    let mut g = vec![1.0, f32::INFINITY];
    let out = clip_global_norm(&mut [&mut g], 1.0);
    assert!(
        !out.norm_before.is_finite() && !out.clipped && g[0] == 1.0,
        "non-finite gradients are left alone"
    );
}

#[test]
fn clip_by_value_equals_its_scalar_twin_and_counts_changes() {
    for n in LENGTHS {
        let x = inputs(n, 3.0, n as u64 + 1);
        let (mut a, mut b) = (x.clone(), x.clone());
        let (ca, cb) = (clip_value(&mut a, 1.5), clip_value_scalar(&mut b, 1.5));
        assert!(
            same_bits(&a, &b) && ca == cb,
            "clip_value n={n}: {ca} vs {cb} changes"
        );
        let want = x.iter().filter(|v| v.abs() > 1.5).count();
        assert_eq!(ca, want, "n={n}");
        assert!(a.iter().all(|v| v.is_nan() || v.abs() <= 1.5));
        assert_eq!(
            a.iter().filter(|v| v.is_nan()).count(),
            x.iter().filter(|v| v.is_nan()).count(),
            "NaN must stay NaN"
        );
    }
}
