//! The 16-lane f32 vector every kernel is written on, once per instruction set.
//!
//! Kernels are generic over [`Vf32`] and run through [`dispatch!`](crate::isa): the dispatcher
//! enters a copy of the kernel compiled with the target features of the instruction set chosen
//! at run time ([`isa`](crate::isa::isa)) and instantiated with its vector type:
//!
//! - `Z16`: one `__m512` (AVX-512F), 32 registers;
//! - `Y16`: two `__m256` (AVX2 + FMA), 16 registers;
//! - [`P16`]: sixteen `f32` lanes in plain Rust, for any other CPU (and as the portable
//!   reference).
//!
//! Every operation is lane-wise and IEEE-exact (add, sub, mul, div, fused multiply-add, floor,
//! comparisons, bit operations), so the three types compute bit-identical results: a run on an
//! AVX2 node equals the same run on an AVX-512 node (the tests check it on every kernel). What
//! differs is only how a kernel blocks its work to fit the registers ([`Vf32::WIDE`]).
//!
//! `Z16` and `Y16` are private to the crate and only ever created inside the functions that the
//! dispatcher enters on a CPU with their features, which is what makes their `unsafe`
//! intrinsic calls sound.

use std::array::from_fn;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// Lanes of every vector type.
pub const LANES: usize = 16;

/// A vector of [`LANES`] f32 on one instruction set. Comparisons give a [`Vf32::Mask`]; they are
/// ordered (false when either side is NaN).
pub trait Vf32:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// The result of a lane-wise comparison.
    type Mask: Copy;
    /// Whether one vector is one register out of 32 (AVX-512): kernels then keep 24
    /// accumulators (a 6 × 64 GEMM tile) or 8 exponentials (two batch rows of LSTM gates) in
    /// flight. Otherwise (AVX2: two of 16 registers) a tile is 6 × 16 and gate math goes row by
    /// row; the result is the same either way.
    const WIDE: bool;
    fn zero() -> Self;
    fn splat(x: f32) -> Self;
    fn from_array(a: [f32; LANES]) -> Self;
    fn to_array(self) -> [f32; LANES];
    /// Reads `LANES` values at `p`.
    ///
    /// # Safety
    /// `p..p + LANES` is readable.
    unsafe fn read(p: *const f32) -> Self;
    /// Writes the lanes to `p..p + LANES`.
    ///
    /// # Safety
    /// `p..p + LANES` is writable.
    unsafe fn write(self, p: *mut f32);
    /// `self * b + c`, rounded once.
    fn mul_add(self, b: Self, c: Self) -> Self;
    fn floor(self) -> Self;
    fn abs(self) -> Self;
    /// `self` with the sign bit of `x` or-ed in (`self | (x & -0.0)`).
    fn or_sign_of(self, x: Self) -> Self;
    /// 2^k for integral `k` in [-126, 127]: the bits `(k as i32 + 127) << 23`.
    fn pow2i(k: Self) -> Self;
    fn gt(self, o: Self) -> Self::Mask;
    fn lt(self, o: Self) -> Self::Mask;
    fn mask_or(a: Self::Mask, b: Self::Mask) -> Self::Mask;
    /// How many lanes of `m` are set.
    fn mask_count(m: Self::Mask) -> u32;
    /// 1.0 where `m` is set, 0.0 elsewhere.
    fn mask_one(m: Self::Mask) -> Self;
    /// `t` where `m` is set, `f` elsewhere.
    fn select(m: Self::Mask, t: Self, f: Self) -> Self;

    /// Loads `n <= LANES` values from `s[off..]`, padding with zeros, the full/partial decision
    /// made at compile time: hot loops decide once per chunk, so their full-vector body has no
    /// branch and no call (a call clobbers every vector register and forces spills even when it
    /// is not taken).
    #[inline(always)]
    fn load_n<const FULL: bool>(s: &[f32], off: usize, n: usize) -> Self {
        if FULL {
            Self::from_array(s[off..off + LANES].try_into().unwrap())
        } else {
            let mut a = [0.0; LANES];
            a[..n].copy_from_slice(&s[off..off + n]);
            Self::from_array(a)
        }
    }

    /// Stores the first `n <= LANES` lanes of `v` to `s[off..]` (see [`Vf32::load_n`]).
    #[inline(always)]
    fn store_n<const FULL: bool>(s: &mut [f32], off: usize, n: usize, v: Self) {
        if FULL {
            let dst: &mut [f32; LANES] = (&mut s[off..off + LANES]).try_into().unwrap();
            // SAFETY: `dst` is LANES writable f32.
            unsafe { v.write(dst.as_mut_ptr()) }
        } else {
            s[off..off + n].copy_from_slice(&v.to_array()[..n]);
        }
    }

    /// [`Vf32::load_n`] with the decision made at run time.
    #[inline(always)]
    fn load(s: &[f32], off: usize, n: usize) -> Self {
        if n == LANES {
            Self::load_n::<true>(s, off, n)
        } else {
            Self::load_n::<false>(s, off, n)
        }
    }

    /// [`Vf32::store_n`] with the decision made at run time.
    #[inline(always)]
    fn store(s: &mut [f32], off: usize, n: usize, v: Self) {
        if n == LANES {
            Self::store_n::<true>(s, off, n, v)
        } else {
            Self::store_n::<false>(s, off, n, v)
        }
    }

    /// The sum of the lanes, added in lane order.
    #[inline(always)]
    fn sum_lanes(self) -> f32 {
        self.to_array().iter().sum()
    }
}

