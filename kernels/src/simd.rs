//! SIMD primitives on `f32x16` and their scalar twins: `exp`, `tanh`, `sigmoid`, `axpy`, `scale`,
//! `dot`.
//!
//! Every vector function has a scalar twin that performs the *same* sequence of IEEE operations
//! (including whether a multiply-add is fused), so the element-wise kernels and their twins agree
//! bit for bit; the tests check exactly that. The instruction set is chosen at compile time by
//! `wide` from the enabled target features (`target-cpu=native` by default, see the README):
//! AVX-512F uses one zmm register per `V`, AVX2 two ymm registers.
//!
//! Accuracy (checked in the tests against f64 on a dense grid of [-30, 30]): `exp` within 2 ulp
//! relative in its normal range, `tanh` and `sigmoid` within 3e-7 absolute. `exp` returns +inf
//! above ln(f32::MAX) and 0 below ln(f32::MIN_POSITIVE) (no subnormal results); `tanh(±inf) = ±1`,
//! `sigmoid(+inf) = 1`, `sigmoid(-inf) = 0` exactly; NaN propagates.

use std::array::from_fn;

use wide::{f32x16, i32x16};

/// The vector type of every kernel.
pub type V = f32x16;
/// Lanes of [`V`].
pub const LANES: usize = 16;

/// Whether `mul_add` rounds once. Scalar twins follow `wide`, which fuses when FMA is enabled.
pub const FUSED_MUL_ADD: bool = cfg!(any(target_feature = "fma", target_arch = "aarch64"));

