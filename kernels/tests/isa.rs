//! Every instruction set computes the same bits: each kernel run on AVX-512, on AVX2 + FMA and on
//! the portable lanes (those this CPU has) gives bit-identical results (every NaN counting as
//! one), so a run on an AVX2 node equals the same run on an AVX-512 node.
//!
//! The instruction set is process-wide (`set_isa`), so this file is its own test binary with one
//! test that switches it.

mod common;

use common::{run_kernels, Problem, Rng};
use gradlab_kernels::gemm::{contiguous_spans, gate_spans, gemm, Mat, MatMut, PackedB};
use gradlab_kernels::isa::{isa, set_isa, Isa};
use gradlab_kernels::{norm, simd, Activation, Cell, Par, StackShape};

/// What each kernel computed, named, as bits.
type Named = Vec<(String, Vec<u64>)>;

/// Everything one instruction set computes, as bits.
fn outputs(pool: &rayon::ThreadPool) -> Named {
    let mut out: Named = Vec::new();
    let mut put_bits = |what: String, bits: Vec<u64>| out.push((what, bits));
    // A NaN's sign and payload are left open by IEEE 754 (which of two NaN operands an `fma`
    // returns depends on the operand order the compiler picked), so every NaN counts as one.
    let f32_bits = |v: &[f32]| -> Vec<u64> {
        v.iter()
            .map(|x| u64::from(if x.is_nan() { f32::NAN } else { *x }.to_bits()))
            .collect()
    };
    macro_rules! put {
        ($what:expr, $v:expr) => {
            put_bits($what, f32_bits($v))
        };
    }

    // Element-wise primitives on a grid through every range of exp and tanh, and special values.
    let mut grid: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.025).collect();
    grid.extend([
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        0.0,
        -0.0,
        88.72,
        88.73,
        -87.33,
        -87.34,
        1e-30,
        f32::MAX,
        f32::MIN,
    ]);
    grid.push(0.5); // a partial last vector
    for (name, f) in [
        ("exp", simd::exp_inplace as fn(&mut [f32])),
        ("tanh", simd::tanh_inplace),
        ("sigmoid", simd::sigmoid_inplace),
    ] {
        let mut x = grid.clone();
        f(&mut x);
        put!(name.into(), &x);
    }
    let mut rng = Rng::new(11);
    let x: Vec<f32> = rng.vec_f32(1003, 3.0);
    let mut y: Vec<f32> = rng.vec_f32(1003, 3.0);
    simd::axpy(0.37, &x, &mut y);
    put!("axpy".into(), &y);
    simd::scale(-1.7, &mut y);
    put!("scale".into(), &y);
    put!("dot".into(), &[simd::dot(&x, &y)]);
    put_bits("sum_squares".into(), vec![norm::sum_squares(&x).to_bits()]);
    let mut c = x.clone();
    let changed = norm::clip_value(&mut c, 1.5);
    put!(format!("clip_value ({changed} changed)"), &c);
    let (mut a, mut b) = (x.clone(), y.clone());
    let o = norm::clip_global_norm(&mut [&mut a, &mut b], 2.0);
    put!(format!("clip_global_norm {o:?}"), &[a, b].concat());

    // The packed product on shapes that hit and miss the tiles, vectors and panels, contiguous
    // and with LSTM gate spans, one thread and three.
    for (m, k, n) in [
        (1, 1, 1),
        (7, 5, 17),
        (13, 33, 130),
        (20, 128, 512),
        (6, 600, 64),
    ] {
        let a: Vec<f32> = rng.vec_f32(m * k, 1.0);
        let bm: Vec<f32> = rng.vec_f32(k * n, 1.0);
        for gated in [false, true] {
            let mut packed = PackedB::default();
            if gated && n % 4 == 0 {
                let h = n / 4;
                let offsets = [0, h, 2 * h, 3 * h];
                packed.pack(k, gate_spans(h, &offsets), Mat::rows(&bm, n), Par::Seq);
            } else {
                packed.pack(k, contiguous_spans(n), Mat::rows(&bm, n), Par::Seq);
            }
            for threads in [1, 3] {
                let mut c = vec![0.5f32; m * n];
                pool.install(|| {
                    gemm(
                        m,
                        Mat::rows(&a, k),
                        &packed,
                        MatMut::rows(&mut c, n),
                        true,
                        Par::rayon(threads),
                    )
                });
                put!(
                    format!("gemm {m}x{k}x{n} gated={gated} threads={threads}"),
                    &c
                );
            }
        }
    }

    // Whole forward and backward passes of every cell, with tails in every dimension.
    let cells = [
        Cell::Rnn(Activation::Tanh),
        Cell::Rnn(Activation::Relu),
        Cell::Lstm,
        Cell::Gru,
    ];
    for cell in cells {
        for (input, hidden, layers, t, batch) in
            [(3, 17, 2, 7, 5), (2, 128, 1, 12, 20), (80, 50, 2, 5, 33)]
        {
            let shape = StackShape {
                cell,
                input,
                hidden,
                layers,
            };
            let p = Problem::new(shape, t, batch, true, 5);
            for threads in [1, 2] {
                let k = pool.install(|| run_kernels(&p, usize::MAX, Par::rayon(threads)));
                put_bits(
                    format!("{cell:?} I={input} H={hidden} L={layers} T={t} B={batch} threads={threads}"),
                    k.bits()
                        .concat()
                        .into_iter()
                        .map(|b| if f64::from_bits(b).is_nan() { f64::NAN.to_bits() } else { b })
                        .collect(),
                );
            }
        }
    }
    out
}

#[test]
fn every_instruction_set_computes_the_same_bits() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let isas: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.available()).collect();
    println!(
        "instruction sets compared: {isas:?} (best: {})",
        Isa::best()
    );
    if isas.len() < 2 {
        println!("skipped: this CPU has only {isas:?}, nothing to compare");
        return;
    }
    let mut first: Option<(Isa, Named)> = None;
    for &i in &isas {
        set_isa(i).unwrap();
        assert_eq!(isa(), i);
        let got = outputs(&pool);
        match &first {
            None => first = Some((i, got)),
            Some((f, want)) => {
                assert_eq!(got.len(), want.len());
                for ((what, g), (_, w)) in got.iter().zip(want) {
                    assert_eq!(g.len(), w.len(), "{what}: {i} and {f} differ in length");
                    let differ: Vec<usize> = (0..g.len()).filter(|&e| g[e] != w[e]).collect();
                    assert!(
                        differ.is_empty(),
                        "{what}: {i} differs from {f} in {} of {} values, first at {} (bits {:#x} against {:#x})",
                        differ.len(),
                        g.len(),
                        differ[0],
                        g[differ[0]],
                        w[differ[0]]
                    );
                }
            }
        }
    }
    set_isa(Isa::best()).unwrap();
}
