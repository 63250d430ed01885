//! Overflow-safe L2 norms over many slices, and gradient clipping by global norm and by value.
//!
//! Squares are accumulated in f64: an f32 squared can neither overflow (f32::MAX² ≈ 1.2e77) nor
//! underflow (the smallest f32 subnormal squared ≈ 2e-90) in f64, so no scaling pass is needed and
//! the norm of any finite f32 data is exact to f64 rounding. The accumulation uses `LANES`
//! independent sums combined in a fixed order, so the result does not depend on threads.

use crate::isa::dispatch;
use crate::simd::{Vf32, LANES};

/// Σ x² in plain Rust, which the compiler vectorizes for each instruction set (`V` only picks
/// the copy: the order of the sums is fixed here).
#[inline(always)]
#[allow(clippy::extra_unused_type_parameters)] // `V` selects the dispatched copy
fn sum_squares_imp<V: Vf32>(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            let v = f64::from(v);
            *a += v * v;
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        let v = f64::from(v);
        *a += v * v;
    }
    acc.iter().sum()
}

dispatch! {
    /// Σ x², accumulated in f64 over `LANES` partial sums added in lane order.
    pub fn sum_squares(x: &[f32]) -> f64 = sum_squares_imp;
}

/// Scalar twin of [`sum_squares`]: one sequential f64 sum.
pub fn sum_squares_scalar(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

/// The L2 norm of all slices taken together, as if they were one vector.
pub fn global_norm(slices: &[&[f32]]) -> f64 {
    slices.iter().map(|s| sum_squares(s)).sum::<f64>().sqrt()
}

/// Scalar twin of [`global_norm`].
pub fn global_norm_scalar(slices: &[&[f32]]) -> f64 {
    slices
        .iter()
        .map(|s| sum_squares_scalar(s))
        .sum::<f64>()
        .sqrt()
}

/// What a clipping call did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipOutcome {
    /// Global L2 norm before clipping (non-finite if the gradient is).
    pub norm_before: f64,
    /// Global L2 norm after clipping.
    pub norm_after: f64,
    /// Whether any element was changed.
    pub clipped: bool,
}

fn scale_all(slices: &mut [&mut [f32]], s: f32) {
    for x in slices.iter_mut() {
        crate::simd::scale(s, x);
    }
}

fn norm_of(slices: &[&mut [f32]]) -> f64 {
    slices.iter().map(|s| sum_squares(s)).sum::<f64>().sqrt()
}

/// Clip by global norm (Pascanu et al. 2013, Algorithm 1): if ‖g‖ > τ, g *= τ/‖g‖.
///
/// The result never exceeds τ: the f32 scale is rounded down and, should rounding of the products
/// still leave the norm above τ, it is shrunk by one more ulp-sized step (at most a few times).
/// A non-finite norm is left alone (the caller records divergence).
///
/// # Panics
/// If `max_norm` is not finite and positive.
pub fn clip_global_norm(slices: &mut [&mut [f32]], max_norm: f32) -> ClipOutcome {
    assert!(
        max_norm.is_finite() && max_norm > 0.0,
        "clip threshold must be finite and > 0, got {max_norm}"
    );
    let tau = f64::from(max_norm);
    let before = norm_of(slices);
    if !before.is_finite() || before <= tau {
        return ClipOutcome {
            norm_before: before,
            norm_after: before,
            clipped: false,
        };
    }
    let mut s = (tau / before) as f32;
    if f64::from(s) > tau / before {
        s = s.next_down();
    }
    scale_all(slices, s);
    let mut after = norm_of(slices);
    while after > tau {
        scale_all(slices, 1.0f32.next_down());
        after = norm_of(slices);
    }
    ClipOutcome {
        norm_before: before,
        norm_after: after,
        clipped: true,
    }
}

#[inline(always)]
fn clip_value_imp<V: Vf32>(x: &mut [f32], max_abs: f32) -> usize {
    let (hi, lo) = (V::splat(max_abs), V::splat(-max_abs));
    let mut changed = 0;
    for off in (0..x.len()).step_by(LANES) {
        let n = LANES.min(x.len() - off);
        let v = V::load(x, off, n);
        let (above, below) = (v.gt(hi), v.lt(lo));
        changed += V::mask_count(V::mask_or(above, below)) as usize;
        V::store(x, off, n, V::select(below, lo, V::select(above, hi, v)));
    }
    changed
}

dispatch! {
    fn clip_value_dispatched(x: &mut [f32], max_abs: f32) -> usize = clip_value_imp;
}

/// Clamps every element to [-τ, τ] (NaN stays NaN); returns how many elements were changed.
///
/// # Panics
/// If `max_abs` is not finite and positive.
pub fn clip_value(x: &mut [f32], max_abs: f32) -> usize {
    assert!(
        max_abs.is_finite() && max_abs > 0.0,
        "clip threshold must be finite and > 0, got {max_abs}"
    );
    clip_value_dispatched(x, max_abs)
}

/// Scalar twin of [`clip_value`].
pub fn clip_value_scalar(x: &mut [f32], max_abs: f32) -> usize {
    assert!(
        max_abs.is_finite() && max_abs > 0.0,
        "clip threshold must be finite and > 0, got {max_abs}"
    );
    let mut changed = 0;
    for v in x.iter_mut() {
        if *v > max_abs {
            *v = max_abs;
            changed += 1;
        } else if *v < -max_abs {
            *v = -max_abs;
            changed += 1;
        }
    }
    changed
}