/// `a * b + c`, rounded exactly as [`V::mul_add`] rounds it.
#[inline(always)]
pub fn fmadd(a: f32, b: f32, c: f32) -> f32 {
    if FUSED_MUL_ADD {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Loads `n <= LANES` values from `s[off..]`, padding with zeros.
#[inline(always)]
pub fn load(s: &[f32], off: usize, n: usize) -> V {
    if n == LANES {
        load_n::<true>(s, off, n)
    } else {
        load_n::<false>(s, off, n)
    }
}

/// [`load`] with the full/partial decision made at compile time: hot loops decide once per
/// chunk, so their full-vector body has no branch and no call (a call clobbers every vector
/// register and forces spills even when it is not taken).
#[inline(always)]
pub fn load_n<const FULL: bool>(s: &[f32], off: usize, n: usize) -> V {
    if FULL {
        V::new(s[off..off + LANES].try_into().unwrap())
    } else {
        let mut a = [0.0; LANES];
        a[..n].copy_from_slice(&s[off..off + n]);
        V::new(a)
    }
}

/// Stores the first `n <= LANES` lanes of `v` to `s[off..]`.
#[inline(always)]
pub fn store(s: &mut [f32], off: usize, n: usize, v: V) {
    if n == LANES {
        store_n::<true>(s, off, n, v)
    } else {
        store_n::<false>(s, off, n, v)
    }
}

/// [`store`] with the full/partial decision made at compile time (see [`load_n`]).
#[inline(always)]
pub fn store_n<const FULL: bool>(s: &mut [f32], off: usize, n: usize, v: V) {
    if FULL {
        // A constant length compiles to one vector store (a runtime one calls memmove).
        let dst: &mut [f32; LANES] = (&mut s[off..off + LANES]).try_into().unwrap();
        *dst = v.to_array();
    } else {
        s[off..off + n].copy_from_slice(&v.to_array()[..n]);
    }
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split so that k * LN2_HI is exact for |k| <= 2^9 (Cephes).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Above this, `exp` overflows f32.
const EXP_HI: f32 = 88.722_84;
/// Below this, `exp` is subnormal; it returns 0 there.
const EXP_LO: f32 = -87.336_55;
// Minimax polynomial for e^r - 1 - r on [-ln2/2, ln2/2] (Cephes expf).
const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    5e-1,
];
// Odd polynomial for tanh on |x| < 0.625 (Cephes tanhf).
const TANH_SMALL: f32 = 0.625;
const TANH_P: [f32; 5] = [
    -5.704_988_7e-3,
    2.063_909e-2,
    -5.373_971_6e-2,
    1.333_144_2e-1,
    -3.333_328e-1,
];

/// e^x for every lane of `R` vectors (see the module docs for range and accuracy).
///
/// Each step is applied to all `R` vectors before the next, so `R` independent dependency chains
/// interleave in the instruction stream: one chain alone is latency-bound (about 3x slower).
#[inline(always)]
pub fn exp_n<const R: usize>(x: [V; R]) -> [V; R] {
    let k: [V; R] = from_fn(|r| x[r].mul_add(V::splat(LOG2E), V::splat(0.5)).floor());
    // k can reach 128 just below EXP_HI; scale by 2^(k-1) * 2 there so 2^k stays representable.
    let top: [V; R] = from_fn(|r| k[r].simd_gt(V::splat(127.0)) & V::splat(1.0));
    let red: [V; R] = from_fn(|r| (-k[r]).mul_add(V::splat(LN2_HI), x[r]));
    let red: [V; R] = from_fn(|r| (-k[r]).mul_add(V::splat(LN2_LO), red[r]));
    let mut p = [V::splat(EXP_P[0]); R];
    for &c in &EXP_P[1..] {
        p = from_fn(|r| p[r].mul_add(red[r], V::splat(c)));
    }
    let p: [V; R] = from_fn(|r| p[r].mul_add(red[r] * red[r], red[r]) + V::splat(1.0));
    from_fn(|r| {
        let bits: i32x16 = ((k[r] - top[r]).round_int() + i32x16::splat(127)) << 23;
        let y = p[r] * wide::bytemuck::cast::<i32x16, V>(bits) * (V::splat(1.0) + top[r]);
        let y = x[r]
            .simd_gt(V::splat(EXP_HI))
            .select(V::splat(f32::INFINITY), y);
        x[r].simd_lt(V::splat(EXP_LO)).select(V::ZERO, y)
    })
}

/// e^x for every lane.
#[inline(always)]
pub fn exp_v(x: V) -> V {
    exp_n([x])[0]
}

/// Scalar twin of [`exp_v`].
#[inline(always)]
pub fn exp_s(x: f32) -> f32 {
    let k = fmadd(x, LOG2E, 0.5).floor();
    let top = if k > 127.0 { 1.0 } else { 0.0 };
    let r = fmadd(-k, LN2_HI, x);
    let r = fmadd(-k, LN2_LO, r);
    let mut p = EXP_P[0];
    for &c in &EXP_P[1..] {
        p = fmadd(p, r, c);
    }
    let p = fmadd(p, r * r, r) + 1.0;
    // `as` saturates and maps NaN to 0, as `round_int` does; the exponent stays in [-126, 127].
    let bits = (((k - top) as i32).wrapping_add(127) as u32) << 23;
    let y = p * f32::from_bits(bits) * (1.0 + top);
    if x > EXP_HI {
        f32::INFINITY
    } else if x < EXP_LO {
        0.0
    } else {
        y
    }
}

/// Logistic sigmoid from `e = exp(-x)`: 1 / (1 + e).
#[inline(always)]
pub fn sigmoid_from_exp(e: V) -> V {
    V::splat(1.0) / (V::splat(1.0) + e)
}

/// Logistic sigmoid 1 / (1 + e^-x).
#[inline(always)]
pub fn sigmoid_v(x: V) -> V {
    sigmoid_from_exp(exp_v(-x))
}

/// Scalar twin of [`sigmoid_v`].
#[inline(always)]
pub fn sigmoid_s(x: f32) -> f32 {
    1.0 / (1.0 + exp_s(-x))
}

/// The argument of the exponential that [`tanh_from_exp`] needs: 2|x|.
#[inline(always)]
pub fn tanh_exp_arg(x: V) -> V {
    let ax = x.abs();
    ax + ax
}

/// Hyperbolic tangent from `e = exp(2|x|)`: an odd polynomial for |x| < 0.625, and
/// sign(x) (1 - 2 / (e + 1)) elsewhere.
#[inline(always)]
pub fn tanh_from_exp(x: V, e: V) -> V {
    let z = x * x;
    let mut p = V::splat(TANH_P[0]);
    for &c in &TANH_P[1..] {
        p = p.mul_add(z, V::splat(c));
    }
    let small = (p * z).mul_add(x, x);
    let large = V::splat(1.0) - V::splat(2.0) / (e + V::splat(1.0));
    let large = large | (x & V::splat(-0.0));
    x.abs().simd_lt(V::splat(TANH_SMALL)).select(small, large)
}

/// Hyperbolic tangent.
#[inline(always)]
pub fn tanh_v(x: V) -> V {
    tanh_from_exp(x, exp_v(tanh_exp_arg(x)))
}

/// Scalar twin of [`tanh_v`].
#[inline(always)]
pub fn tanh_s(x: f32) -> f32 {
    let z = x * x;
    let mut p = TANH_P[0];
    for &c in &TANH_P[1..] {
        p = fmadd(p, z, c);
    }
    let ax = x.abs();
    if ax < TANH_SMALL {
        fmadd(p * z, x, x)
    } else {
        let large = 1.0 - 2.0 / (exp_s(ax + ax) + 1.0);
        f32::from_bits(large.to_bits() | (x.to_bits() & 0x8000_0000))
    }
}

/// Applies a vector function to a slice in place, `LANES` at a time, the tail zero-padded.
#[inline(always)]
fn map_v(xs: &mut [f32], f: impl Fn(V) -> V) {
    for off in (0..xs.len()).step_by(LANES) {
        let n = LANES.min(xs.len() - off);
        store(xs, off, n, f(load(xs, off, n)));
    }
}

/// `xs[i] = exp(xs[i])`.
pub fn exp_inplace(xs: &mut [f32]) {
    map_v(xs, exp_v)
}
/// Scalar twin of [`exp_inplace`].
pub fn exp_inplace_scalar(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = exp_s(*x))
}
/// `xs[i] = tanh(xs[i])`.
pub fn tanh_inplace(xs: &mut [f32]) {
    map_v(xs, tanh_v)
}
/// Scalar twin of [`tanh_inplace`].
pub fn tanh_inplace_scalar(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = tanh_s(*x))
}
/// `xs[i] = sigmoid(xs[i])`.
pub fn sigmoid_inplace(xs: &mut [f32]) {
    map_v(xs, sigmoid_v)
}
/// Scalar twin of [`sigmoid_inplace`].
pub fn sigmoid_inplace_scalar(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = sigmoid_s(*x))
}

