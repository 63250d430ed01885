//! SIMD primitives on 16-lane vectors and their scalar twins: `exp`, `tanh`, `sigmoid`, `axpy`,
//! `scale`, `dot`.
//!
//! Every vector function has a scalar twin that performs the *same* sequence of IEEE operations
//! (every multiply-add fused), so the element-wise kernels and their twins agree bit for bit; the
//! tests check exactly that. The vector functions are generic over [`Vf32`] and the slice
//! functions dispatch on the instruction set chosen at run time ([`crate::isa`]).
//!
//! Accuracy (checked in the tests against f64 on a dense grid of [-30, 30]): `exp` within 2 ulp
//! relative in its normal range, `tanh` and `sigmoid` within 3e-7 absolute. `exp` returns +inf
//! above ln(f32::MAX) and 0 below ln(f32::MIN_POSITIVE) (no subnormal results); `tanh(±inf) = ±1`,
//! `sigmoid(+inf) = 1`, `sigmoid(-inf) = 0` exactly; NaN propagates.

use crate::isa::dispatch;
pub use crate::vec::{Vf32, LANES};

/// `a * b + c` rounded once, as every vector multiply-add rounds it.
#[inline(always)]
pub fn fmadd(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
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

/// `[e(0), ..., e(R - 1)]` (with `$r` the index) by a plain loop, the expression written out in
/// it: a closure (or `std::array::from_fn`) would be compiled as a function of its own without
/// the dispatched kernel's target features, and call every intrinsic instead of inlining it.
macro_rules! lanes {
    (|$r:ident| $e:expr) => {{
        let mut out = [V::zero(); R];
        for ($r, o) in out.iter_mut().enumerate() {
            *o = $e;
        }
        out
    }};
}

/// e^x for every lane of `R` vectors (see the module docs for range and accuracy).
///
/// Each step is applied to all `R` vectors before the next, so `R` independent dependency chains
/// interleave in the instruction stream: one chain alone is latency-bound (about 3x slower).
#[inline(always)]
pub fn exp_n<V: Vf32, const R: usize>(x: [V; R]) -> [V; R] {
    let k = lanes!(|r| x[r].mul_add(V::splat(LOG2E), V::splat(0.5)).floor());
    // k can reach 128 just below EXP_HI; scale by 2^(k-1) * 2 there so 2^k stays representable.
    let top = lanes!(|r| V::mask_one(k[r].gt(V::splat(127.0))));
    let red = lanes!(|r| (-k[r]).mul_add(V::splat(LN2_HI), x[r]));
    let red = lanes!(|r| (-k[r]).mul_add(V::splat(LN2_LO), red[r]));
    let mut p = [V::splat(EXP_P[0]); R];
    for &c in &EXP_P[1..] {
        p = lanes!(|r| p[r].mul_add(red[r], V::splat(c)));
    }
    let p = lanes!(|r| p[r].mul_add(red[r] * red[r], red[r]) + V::splat(1.0));
    lanes!(|r| {
        let y = p[r] * V::pow2i(k[r] - top[r]) * (V::splat(1.0) + top[r]);
        let y = V::select(x[r].gt(V::splat(EXP_HI)), V::splat(f32::INFINITY), y);
        V::select(x[r].lt(V::splat(EXP_LO)), V::zero(), y)
    })
}

/// e^x for every lane.
#[inline(always)]
pub fn exp_v<V: Vf32>(x: V) -> V {
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
    let y = p * crate::vec::pow2i_scalar(k - top) * (1.0 + top);
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
pub fn sigmoid_from_exp<V: Vf32>(e: V) -> V {
    V::splat(1.0) / (V::splat(1.0) + e)
}

/// Logistic sigmoid 1 / (1 + e^-x).
#[inline(always)]
pub fn sigmoid_v<V: Vf32>(x: V) -> V {
    sigmoid_from_exp(exp_v(-x))
}

/// Scalar twin of [`sigmoid_v`].
#[inline(always)]
pub fn sigmoid_s(x: f32) -> f32 {
    1.0 / (1.0 + exp_s(-x))
}

/// The argument of the exponential that [`tanh_from_exp`] needs: 2|x|.
#[inline(always)]
pub fn tanh_exp_arg<V: Vf32>(x: V) -> V {
    let ax = x.abs();
    ax + ax
}

/// Hyperbolic tangent from `e = exp(2|x|)`: an odd polynomial for |x| < 0.625, and
/// sign(x) (1 - 2 / (e + 1)) elsewhere.
#[inline(always)]
pub fn tanh_from_exp<V: Vf32>(x: V, e: V) -> V {
    let z = x * x;
    let mut p = V::splat(TANH_P[0]);
    for &c in &TANH_P[1..] {
        p = p.mul_add(z, V::splat(c));
    }
    let small = (p * z).mul_add(x, x);
    let large = V::splat(1.0) - V::splat(2.0) / (e + V::splat(1.0));
    V::select(x.abs().lt(V::splat(TANH_SMALL)), small, large.or_sign_of(x))
}

/// Hyperbolic tangent.
#[inline(always)]
pub fn tanh_v<V: Vf32>(x: V) -> V {
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
fn map_v<V: Vf32>(xs: &mut [f32], f: impl Fn(V) -> V) {
    for off in (0..xs.len()).step_by(LANES) {
        let n = LANES.min(xs.len() - off);
        V::store(xs, off, n, f(V::load(xs, off, n)));
    }
}

#[inline(always)]
fn exp_slice<V: Vf32>(xs: &mut [f32]) {
    map_v::<V>(xs, exp_v)
}
#[inline(always)]
fn tanh_slice<V: Vf32>(xs: &mut [f32]) {
    map_v::<V>(xs, tanh_v)
}
#[inline(always)]
fn sigmoid_slice<V: Vf32>(xs: &mut [f32]) {
    map_v::<V>(xs, sigmoid_v)
}
#[inline(always)]
fn scale_slice<V: Vf32>(alpha: f32, xs: &mut [f32]) {
    let a = V::splat(alpha);
    for off in (0..xs.len()).step_by(LANES) {
        let n = LANES.min(xs.len() - off);
        V::store(xs, off, n, V::load(xs, off, n) * a);
    }
}

#[inline(always)]
fn axpy_slice<V: Vf32>(alpha: f32, x: &[f32], y: &mut [f32]) {
    let a = V::splat(alpha);
    for off in (0..y.len()).step_by(LANES) {
        let n = LANES.min(y.len() - off);
        V::store(y, off, n, a.mul_add(V::load(x, off, n), V::load(y, off, n)));
    }
}

#[inline(always)]
fn dot_slice<V: Vf32>(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = V::zero();
    for off in (0..x.len()).step_by(LANES) {
        let n = LANES.min(x.len() - off);
        acc = V::load(x, off, n).mul_add(V::load(y, off, n), acc);
    }
    acc.sum_lanes()
}

dispatch! {
    /// `xs[i] = exp(xs[i])`.
    pub fn exp_inplace(xs: &mut [f32]) = exp_slice;
}
/// Scalar twin of [`exp_inplace`].
pub fn exp_inplace_scalar(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = exp_s(*x))
}
dispatch! {
    /// `xs[i] = tanh(xs[i])`.
    pub fn tanh_inplace(xs: &mut [f32]) = tanh_slice;
}
/// Scalar twin of [`tanh_inplace`].
pub fn tanh_inplace_scalar(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = tanh_s(*x))
}
dispatch! {
    /// `xs[i] = sigmoid(xs[i])`.
    pub fn sigmoid_inplace(xs: &mut [f32]) = sigmoid_slice;
}
/// Scalar twin of [`sigmoid_inplace`].
pub fn sigmoid_inplace_scalar(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = sigmoid_s(*x))
}