/// The bits of 2^k for an integral `k` as [`Vf32::pow2i`] forms them: `as` saturates and maps
/// NaN to 0 where the SIMD conversions give `i32::MIN`; both only where the kernels discard the
/// result (out-of-range or NaN arguments of `exp`, whose polynomial is then NaN or replaced).
#[inline(always)]
pub(crate) fn pow2i_scalar(k: f32) -> f32 {
    f32::from_bits(((k as i32).wrapping_add(127) as u32) << 23)
}

/// Sixteen lanes in plain Rust: the portable vector, for CPUs without AVX2 + FMA (and as the
/// reference the others are tested against). Multiply-adds are fused (`f32::mul_add`), in
/// software where the CPU has no FMA: correct and identical to the others, and slow.
#[derive(Clone, Copy, Debug)]
pub struct P16([f32; LANES]);

impl P16 {
    #[inline(always)]
    fn map(self, f: impl Fn(f32) -> f32) -> Self {
        P16(from_fn(|l| f(self.0[l])))
    }
    #[inline(always)]
    fn zip(self, o: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        P16(from_fn(|l| f(self.0[l], o.0[l])))
    }
}

macro_rules! p16_binop {
    ($tr:ident, $f:ident, $op:tt) => {
        impl $tr for P16 {
            type Output = P16;
            #[inline(always)]
            fn $f(self, o: P16) -> P16 {
                self.zip(o, |a, b| a $op b)
            }
        }
    };
}
p16_binop!(Add, add, +);
p16_binop!(Sub, sub, -);
p16_binop!(Mul, mul, *);
p16_binop!(Div, div, /);

impl Neg for P16 {
    type Output = P16;
    #[inline(always)]
    fn neg(self) -> P16 {
        self.map(|a| -a)
    }
}

