//! Matrix products: a hand-written microkernel on pre-packed B for every product of the layers,
//! and `matrixmultiply` as the in-run reference that benchmarks are measured against.
//!
//! The recurrent product `h_{t-1} · W_hhᵀ` (forward) and `dG_t · W_hh` (backward) runs T times
//! with the same weights and a small batch, so a general GEMM would re-pack W_hh at every step.
//! [`PackedB`] packs it once per call into panels of `NR = 64` columns; a panel's columns can map
//! to arbitrary 16-wide spans of C, which is how one LSTM panel holds the i, f, g and o gates of
//! the same 16 units and the gate math can run on the tile as soon as it is complete.
//!
//! The large products over all T·B columns use the same kernel through [`gemm`]: on this
//! project's machine (Zen 4, AVX-512) it runs at about 110 GFLOP/s per core against about 90
//! for `matrixmultiply`'s 1024³ sgemm, and 2-5x faster on the recurrent shapes (see
//! `gradlab bench` and the closing notes of the kernels issue).
//!
//! Every element of C is a sum over k in a fixed order (one `fma` chain per K block, blocks added
//! in order), independent of which rows share a tile and of the thread split. K is blocked
//! ([`k_block`]) only where that measured faster here: when A is strided (the dGᵀ of the weight
//! gradients: +20%) or K is deep (dG · W_hh of an LSTM with H = 1024: +9%).

use crate::isa::dispatch;
use crate::par::{split_range, Par, SyncPtr};
use crate::simd::Vf32;
pub use crate::simd::LANES;

/// Rows of A per microkernel tile.
pub const MR: usize = 6;
/// Vectors of `LANES` columns per panel.
pub const NV: usize = 4;
/// Columns per panel.
pub const NR: usize = NV * LANES;
/// Depth of a K block where K is blocked: a 512 × 64 panel block is 128 KiB, in L2.
pub const KC: usize = 512;

/// The K block for a product with this A: single-thread GFLOP/s on Zen 4 (best of 7), full K
/// vs blocks of 512: Gx (K=1024) 110 vs 105, dX (K=4096) 109 vs 105, dGᵀX (strided A,
/// K=3200) 85 vs 105, recurrent dG·W_hh (K=4096, 32 rows) 92 vs 101.
pub fn k_block(k: usize, a: &Mat<'_>) -> usize {
    if a.cs != 1 || k > 2048 {
        KC
    } else {
        k.max(1)
    }
}

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

/// Panels over the gates of one recurrent row whose gate g starts at column `offsets[g]`: the
/// 16-unit chunks are laid out unit chunk by unit chunk, each with every gate in order (chunk 0
/// of gate 0, of gate 1, ..., then chunk 1 of every gate, ...), `NV` chunks to a panel, the last
/// panel padded with empty spans. With four gates (LSTM `[i | f | g | o]`) panel p holds units
/// `16p..16p+16` of every gate; with one (RNN) it is [`contiguous_spans`]; with three (GRU) the
/// gates of a unit chunk may straddle two panels, and [`gate_panel_units`] says which units a
/// panel completes. (A source whose gates sit elsewhere than C's is packed with its own
/// offsets, then [`PackedB::retarget`]ed.)
pub fn gate_spans(hidden: usize, offsets: &[usize]) -> impl Iterator<Item = [ColSpan; NV]> + '_ {
    let g = offsets.len();
    let chunks = hidden.div_ceil(LANES) * g;
    (0..chunks.div_ceil(NV)).map(move |p| {
        std::array::from_fn(|v| {
            let c = p * NV + v;
            if c >= chunks {
                return ColSpan::default();
            }
            let j = c / g * LANES;
            ColSpan {
                start: offsets[c % g] + j,
                width: LANES.min(hidden - j),
            }
        })
    })
}