dispatch! {
    fn axpy_dispatched(alpha: f32, x: &[f32], y: &mut [f32]) = axpy_slice;
}
/// `y += alpha * x`.
///
/// # Panics
/// If `x` and `y` differ in length.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy: x and y differ in length");
    axpy_dispatched(alpha, x, y)
}
/// Scalar twin of [`axpy`].
pub fn axpy_scalar(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy: x and y differ in length");
    y.iter_mut()
        .zip(x)
        .for_each(|(y, &x)| *y = fmadd(alpha, x, *y));
}

dispatch! {
    /// `x *= alpha`.
    pub fn scale(alpha: f32, x: &mut [f32]) = scale_slice;
}
/// Scalar twin of [`scale`].
pub fn scale_scalar(alpha: f32, x: &mut [f32]) {
    x.iter_mut().for_each(|x| *x *= alpha)
}

dispatch! {
    fn dot_dispatched(x: &[f32], y: &[f32]) -> f32 = dot_slice;
}
/// Dot product, accumulated in `LANES` partial sums that are added in lane order.
///
/// # Panics
/// If `x` and `y` differ in length.
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len(), "dot: x and y differ in length");
    dot_dispatched(x, y)
}
/// Scalar twin of [`dot`]: a plain sequential sum (so it differs from [`dot`] by rounding only).
pub fn dot_scalar(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len(), "dot: x and y differ in length");
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}