impl Vf32 for P16 {
    type Mask = [bool; LANES];
    const WIDE: bool = false;
    #[inline(always)]
    fn zero() -> Self {
        P16([0.0; LANES])
    }
    #[inline(always)]
    fn splat(x: f32) -> Self {
        P16([x; LANES])
    }
    #[inline(always)]
    fn from_array(a: [f32; LANES]) -> Self {
        P16(a)
    }
    #[inline(always)]
    fn to_array(self) -> [f32; LANES] {
        self.0
    }
    #[inline(always)]
    unsafe fn read(p: *const f32) -> Self {
        // SAFETY: the caller guarantees LANES readable f32 at p.
        P16(unsafe { p.cast::<[f32; LANES]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn write(self, p: *mut f32) {
        // SAFETY: the caller guarantees LANES writable f32 at p.
        unsafe { p.cast::<[f32; LANES]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        P16(from_fn(|l| self.0[l].mul_add(b.0[l], c.0[l])))
    }
    #[inline(always)]
    fn floor(self) -> Self {
        self.map(f32::floor)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        self.map(f32::abs)
    }
    #[inline(always)]
    fn or_sign_of(self, x: Self) -> Self {
        self.zip(x, |a, x| {
            f32::from_bits(a.to_bits() | (x.to_bits() & 0x8000_0000))
        })
    }
    #[inline(always)]
    fn pow2i(k: Self) -> Self {
        k.map(pow2i_scalar)
    }
    #[inline(always)]
    fn gt(self, o: Self) -> Self::Mask {
        from_fn(|l| self.0[l] > o.0[l])
    }
    #[inline(always)]
    fn lt(self, o: Self) -> Self::Mask {
        from_fn(|l| self.0[l] < o.0[l])
    }
    #[inline(always)]
    fn mask_or(a: Self::Mask, b: Self::Mask) -> Self::Mask {
        from_fn(|l| a[l] | b[l])
    }
    #[inline(always)]
    fn mask_count(m: Self::Mask) -> u32 {
        m.iter().map(|&b| u32::from(b)).sum()
    }
    #[inline(always)]
    fn mask_one(m: Self::Mask) -> Self {
        P16(from_fn(|l| if m[l] { 1.0 } else { 0.0 }))
    }
    #[inline(always)]
    fn select(m: Self::Mask, t: Self, f: Self) -> Self {
        P16(from_fn(|l| if m[l] { t.0[l] } else { f.0[l] }))
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Y16, Z16};

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! `Z16` (AVX-512F) and `Y16` (AVX2 + FMA). Every intrinsic call below is sound because a
    //! value of either type exists only inside a function that the dispatcher enters on a CPU
    //! with its features (see the module docs): the `SAFETY` comments say "features".

    use std::arch::x86_64::*;
    use std::ops::{Add, Div, Mul, Neg, Sub};

    use super::{Vf32, LANES};

    /// Sixteen lanes in one zmm register (AVX-512F).
    #[derive(Clone, Copy, Debug)]
    pub struct Z16(__m512);

    /// Sixteen lanes in two ymm registers (AVX2 + FMA): lanes 0-7 in the first.
    #[derive(Clone, Copy, Debug)]
    pub struct Y16(__m256, __m256);

    macro_rules! binop {
        ($ty:ident, $tr:ident, $f:ident, $z:ident, $y:ident) => {
            impl $tr for $ty {
                type Output = $ty;
                #[inline(always)]
                fn $f(self, o: $ty) -> $ty {
                    binop!(@apply $ty, self, o, $z, $y)
                }
            }
        };
        (@apply Z16, $a:ident, $b:ident, $z:ident, $y:ident) => {
            // SAFETY: features (module docs).
            Z16(unsafe { $z($a.0, $b.0) })
        };
        (@apply Y16, $a:ident, $b:ident, $z:ident, $y:ident) => {
            // SAFETY: features (module docs).
            unsafe { Y16($y($a.0, $b.0), $y($a.1, $b.1)) }
        };
    }
    binop!(Z16, Add, add, _mm512_add_ps, _mm256_add_ps);
    binop!(Z16, Sub, sub, _mm512_sub_ps, _mm256_sub_ps);
    binop!(Z16, Mul, mul, _mm512_mul_ps, _mm256_mul_ps);
    binop!(Z16, Div, div, _mm512_div_ps, _mm256_div_ps);
    binop!(Y16, Add, add, _mm512_add_ps, _mm256_add_ps);
    binop!(Y16, Sub, sub, _mm512_sub_ps, _mm256_sub_ps);
    binop!(Y16, Mul, mul, _mm512_mul_ps, _mm256_mul_ps);
    binop!(Y16, Div, div, _mm512_div_ps, _mm256_div_ps);

    impl Neg for Z16 {
        type Output = Z16;
        #[inline(always)]
        fn neg(self) -> Z16 {
            // SAFETY: features (module docs).
            unsafe {
                Z16(_mm512_castsi512_ps(_mm512_xor_si512(
                    _mm512_castps_si512(self.0),
                    _mm512_set1_epi32(i32::MIN),
                )))
            }
        }
    }

    impl Neg for Y16 {
        type Output = Y16;
        #[inline(always)]
        fn neg(self) -> Y16 {
            // SAFETY: features (module docs).
            unsafe {
                let s = _mm256_set1_ps(-0.0);
                Y16(_mm256_xor_ps(self.0, s), _mm256_xor_ps(self.1, s))
            }
        }
    }

    impl Vf32 for Z16 {
        type Mask = __mmask16;
        const WIDE: bool = true;
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: features (module docs).
            Z16(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            // SAFETY: features (module docs).
            Z16(unsafe { _mm512_set1_ps(x) })
        }
        #[inline(always)]
        fn from_array(a: [f32; LANES]) -> Self {
            // SAFETY: features (module docs); `a` is LANES readable f32.
            Z16(unsafe { _mm512_loadu_ps(a.as_ptr()) })
        }
        #[inline(always)]
        fn to_array(self) -> [f32; LANES] {
            let mut a = [0.0; LANES];
            // SAFETY: features (module docs); `a` is LANES writable f32.
            unsafe { _mm512_storeu_ps(a.as_mut_ptr(), self.0) };
            a
        }
        #[inline(always)]
        unsafe fn read(p: *const f32) -> Self {
            // SAFETY: features (module docs); the caller guarantees LANES readable f32.
            Z16(unsafe { _mm512_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn write(self, p: *mut f32) {
            // SAFETY: features (module docs); the caller guarantees LANES writable f32.
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: features (module docs).
            Z16(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn floor(self) -> Self {
            // Round toward -inf (imm 0b01), exceptions suppressed (0b1000).
            // SAFETY: features (module docs).
            Z16(unsafe { _mm512_roundscale_ps::<0x09>(self.0) })
        }
        #[inline(always)]
        fn abs(self) -> Self {
            // SAFETY: features (module docs).
            Z16(unsafe { _mm512_abs_ps(self.0) })
        }
        #[inline(always)]
        fn or_sign_of(self, x: Self) -> Self {
            // SAFETY: features (module docs).
            unsafe {
                let sign = _mm512_and_si512(_mm512_castps_si512(x.0), _mm512_set1_epi32(i32::MIN));
                Z16(_mm512_castsi512_ps(_mm512_or_si512(
                    _mm512_castps_si512(self.0),
                    sign,
                )))
            }
        }
        #[inline(always)]
        fn pow2i(k: Self) -> Self {
            // SAFETY: features (module docs).
            unsafe {
                let e = _mm512_add_epi32(_mm512_cvtps_epi32(k.0), _mm512_set1_epi32(127));
                Z16(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(e)))
            }
        }
        #[inline(always)]
        fn gt(self, o: Self) -> Self::Mask {
            // SAFETY: features (module docs).
            unsafe { _mm512_cmp_ps_mask::<_CMP_GT_OQ>(self.0, o.0) }
        }
        #[inline(always)]
        fn lt(self, o: Self) -> Self::Mask {
            // SAFETY: features (module docs).
            unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, o.0) }
        }
        #[inline(always)]
        fn mask_or(a: Self::Mask, b: Self::Mask) -> Self::Mask {
            a | b
        }
        #[inline(always)]
        fn mask_count(m: Self::Mask) -> u32 {
            m.count_ones()
        }
        #[inline(always)]
        fn mask_one(m: Self::Mask) -> Self {
            // SAFETY: features (module docs).
            Z16(unsafe { _mm512_maskz_mov_ps(m, _mm512_set1_ps(1.0)) })
        }
        #[inline(always)]
        fn select(m: Self::Mask, t: Self, f: Self) -> Self {
            // SAFETY: features (module docs).
            Z16(unsafe { _mm512_mask_blend_ps(m, f.0, t.0) })
        }
    }

    /// `Y16` of `$e` applied to each half, `$x` naming the half (no closure: a closure does not
    /// inherit the target features of the function it is written in).
    macro_rules! halves {
        ($v:expr, |$x:ident| $e:expr) => {{
            let v = $v;
            let $x = v.0;
            let lo = $e;
            let $x = v.1;
            Y16(lo, $e)
        }};
    }

    impl Vf32 for Y16 {
        type Mask = (__m256, __m256);
        const WIDE: bool = false;
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: features (module docs).
            unsafe { Y16(_mm256_setzero_ps(), _mm256_setzero_ps()) }
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            // SAFETY: features (module docs).
            unsafe { Y16(_mm256_set1_ps(x), _mm256_set1_ps(x)) }
        }
        #[inline(always)]
        fn from_array(a: [f32; LANES]) -> Self {
            // SAFETY: features (module docs); `a` is LANES readable f32.
            unsafe { Self::read(a.as_ptr()) }
        }
        #[inline(always)]
        fn to_array(self) -> [f32; LANES] {
            let mut a = [0.0; LANES];
            // SAFETY: features (module docs); `a` is LANES writable f32.
            unsafe { self.write(a.as_mut_ptr()) };
            a
        }
        #[inline(always)]
        unsafe fn read(p: *const f32) -> Self {
            // SAFETY: features (module docs); the caller guarantees LANES readable f32.
            unsafe { Y16(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) }
        }
        #[inline(always)]
        unsafe fn write(self, p: *mut f32) {
            // SAFETY: features (module docs); the caller guarantees LANES writable f32.
            unsafe {
                _mm256_storeu_ps(p, self.0);
                _mm256_storeu_ps(p.add(8), self.1);
            }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: features (module docs).
            unsafe {
                Y16(
                    _mm256_fmadd_ps(self.0, b.0, c.0),
                    _mm256_fmadd_ps(self.1, b.1, c.1),
                )
            }
        }
        #[inline(always)]
        fn floor(self) -> Self {
            // SAFETY: features (module docs).
            unsafe {
                halves!(self, |x| _mm256_round_ps::<
                    { _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC },
                >(x))
            }
        }
        #[inline(always)]
        fn abs(self) -> Self {
            // SAFETY: features (module docs).
            unsafe {
                let m = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
                halves!(self, |x| _mm256_and_ps(x, m))
            }
        }
        #[inline(always)]
        fn or_sign_of(self, x: Self) -> Self {
            // SAFETY: features (module docs).
            unsafe {
                let s = _mm256_set1_ps(-0.0);
                Y16(
                    _mm256_or_ps(self.0, _mm256_and_ps(x.0, s)),
                    _mm256_or_ps(self.1, _mm256_and_ps(x.1, s)),
                )
            }
        }
        #[inline(always)]
        fn pow2i(k: Self) -> Self {
            // SAFETY: features (module docs).
            unsafe {
                let bias = _mm256_set1_epi32(127);
                halves!(k, |x| _mm256_castsi256_ps(_mm256_slli_epi32::<23>(
                    _mm256_add_epi32(_mm256_cvtps_epi32(x), bias)
                )))
            }
        }
        #[inline(always)]
        fn gt(self, o: Self) -> Self::Mask {
            // SAFETY: features (module docs).
            unsafe {
                (
                    _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, o.0),
                    _mm256_cmp_ps::<_CMP_GT_OQ>(self.1, o.1),
                )
            }
        }
        #[inline(always)]
        fn lt(self, o: Self) -> Self::Mask {
            // SAFETY: features (module docs).
            unsafe {
                (
                    _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, o.0),
                    _mm256_cmp_ps::<_CMP_LT_OQ>(self.1, o.1),
                )
            }
        }
        #[inline(always)]
        fn mask_or(a: Self::Mask, b: Self::Mask) -> Self::Mask {
            // SAFETY: features (module docs).
            unsafe { (_mm256_or_ps(a.0, b.0), _mm256_or_ps(a.1, b.1)) }
        }
        #[inline(always)]
        fn mask_count(m: Self::Mask) -> u32 {
            // SAFETY: features (module docs).
            unsafe { (_mm256_movemask_ps(m.0) | (_mm256_movemask_ps(m.1) << 8)).count_ones() }
        }
        #[inline(always)]
        fn mask_one(m: Self::Mask) -> Self {
            // SAFETY: features (module docs).
            unsafe {
                let one = _mm256_set1_ps(1.0);
                Y16(_mm256_and_ps(m.0, one), _mm256_and_ps(m.1, one))
            }
        }
        #[inline(always)]
        fn select(m: Self::Mask, t: Self, f: Self) -> Self {
            // SAFETY: features (module docs).
            unsafe {
                Y16(
                    _mm256_blendv_ps(f.0, t.0, m.0),
                    _mm256_blendv_ps(f.1, t.1, m.1),
                )
            }
        }
    }
}
