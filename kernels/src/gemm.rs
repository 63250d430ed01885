//! Matrix products: `matrixmultiply` for the large products over all T·B columns, and a
//! hand-written AVX-512/AVX2 microkernel for the sequential recurrent product.
//!
//! The recurrent product `h_{t-1} · W_hhᵀ` (forward) and `dG_t · W_hh` (backward) runs T times
//! with the same weights and a small batch, so a general GEMM would re-pack W_hh at every step.
//! [`PackedB`] packs it once per call into panels of `NR = 64` columns; a panel's columns can map
//! to arbitrary 16-wide spans of C, which is how one LSTM panel holds the i, f, g and o gates of
//! the same 16 units and the gate math can run on the tile as soon as it is complete.
//!
//! Every element of C is a sum over k in a fixed order (`fma` chain inside a K block, K blocks
//! added in order), independent of which rows share a tile and of the thread split.

use crate::par::{split_range, Par, SyncPtr};
pub use crate::simd::LANES;
use crate::simd::V;

/// Rows of A per microkernel tile.
pub const MR: usize = 6;
/// Vectors of `LANES` columns per panel.
pub const NV: usize = 4;
/// Columns per panel.
pub const NR: usize = NV * LANES;
/// Depth of one K block in the blocked product: a 128 × 64 panel block is 32 KiB, one L1.
pub const KC: usize = 128;

/// Where 16 consecutive packed columns land in a row of C: `start..start + width`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ColSpan {
    pub start: usize,
    pub width: usize,
}

/// A K × N matrix packed into panels of `NR` columns, `k`-major within a panel.
#[derive(Clone, Debug, Default)]
pub struct PackedB {
    k: usize,
    data: Vec<f32>,
    spans: Vec<[ColSpan; NV]>,
}

/// Panels over `n` contiguous columns: panel p covers columns `64p..64p+64`.
pub fn contiguous_spans(n: usize) -> impl Iterator<Item = [ColSpan; NV]> {
    (0..n.div_ceil(NR)).map(move |p| {
        std::array::from_fn(|v| {
            let start = (p * NR + v * LANES).min(n);
            ColSpan {
                start,
                width: LANES.min(n - start),
            }
        })
    })
}

/// Panels over the `NV` gates of an LSTM row `[i | f | g | o]`: panel p holds units
/// `16p..16p+16` of every gate, vector v being gate v.
pub fn gate_spans(hidden: usize) -> impl Iterator<Item = [ColSpan; NV]> {
    (0..hidden.div_ceil(LANES)).map(move |p| {
        let j = p * LANES;
        std::array::from_fn(|v| ColSpan {
            start: v * hidden + j,
            width: LANES.min(hidden - j),
        })
    })
}

impl PackedB {
    /// Packs B where element (kk, col) is `src[kk * rs_k + col * cs_n]`, `col` being a column of
    /// C as given by `spans`. Reuses the allocation.
    pub fn pack(
        &mut self,
        k: usize,
        spans: impl IntoIterator<Item = [ColSpan; NV]>,
        src: &[f32],
        rs_k: usize,
        cs_n: usize,
    ) {
        self.k = k;
        self.spans.clear();
        self.spans.extend(spans);
        self.data.clear();
        self.data.resize(self.spans.len() * k * NR, 0.0);
        for (panel, sp) in self.data.chunks_exact_mut(k * NR.max(1)).zip(&self.spans) {
            if rs_k == 1 {
                // Bᵀ stored row-major: read each source row once, write down the panel.
                for (v, s) in sp.iter().enumerate() {
                    for l in 0..s.width {
                        let col = &src[(s.start + l) * cs_n..][..k];
                        for (kk, &x) in col.iter().enumerate() {
                            panel[kk * NR + v * LANES + l] = x;
                        }
                    }
                }
            } else {
                for kk in 0..k {
                    for (v, s) in sp.iter().enumerate() {
                        for l in 0..s.width {
                            panel[kk * NR + v * LANES + l] = src[kk * rs_k + (s.start + l) * cs_n];
                        }
                    }
                }
            }
        }
    }

    /// Number of panels.
    pub fn panels(&self) -> usize {
        self.spans.len()
    }

    /// Column spans of panel `p`.
    pub fn spans(&self, p: usize) -> &[ColSpan; NV] {
        &self.spans[p]
    }

    /// Depth K.
    pub fn depth(&self) -> usize {
        self.k
    }
}

