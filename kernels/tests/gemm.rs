//! The packed microkernel (`packed_product`, `gemm`) and the matrixmultiply wrappers (`sgemm`,
//! `dgemm`)
//! against a naive f64 product, on
//! shapes that hit and miss the 6-row tiles, 16-lane vectors and 64-column panels.

mod common;

use common::Rng;
use gradlab_kernels::gemm::{
    contiguous_spans, dgemm, gate_panel_units, gate_spans, gemm, packed_product, sgemm, GemmShape,
    Mat, MatMut, PackedB, LANES,
};
use gradlab_kernels::Par;

const SIZES: [usize; 8] = [1, 5, 6, 7, 16, 17, 65, 130];

/// C = A·B in f64 with A (m × k) row-major and B given by element accessor.
fn naive(
    m: usize,
    k: usize,
    n: usize,
    a: impl Fn(usize, usize) -> f32,
    b: impl Fn(usize, usize) -> f32,
) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|p| f64::from(a(i, p)) * f64::from(b(p, j)))
                .sum();
        }
    }
    c
}

/// Every element within `k` roundings of the f64 product (relative to Σ|a·b|).
fn assert_close(what: &str, got: &[f32], want: &[f64], k: usize, scale: f64) {
    let tol = 2.0 * (k as f64 + 2.0) * f64::from(f32::EPSILON) * scale;
    for (e, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= tol,
            "{what}: element {e} is {g}, want {w} (tol {tol:e})"
        );
    }
}