/// `y += alpha * x`.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy: x and y differ in length");
    let a = V::splat(alpha);
    for off in (0..y.len()).step_by(LANES) {
        let n = LANES.min(y.len() - off);
        store(y, off, n, a.mul_add(load(x, off, n), load(y, off, n)));
    }
}
/// Scalar twin of [`axpy`].
pub fn axpy_scalar(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy: x and y differ in length");
    y.iter_mut()
        .zip(x)
        .for_each(|(y, &x)| *y = fmadd(alpha, x, *y));
}

/// `x *= alpha`.
pub fn scale(alpha: f32, x: &mut [f32]) {
    map_v(x, |v| v * V::splat(alpha))
}
/// Scalar twin of [`scale`].
pub fn scale_scalar(alpha: f32, x: &mut [f32]) {
    x.iter_mut().for_each(|x| *x *= alpha)
}

/// Dot product, accumulated in `LANES` partial sums that are added in lane order.
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len(), "dot: x and y differ in length");
    let mut acc = V::ZERO;
    for off in (0..x.len()).step_by(LANES) {
        let n = LANES.min(x.len() - off);
        acc = load(x, off, n).mul_add(load(y, off, n), acc);
    }
    acc.as_array().iter().sum()
}
/// Scalar twin of [`dot`]: a plain sequential sum (so it differs from [`dot`] by rounding only).
pub fn dot_scalar(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len(), "dot: x and y differ in length");
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}