/// One MR' × NR tile: C (+)= A[R × k] · panel[k × NR].
///
/// # Safety
/// `a` is readable at `r * lda + kk` for r < R, kk < k; `panel` at `kk * NR + 0..NR` for kk < k;
/// `c` is readable and writable at `r * ldc + s.start + 0..s.width` for r < R and every span s.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    panel: *const f32,
    c: *mut f32,
    ldc: usize,
    spans: &[ColSpan; NV],
    accumulate: bool,
) {
    let mut acc = [[V::ZERO; NV]; R];
    for kk in 0..k {
        // SAFETY: kk < k, so the panel row and the A elements are in bounds (caller's contract).
        unsafe {
            let bp = panel.add(kk * NR);
            let b: [V; NV] =
                std::array::from_fn(|v| bp.add(v * LANES).cast::<V>().read_unaligned());
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let ar = V::splat(*a.add(r * lda + kk));
                for (acc_rv, &bv) in acc_r.iter_mut().zip(&b) {
                    *acc_rv = ar.mul_add(bv, *acc_rv);
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (s, x) in spans.iter().zip(acc_r) {
            // SAFETY: row r < R and columns inside the span (caller's contract).
            unsafe {
                let cp = c.add(r * ldc + s.start);
                if s.width == LANES {
                    let y = if accumulate {
                        *x + cp.cast::<V>().read_unaligned()
                    } else {
                        *x
                    };
                    cp.cast::<V>().write_unaligned(y);
                } else {
                    for (l, &xl) in x.as_array()[..s.width].iter().enumerate() {
                        *cp.add(l) = if accumulate { xl + *cp.add(l) } else { xl };
                    }
                }
            }
        }
    }
}

/// C[rows] (+)= A[rows × K] · B over every panel of `b`, with K split into blocks of `kc`.
///
/// The loop order is K block, panel, row block; after the last K block of a tile,
/// `epilogue(c, panel, r0, mr)` runs on rows `r0..r0 + mr` of that panel while they are hot.
/// `accumulate = false` overwrites C. A is row-major with leading dimension `lda`.
#[allow(clippy::too_many_arguments)]
pub fn packed_product(
    rows: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    kc: usize,
    mut epilogue: impl FnMut(&mut [f32], usize, usize, usize),
) {
    let k = b.k;
    if rows == 0 {
        return;
    }
    assert!(
        a.len() >= (rows - 1) * lda + k,
        "packed_product: A is too short"
    );
    let c_end = b
        .spans
        .iter()
        .flatten()
        .map(|s| s.start + s.width)
        .max()
        .unwrap_or(0);
    assert!(
        c.len() >= (rows - 1) * ldc + c_end,
        "packed_product: C is too short"
    );
    let kc = kc.max(1);
    let k_blocks = k.div_ceil(kc).max(1);
    for kb in 0..k_blocks {
        let (k0, k1) = (kb * kc, ((kb + 1) * kc).min(k));
        let acc = accumulate || kb > 0;
        for p in 0..b.panels() {
            let panel = &b.data[(p * k + k0) * NR..];
            for r0 in (0..rows).step_by(MR) {
                let mr = MR.min(rows - r0);
                let (ap, cp) = (a[r0 * lda + k0..].as_ptr(), c[r0 * ldc..].as_mut_ptr());
                let (pp, sp) = (panel.as_ptr(), &b.spans[p]);
                // SAFETY: the asserts above bound A (rows × k) and C (rows × c_end); the panel
                // slice holds k1 - k0 packed rows from k0.
                unsafe {
                    match mr {
                        6 => tile::<6>(k1 - k0, ap, lda, pp, cp, ldc, sp, acc),
                        5 => tile::<5>(k1 - k0, ap, lda, pp, cp, ldc, sp, acc),
                        4 => tile::<4>(k1 - k0, ap, lda, pp, cp, ldc, sp, acc),
                        3 => tile::<3>(k1 - k0, ap, lda, pp, cp, ldc, sp, acc),
                        2 => tile::<2>(k1 - k0, ap, lda, pp, cp, ldc, sp, acc),
                        _ => tile::<1>(k1 - k0, ap, lda, pp, cp, ldc, sp, acc),
                    }
                }
                if kb + 1 == k_blocks {
                    epilogue(c, p, r0, mr);
                }
            }
        }
    }
}

/// Strides of a matrix operand: element (i, j) is at `i * rs + j * cs`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major with leading dimension `ld`.
    pub fn rows(data: &'a [f32], ld: usize) -> Self {
        Mat {
            data,
            rs: ld,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with leading dimension `ld`.
    pub fn transposed(data: &'a [f32], ld: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: ld,
        }
    }
    fn fits(&self, m: usize, n: usize) -> bool {
        m == 0 || n == 0 || self.data.len() > (m - 1) * self.rs + (n - 1) * self.cs
    }
}

/// C[m × n] = beta·C + A[m × k]·B[k × n] (C row-major, leading dimension `ldc`), through
/// `matrixmultiply`, split over blocks of rows of C. `beta = 0` ignores what C held, NaN included.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    par: Par,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        a.fits(m, k) && b.fits(k, n),
        "sgemm: operand too short for its shape"
    );
    assert!(
        c.len() >= (m - 1) * ldc + n && ldc >= n,
        "sgemm: C too short for its shape"
    );
    // Row blocks of a multiple of 16 keep matrixmultiply's AVX-512 strips full.
    let tasks = par.degree().min(m.div_ceil(16)).max(1);
    let cp = SyncPtr(c.as_mut_ptr());
    par.for_each_task(tasks, |t| {
        let rows = split_range(m.div_ceil(16), tasks, t);
        let (r0, r1) = (rows.start * 16, (rows.end * 16).min(m));
        // SAFETY: operands were bounds-checked above; tasks write disjoint rows r0..r1 of C.
        unsafe {
            matrixmultiply::sgemm(
                r1 - r0,
                k,
                n,
                1.0,
                a.data.as_ptr().add(r0 * a.rs),
                a.rs as isize,
                a.cs as isize,
                b.data.as_ptr(),
                b.rs as isize,
                b.cs as isize,
                beta,
                cp.get().add(r0 * ldc),
                ldc as isize,
                1,
            );
        }
    });
}