#[test]
fn packed_product_matches_naive_for_both_source_layouts() {
    for rows in [1, 5, 6, 7, 13] {
        // 2100 > 2048: K is blocked (see `k_block`).
        for k in [0, 1, 17, 128, 259, 2100] {
            for n in SIZES {
                let mut rng = Rng::new((rows * 7919 + k * 31 + n) as u64);
                let a = rng.vec_f32(rows * k, 1.0);
                // B stored transposed (N × K, like W_hh forward) and plain (K × N, like backward).
                let bt = rng.vec_f32(n * k, 1.0);
                let b: Vec<f32> = (0..k * n).map(|e| bt[(e % n) * k + e / n]).collect();
                let c0 = rng.vec_f32(rows * n, 1.0);
                let want = naive(rows, k, n, |i, p| a[i * k + p], |p, j| bt[j * k + p]);
                let want_acc: Vec<f64> = want
                    .iter()
                    .zip(&c0)
                    .map(|(w, &c)| w + f64::from(c))
                    .collect();
                for (label, src) in [
                    ("N x K source", Mat::transposed(&bt, k)),
                    ("K x N source", Mat::rows(&b, n)),
                ] {
                    let mut pb = PackedB::default();
                    pb.pack(k, contiguous_spans(n), src, Par::Seq);
                    {
                        let what = format!("{label} rows={rows} k={k} n={n}");
                        let mut c = c0.clone();
                        let mut tiles = 0;
                        let am = Mat::rows(&a, k);
                        let cm = MatMut::rows(&mut c, n);
                        packed_product(rows, am, &pb, cm, false, |_, _, _, mr| tiles += mr);
                        assert_close(&what, &c, &want, k, k as f64);
                        let tiles_want = rows * n.div_ceil(64);
                        assert_eq!(
                            tiles, tiles_want,
                            "{what}: the epilogue must see each tile once"
                        );
                        // Accumulating adds to what C held.
                        let mut c = c0.clone();
                        let cm = MatMut::rows(&mut c, n);
                        packed_product(rows, am, &pb, cm, true, |_, _, _, _| {});
                        assert_close(
                            &format!("{what} accumulate"),
                            &c,
                            &want_acc,
                            k,
                            k as f64 + 1.0,
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn gate_layout_panels_hold_the_four_gates_of_the_same_units() {
    for h in [1, 15, 16, 17, 40] {
        let (rows, k, n) = (7, 9, 4 * h);
        let mut rng = Rng::new(h as u64);
        let (a, bt) = (rng.vec_f32(rows * k, 1.0), rng.vec_f32(n * k, 1.0));
        let want = naive(rows, k, n, |i, p| a[i * k + p], |p, j| bt[j * k + p]);
        let mut pb = PackedB::default();
        let offsets = [0, h, 2 * h, 3 * h];
        pb.pack(
            k,
            gate_spans(h, &offsets),
            Mat::transposed(&bt, k),
            Par::Seq,
        );
        assert_eq!(pb.panels(), h.div_ceil(LANES));
        for p in 0..pb.panels() {
            let units: Vec<usize> = pb.spans(p).iter().map(|s| s.start % h).collect();
            assert!(
                units.iter().all(|&u| u == p * LANES),
                "panel {p} mixes units: {units:?}"
            );
            assert_eq!(
                gate_panel_units(p, 4, h),
                p * LANES..(h.min((p + 1) * LANES))
            );
        }
        let mut c = vec![f32::NAN; rows * n];
        let cm = MatMut::rows(&mut c, n);
        packed_product(rows, Mat::rows(&a, k), &pb, cm, false, |_, _, _, _| {});
        assert_close(&format!("gate layout h={h}"), &c, &want, k, k as f64);
    }
}

#[test]
fn three_gate_panels_straddle_and_each_epilogue_sees_only_complete_units() {
    // The GRU's recurrent product: gates r, z, n of 16-unit chunks, three to a unit chunk and
    // four to a panel, read from rows 0, H, 2H of W_hh and landing at columns 0, H and 3H of a
    // 4H-wide row (2H..3H is W_in x, untouched). Catches an epilogue that runs a unit's gate
    // math before its n gate's panel, and n read from or written to the wrong place.
    for h in [1, 15, 16, 17, 40, 64, 100] {
        let (rows, k, w) = (7, 9, 4 * h);
        let mut rng = Rng::new(h as u64 + 100);
        let (a, bt) = (rng.vec_f32(rows * k, 1.0), rng.vec_f32(3 * h * k, 1.0));
        // Column j of the product is gate row j of W_hh (3H × K, stored as bt).
        let prod = naive(rows, k, 3 * h, |i, p| a[i * k + p], |p, j| bt[j * k + p]);
        let mut pb = PackedB::default();
        // Read gate rows 0, H, 2H of the source; write columns 0, H, 3H of C.
        pb.pack(
            k,
            gate_spans(h, &[0, h, 2 * h]),
            Mat::transposed(&bt, k),
            Par::Seq,
        );
        pb.retarget(gate_spans(h, &[0, h, 3 * h]));
        assert_eq!(pb.panels(), (3 * h.div_ceil(LANES)).div_ceil(4));
        let mut c = vec![f32::NAN; rows * w];
        let mut covered = Vec::new();
        let cm = MatMut::rows(&mut c, w);
        packed_product(rows, Mat::rows(&a, k), &pb, cm, false, |c, p, r0, mr| {
            let units = gate_panel_units(p, 3, h);
            for r in r0..r0 + mr {
                for j in units.clone() {
                    for col in [j, h + j, 3 * h + j] {
                        assert!(
                            c[r * w + col].is_finite(),
                            "h={h} panel {p}: unit {j} early"
                        );
                    }
                }
            }
            if r0 == 0 {
                covered.extend(units);
            }
        });
        assert_eq!(
            covered,
            (0..h).collect::<Vec<_>>(),
            "h={h}: units covered once, in order"
        );
        for r in 0..rows {
            for j in 0..h {
                assert!(
                    c[r * w + 2 * h + j].is_nan(),
                    "h={h}: W_in x's columns were written"
                );
                for (g, col) in [j, h + j, 3 * h + j].into_iter().enumerate() {
                    let want = prod[r * 3 * h + g * h + j];
                    let got = f64::from(c[r * w + col]);
                    let tol = 2.0 * (k as f64 + 2.0) * f64::from(f32::EPSILON) * k as f64;
                    assert!((got - want).abs() <= tol, "h={h} row {r} gate {g} unit {j}");
                }
            }
        }
    }
}

#[test]
fn gemm_and_sgemm_match_naive_with_transposed_operands() {
    for m in SIZES {
        // 700 > KC: a strided A is blocked (see `k_block`).
        for k in [1, 3, 17, 64, 700] {
            for n in [1, 16, 33, 70] {
                let mut rng = Rng::new((m * 1000 + k * 10 + n) as u64);
                let a = rng.vec_f32(m * k, 1.0);
                let b = rng.vec_f32(k * n, 1.0);
                // Aᵀ stored row-major as K × M (like dGᵀ in dW = dGᵀ X), B as K × N.
                let at: Vec<f32> = (0..k * m).map(|e| a[(e % m) * k + e / m]).collect();
                let want = naive(m, k, n, |i, p| a[i * k + p], |p, j| b[p * n + j]);
                let mut pb = PackedB::default();
                pb.pack(k, contiguous_spans(n), Mat::rows(&b, n), Par::Seq);
                for (label, am) in [("A", Mat::rows(&a, k)), ("Aᵀ", Mat::transposed(&at, m))] {
                    let mut c = vec![f32::NAN; m * n];
                    let (dims, cm) = (GemmShape { m, k, n }, MatMut::rows(&mut c, n));
                    sgemm(dims, am, Mat::rows(&b, n), 0.0, cm, Par::Seq);
                    assert_close(
                        &format!("sgemm {label} m={m} k={k} n={n}"),
                        &c,
                        &want,
                        k,
                        k as f64,
                    );
                    for par in [Par::Seq, Par::rayon(3)] {
                        let mut c = vec![f32::NAN; m * n];
                        gemm(m, am, &pb, MatMut::rows(&mut c, n), false, par);
                        assert_close(
                            &format!("gemm {label} {par:?} m={m} k={k} n={n}"),
                            &c,
                            &want,
                            k,
                            k as f64,
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn gemm_and_sgemm_are_bit_identical_for_any_thread_count() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let (m, k, n) = (203, 77, 45);
    let mut rng = Rng::new(1);
    let (a, b) = (rng.vec_f32(m * k, 1.0), rng.vec_f32(k * n, 1.0));
    let mut pb = PackedB::default();
    pb.pack(k, contiguous_spans(n), Mat::rows(&b, n), Par::Seq);
    let run = |par: Par| {
        let (mut c1, mut c2) = (vec![0.0; m * n], vec![0.0; m * n]);
        let (am, bm) = (Mat::rows(&a, k), Mat::rows(&b, n));
        sgemm(
            GemmShape { m, k, n },
            am,
            bm,
            0.0,
            MatMut::rows(&mut c1, n),
            par,
        );
        gemm(m, am, &pb, MatMut::rows(&mut c2, n), false, par);
        [c1, c2].map(|c| c.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
    };
    let seq = run(Par::Seq);
    for t in [2, 3, 4, 7] {
        assert_eq!(
            pool.install(|| run(Par::rayon(t))),
            seq,
            "{t} tasks differ from Seq"
        );
    }
}

#[test]
fn dgemm_matches_a_naive_f64_product() {
    let mut rng = Rng::new(11);
    for (m, k, n) in [
        (0, 3, 2),
        (1, 0, 4),
        (1, 1, 1),
        (7, 5, 9),
        (17, 64, 33),
        (65, 130, 6),
    ] {
        let (a, b) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
        let mut c = vec![f64::NAN; m * n];
        dgemm(GemmShape { m, k, n }, &a, &b, &mut c);
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                let scale: f64 = (0..k).map(|p| (a[i * k + p] * b[p * n + j]).abs()).sum();
                let tol = 2.0 * (k as f64 + 2.0) * f64::EPSILON * scale;
                assert!(
                    (c[i * n + j] - want).abs() <= tol,
                    "{m}x{k}x{n}: C[{i}][{j}] = {}, want {want}",
                    c[i * n + j]
                );
            }
        }
    }
}