/// The hidden units every one of whose `gates` gates is complete once panels `0..=p` of
/// [`gate_spans`] are: the units that an epilogue run after panel p (see [`packed_product`])
/// can apply the gate math to. Over all panels the ranges partition `0..hidden`.
pub fn gate_panel_units(p: usize, gates: usize, hidden: usize) -> std::ops::Range<usize> {
    let done = |panels: usize| (panels * NV / gates * LANES).min(hidden);
    done(p)..done(p + 1)
}

impl PackedB {
    /// Packs the K × N matrix `src`, whose element (kk, col) is `src.data[kk * src.rs + col *
    /// src.cs]`, `col` being a column of C as given by `spans`. Reuses the allocation.
    pub fn pack(
        &mut self,
        k: usize,
        spans: impl IntoIterator<Item = [ColSpan; NV]>,
        src: Mat<'_>,
        par: Par,
    ) {
        let Mat {
            data: src,
            rs: rs_k,
            cs: cs_n,
        } = src;
        self.k = k;
        self.spans.clear();
        self.spans.extend(spans);
        // Every element is written below (padding included), so a reused buffer needs no memset.
        self.data.resize(self.spans.len() * k * NR, 0.0);
        if k == 0 {
            return;
        }
        // Below this many elements a parallel region costs more than the copy it splits (a
        // 128 x 128 W_hh packs in 5-9 us on one thread and 14-40 us on two).
        const PAR_MIN: usize = 1 << 18;
        let par = if self.data.len() < PAR_MIN {
            Par::Seq
        } else {
            par
        };
        par.for_each_chunk(&mut self.data, k * NR, &self.spans, |panel, sp| {
            for (v, s) in sp.iter().enumerate() {
                let lanes = v * LANES..(v + 1) * LANES;
                if rs_k == 1 {
                    // Bᵀ stored row-major: read each source row once, write down the panel.
                    for l in 0..s.width {
                        let col = &src[(s.start + l) * cs_n..][..k];
                        for (kk, &x) in col.iter().enumerate() {
                            panel[kk * NR + v * LANES + l] = x;
                        }
                    }
                    for kk in 0..k {
                        panel[kk * NR + v * LANES + s.width..kk * NR + lanes.end].fill(0.0);
                    }
                } else {
                    for kk in 0..k {
                        let dst = &mut panel[kk * NR..][lanes.clone()];
                        for (l, d) in dst.iter_mut().enumerate() {
                            *d = if l < s.width {
                                src[kk * rs_k + (s.start + l) * cs_n]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        });
    }

    /// Makes the packed columns land on other columns of C: `spans` replaces, panel by panel
    /// and vector by vector, the spans the matrix was packed (read) with, whose widths it must
    /// repeat. The GRU's recurrent product reads gate row `2H + j` of W_hh (n) and writes column
    /// `3H + j` of its stored row (hn, apart from `W_in x` at `2H + j`). Allocates nothing.
    ///
    /// # Panics
    /// If `spans` has another number of panels or another width anywhere.
    pub fn retarget(&mut self, spans: impl IntoIterator<Item = [ColSpan; NV]>) {
        let mut panels = 0;
        for (old, new) in self.spans.iter_mut().zip(spans) {
            for (o, n) in old.iter_mut().zip(new) {
                assert_eq!(o.width, n.width, "retarget: a span changes width");
                *o = n;
            }
            panels += 1;
        }
        assert_eq!(panels, self.spans.len(), "retarget: too few panels");
    }

    /// Number of panels.
    pub fn panels(&self) -> usize {
        self.spans.len()
    }

    /// Column spans of panel `p`.
    pub fn spans(&self, p: usize) -> &[ColSpan; NV] {
        &self.spans[p]
    }

    /// One past the last column of C that any panel writes.
    pub fn c_end(&self) -> usize {
        self.spans
            .iter()
            .flatten()
            .map(|s| s.start + s.width)
            .max()
            .unwrap_or(0)
    }
}

/// The operands of one microkernel tile, as raw pointers (see [`tile`]).
#[derive(Clone, Copy)]
struct Tile<'s> {
    /// Depth of this K block.
    k: usize,
    /// A's element (r, kk) is at `a + r * rsa + kk * csa`.
    a: *const f32,
    rsa: usize,
    csa: usize,
    /// Row kk of this K block of the panel is at `panel + kk * NR`.
    panel: *const f32,
    /// Row r of the tile in C starts at `c + r * ldc`.
    c: *mut f32,
    ldc: usize,
    /// Where the panel's `NV` vectors land in a row of C.
    spans: &'s [ColSpan; NV],
    /// Add to C instead of overwriting it.
    accumulate: bool,
}

/// One R × (NVT · LANES) tile: C (+)= A[R × k] · vectors `v0..v0 + NVT` of the panel. With
/// AVX-512 a tile is the whole panel (`NVT = NV`: 24 accumulators of 32 zmm registers), with
/// AVX2 one vector of it (`NVT = 1`: 12 of 16 ymm); every element of C is the same `fma` chain
/// over k either way.
///
/// # Safety
/// `a` is readable at `r * rsa + kk * csa` for r < R, kk < k; `panel` at `kk * NR + 0..NR`;
/// `c` is readable and writable at `r * ldc + s.start + 0..s.width` for r < R and every span s;
/// `v0 + NVT <= NV`.
#[inline(always)]
unsafe fn tile<V: Vf32, const R: usize, const NVT: usize>(t: Tile<'_>, v0: usize) {
    let Tile {
        k,
        a,
        rsa,
        csa,
        panel,
        c,
        ldc,
        spans,
        accumulate,
    } = t;
    let mut acc = [[V::zero(); NVT]; R];
    for kk in 0..k {
        // SAFETY: kk < k and v0 + NVT <= NV, so the panel row and the A elements are in bounds
        // (caller's contract).
        unsafe {
            let bp = panel.add(kk * NR + v0 * LANES);
            let mut b = [V::zero(); NVT];
            for (v, bv) in b.iter_mut().enumerate() {
                *bv = V::read(bp.add(v * LANES));
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let ar = V::splat(*a.add(r * rsa + kk * csa));
                for (acc_rv, &bv) in acc_r.iter_mut().zip(&b) {
                    *acc_rv = ar.mul_add(bv, *acc_rv);
                }
            }
        }
    }
    // By value: taking an accumulator's address would keep `acc` in memory and cost one store
    // per accumulator per k.
    for (r, acc_r) in acc.into_iter().enumerate() {
        for (s, x) in spans[v0..v0 + NVT].iter().zip(acc_r) {
            // SAFETY: row r < R and columns inside the span (caller's contract).
            unsafe {
                let cp = c.add(r * ldc + s.start);
                if s.width == LANES {
                    let y = if accumulate { x + V::read(cp) } else { x };
                    y.write(cp);
                } else {
                    for (l, &xl) in x.to_array()[..s.width].iter().enumerate() {
                        *cp.add(l) = if accumulate { xl + *cp.add(l) } else { xl };
                    }
                }
            }
        }
    }
}

/// One tile of `mr <= MR` rows over the whole panel: one call of [`tile`] where a vector is one
/// register of 32 ([`Vf32::WIDE`]), else one per vector of the panel (empty spans skipped).
///
/// # Safety
/// That of [`tile`] with R = `mr`.
#[inline(always)]
unsafe fn panel_tile<V: Vf32>(t: Tile<'_>, mr: usize) {
    macro_rules! rows {
        ($nvt:expr, $v0:expr) => {
            // SAFETY: the caller's contract, for mr rows; $v0 + $nvt <= NV.
            unsafe {
                match mr {
                    6 => tile::<V, 6, $nvt>(t, $v0),
                    5 => tile::<V, 5, $nvt>(t, $v0),
                    4 => tile::<V, 4, $nvt>(t, $v0),
                    3 => tile::<V, 3, $nvt>(t, $v0),
                    2 => tile::<V, 2, $nvt>(t, $v0),
                    _ => tile::<V, 1, $nvt>(t, $v0),
                }
            }
        };
    }
    if V::WIDE {
        rows!(NV, 0);
    } else {
        for v0 in 0..NV {
            if t.spans[v0].width > 0 {
                rows!(1, v0);
            }
        }
    }
}

dispatch! {
    /// C[rows] (+)= A[rows × K] · B over every panel of `b`, on the calling thread, K in blocks of
    /// [`k_block`].
    ///
    /// The loop order is K block, panel, row tile; after the last K block of a tile,
    /// `epilogue(c, panel, r0, mr)` runs on rows `r0..r0 + mr` of that panel while they are hot. By
    /// then every earlier panel of those rows is complete too, which is what lets a gate whose
    /// chunks straddle two panels (GRU, [`gate_panel_units`]) be finished after the second.
    /// `accumulate = false` overwrites C.
    pub fn packed_product<E: FnMut(&mut [f32], usize, usize, usize)>(
        rows: usize,
        a: Mat<'_>,
        b: &PackedB,
        c: MatMut<'_>,
        accumulate: bool,
        epilogue: E,
    ) = product;
}

/// [`packed_product`] on vectors `V` (the epilogue calls dispatched gate functions itself).
#[inline(always)]
fn product<V: Vf32, E: FnMut(&mut [f32], usize, usize, usize)>(
    rows: usize,
    a: Mat<'_>,
    b: &PackedB,
    c: MatMut<'_>,
    accumulate: bool,
    mut epilogue: E,
) {
    let MatMut { data: c, ld: ldc } = c;
    let k = b.k;
    if rows == 0 {
        return;
    }
    assert!(a.fits(rows, k), "packed_product: A is too short");
    let c_end = b.c_end();
    assert!(
        c.len() >= (rows - 1) * ldc + c_end,
        "packed_product: C is too short"
    );
    let kc = k_block(k, &a);
    let k_blocks = k.div_ceil(kc).max(1);
    for kb in 0..k_blocks {
        let (k0, k1) = (kb * kc, ((kb + 1) * kc).min(k));
        let acc = accumulate || kb > 0;
        for p in 0..b.panels() {
            let pp = b.data[(p * k + k0) * NR..].as_ptr();
            for r0 in (0..rows).step_by(MR) {
                let mr = MR.min(rows - r0);
                // `wrapping_add`: with k = 0, A may be empty and is never read.
                let t = Tile {
                    k: k1 - k0,
                    a: a.data.as_ptr().wrapping_add(r0 * a.rs + k0 * a.cs),
                    rsa: a.rs,
                    csa: a.cs,
                    panel: pp,
                    c: c[r0 * ldc..].as_mut_ptr(),
                    ldc,
                    spans: &b.spans[p],
                    accumulate: acc,
                };
                // SAFETY: the asserts above bound A (rows × k) and C (rows × c_end); panel p
                // holds k packed rows of NR columns, of which this block reads k0..k1.
                unsafe { panel_tile::<V>(t, mr) }
                if kb + 1 == k_blocks {
                    epilogue(c, p, r0, mr);
                }
            }
        }
    }
}

/// C[m × ·] (+)= A[m × K] · B, split over blocks of rows of C (a multiple of `MR` each).
pub fn gemm(m: usize, a: Mat<'_>, b: &PackedB, c: MatMut<'_>, accumulate: bool, par: Par) {
    let blocks = m.div_ceil(MR);
    let tasks = par.degree().min(blocks).max(1);
    if tasks == 1 {
        return packed_product(m, a, b, c, accumulate, |_, _, _, _| {});
    }
    let MatMut { data: c, ld: ldc } = c;
    let c_end = b.c_end();
    assert!(
        m == 0 || c.len() >= (m - 1) * ldc + c_end,
        "gemm: C is too short"
    );
    let (cp, c_len) = (SyncPtr(c.as_mut_ptr()), c.len());
    par.for_each_task(tasks, |t| {
        let range = split_range(blocks, tasks, t);
        let (r0, r1) = (range.start * MR, (range.end * MR).min(m));
        let a_rows = Mat {
            data: &a.data[(r0 * a.rs).min(a.data.len())..],
            ..a
        };
        // SAFETY: tasks own disjoint rows r0..r1 of C, and this slice covers only those rows
        // (it ends at the next task's first row or at the end of C).
        let c_rows = unsafe {
            let end = if r1 == m { c_len } else { r1 * ldc };
            std::slice::from_raw_parts_mut(cp.get().add(r0 * ldc), end - r0 * ldc)
        };
        let c_rows = MatMut::rows(c_rows, ldc);
        packed_product(r1 - r0, a_rows, b, c_rows, accumulate, |_, _, _, _| {});
    });
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

/// A row-major output matrix: element (i, j) is at `data[i * ld + j]`.
#[derive(Debug)]
pub struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub ld: usize,
}

impl<'a> MatMut<'a> {
    /// Row-major with leading dimension `ld`.
    pub fn rows(data: &'a mut [f32], ld: usize) -> Self {
        MatMut { data, ld }
    }
}

/// The dimensions of a product C[m × n] = A[m × k] · B[k × n].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmShape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

/// C[m × n] = beta·C + A[m × k]·B[k × n] through `matrixmultiply`, split over blocks of rows of
/// C. `beta = 0` ignores what C held, NaN included.
pub fn sgemm(shape: GemmShape, a: Mat<'_>, b: Mat<'_>, beta: f32, c: MatMut<'_>, par: Par) {
    let GemmShape { m, k, n } = shape;
    let MatMut { data: c, ld: ldc } = c;
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

/// C[m × n] = A[m × k] · B[k × n] in f64, all three dense and row-major, through
/// `matrixmultiply` (one thread). For the diagnostics' small dense products (step Jacobians and
/// their products), not for the training kernels.
///
/// # Panics
/// If a slice's length is not its shape's.
pub fn dgemm(shape: GemmShape, a: &[f64], b: &[f64], c: &mut [f64]) {
    dgemm_ext(shape, 1.0, (a, false), (b, false), 0.0, c);
}

/// C[m × n] = alpha · op(A) · op(B) + beta · C in f64, where op(X) is X (`false`) or Xᵀ (`true`)
/// of a dense row-major X (A is stored `m × k`, or `k × m` when transposed; B `k × n` or
/// `n × k`), through `matrixmultiply` (one thread). `beta = 0` ignores what C held.
///
/// # Panics
/// If a slice's length is not its shape's.
pub fn dgemm_ext(
    shape: GemmShape,
    alpha: f64,
    (a, a_t): (&[f64], bool),
    (b, b_t): (&[f64], bool),
    beta: f64,
    c: &mut [f64],
) {
    let GemmShape { m, k, n } = shape;
    assert!(
        a.len() == m * k && b.len() == k * n && c.len() == m * n,
        "dgemm: operand lengths {}, {}, {} do not fit {m}×{k} · {k}×{n}",
        a.len(),
        b.len(),
        c.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    // (row stride, column stride) of op(X) for X stored dense row-major.
    let strides = |t: bool, rows: usize, cols: usize| {
        if t {
            (1, rows as isize)
        } else {
            (cols as isize, 1)
        }
    };
    let (ars, acs) = strides(a_t, m, k);
    let (brs, bcs) = strides(b_t, k, n);
    // SAFETY: every operand is dense with the length of its shape (checked above) and the
    // strides above address exactly its m·k, k·n and m·n elements, so each index
    // matrixmultiply forms lies inside its slice; C is borrowed mutably and does not alias A
    // or B.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            ars,
            acs,
            b.as_ptr(),
            brs,
            bcs,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}
