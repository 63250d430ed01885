//! Spectra in f64: of recurrent weight matrices (the spectral radius of a square W_hh and the
//! largest singular value of any W_hh, by seeded power iteration; the distance of W_hh from
//! orthogonality), and the dense linear algebra of the Jacobian diagnostics (Gram-Schmidt
//! orthonormalisation with the norms it divided by, the Lyapunov spectrum of a sequence of maps
//! by the QR (Benettin) method, singular values by one-sided Jacobi, the Kaplan-Yorke dimension).
//! The smart-tanh initialisation scales to a spectral radius; the training diagnostics log the
//! rest.

use gradlab_kernels::gemm::{dgemm, dgemm_ext, GemmShape};
use gradlab_kernels::rng::SplitMix64;

/// Spectral radius of a square `h × h` matrix, estimated as the growth rate of ‖Wᵏv‖: the mean
/// log growth over iterations 100..300 of a normalised power iteration. Unlike the Rayleigh
/// quotient this also converges when the dominant eigenvalues are a complex pair.
pub fn spectral_radius(w: &[f32], h: usize, rng: &mut SplitMix64) -> f64 {
    let mut v: Vec<f64> = (0..h).map(|_| rng.normal()).collect();
    let mut next = vec![0.0; h];
    let (warm, measured) = (100, 200);
    let mut log_growth = 0.0;
    for it in 0..warm + measured {
        for (i, n) in next.iter_mut().enumerate() {
            *n = (0..h).map(|k| f64::from(w[i * h + k]) * v[k]).sum();
        }
        let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return if norm == 0.0 { 0.0 } else { f64::INFINITY };
        }
        let prev = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if it >= warm {
            log_growth += (norm / prev).ln();
        }
        for (a, b) in v.iter_mut().zip(&next) {
            *a = b / norm;
        }
    }
    (log_growth / measured as f64).exp()
}

/// Largest singular value of a `rows × cols` matrix (power iteration on WᵀW).
pub fn sigma_max(w: &[f32], rows: usize, cols: usize, rng: &mut SplitMix64) -> f64 {
    let mut v: Vec<f64> = (0..cols).map(|_| rng.normal()).collect();
    let (mut u, mut sigma) = (vec![0.0; rows], 0.0);
    for _ in 0..100 {
        for (i, ui) in u.iter_mut().enumerate() {
            *ui = (0..cols).map(|k| f64::from(w[i * cols + k]) * v[k]).sum();
        }
        for (k, vk) in v.iter_mut().enumerate() {
            *vk = (0..rows).map(|i| f64::from(w[i * cols + k]) * u[i]).sum();
        }
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n == 0.0 || !n.is_finite() {
            return if n == 0.0 { 0.0 } else { f64::INFINITY };
        }
        sigma = n.sqrt();
        v.iter_mut().for_each(|x| *x /= n);
    }
    sigma
}

/// `a · b` with eight independent partial sums, so the compiler vectorises it (a single running
/// sum is one long dependency chain); the order is fixed, so the result is deterministic.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0f64; 8];
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Writes the transpose of the `rows × cols` row-major `a` into `t` (`cols × rows`).
fn transpose_into(a: &[f64], rows: usize, cols: usize, t: &mut [f64]) {
    for (i, row) in a.chunks_exact(cols).enumerate().take(rows) {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + i] = v;
        }
    }
}

/// Rows [`Lyapunov`] orthogonalises against the rows before them as one block.
const GS_BLOCK: usize = 32;

/// Orthonormalises the `rows` rows (each `cols` long) of `q` in order by Gram-Schmidt with a
/// second pass ("twice is enough": orthogonal to working precision), and writes into `norms` the
/// norm each row had after orthogonalisation, before it was normalised: the diagonal of R in
/// `Qᵀ R = Aᵀ`. A row in the span of the rows before it (norm exactly 0: a zero row, or a
/// direction a map annihilated) is replaced by a unit vector orthogonal to them, so `q` always
/// leaves orthonormal.
///
/// # Panics
/// If `rows > cols` or the lengths do not fit.
pub fn orthonormalize_rows(q: &mut [f64], cols: usize, norms: &mut [f64]) {
    orthonormalize_rows_blocked(q, cols, norms, norms.len().max(1));
}

/// [`orthonormalize_rows`] by blocks of `block` rows (BCGS2): the first block as
/// [`orthonormalize_rows`] does it; every later one in two passes, each of which removes the
/// block's components along the finished rows with two matrix products (`P = B Qᵀ`,
/// `B −= P Q`) and then orthonormalises the block's rows among themselves as
/// [`orthonormalize_rows`] does but with one projection each (the norm of a row is the product
/// of its two). The second pass
/// is what keeps a row that lay in the span of the rows before it (its norm at rounding level,
/// its direction rounding noise) orthogonal to the earlier blocks. Nearly all the work is then
/// in the products, at `dgemm` speed rather than that of dot products; the result agrees with
/// the unblocked one to rounding, and `block >= rows` is the unblocked algorithm, bit for bit.
///
/// # Panics
/// If `rows > cols`, the lengths do not fit, or `block` is 0.
pub fn orthonormalize_rows_blocked(q: &mut [f64], cols: usize, norms: &mut [f64], block: usize) {
    let rows = norms.len();
    assert!(
        rows <= cols && q.len() == rows * cols && block > 0,
        "orthonormalize_rows: {rows} rows of {cols} in a slice of {}, blocks of {block}",
        q.len()
    );
    let block = block.min(rows.max(1));
    let mut proj = vec![0.0; block * rows];
    for start in (0..rows).step_by(block) {
        let end = (start + block).min(rows);
        let b = end - start;
        norms[start..end].fill(1.0);
        for _pass in 0..if start == 0 { 1 } else { 2 } {
            if start > 0 {
                let (done, rest) = q.split_at_mut(start * cols);
                let rows_b = &mut rest[..b * cols];
                let p = &mut proj[..b * start];
                let across = GemmShape {
                    m: b,
                    k: cols,
                    n: start,
                };
                dgemm_ext(across, 1.0, (rows_b, false), (done, true), 0.0, p);
                let back = GemmShape {
                    m: b,
                    k: start,
                    n: cols,
                };
                dgemm_ext(back, -1.0, (p, false), (done, false), 1.0, rows_b);
            }
            for (i, norm) in (start..end).zip(&mut norms[start..end]) {
                let (done, rest) = q.split_at_mut(i * cols);
                let row = &mut rest[..cols];
                // Twice in the one pass of the first block, once in each of the two of the
                // others.
                project_out(
                    row,
                    &done[start * cols..],
                    cols,
                    if start == 0 { 2 } else { 1 },
                );
                let n = dot(row, row).sqrt();
                *norm *= n;
                let n = if n > 0.0 {
                    n
                } else {
                    replace_with_orthogonal_unit(row, done, cols)
                };
                row.iter_mut().for_each(|x| *x /= n);
            }
        }
    }
}

/// Subtracts from `row` its projections on the orthonormal rows of `done`, `passes` times.
fn project_out(row: &mut [f64], done: &[f64], cols: usize, passes: usize) {
    for _ in 0..passes {
        for prev in done.chunks_exact(cols) {
            let d = dot(row, prev);
            for (a, b) in row.iter_mut().zip(prev) {
                *a -= d * b;
            }
        }
    }
}

/// Sets `row` to the first unit basis vector with a component orthogonal to `done` and
/// orthogonalises it; returns its norm.
fn replace_with_orthogonal_unit(row: &mut [f64], done: &[f64], cols: usize) -> f64 {
    for e in 0..cols {
        row.fill(0.0);
        row[e] = 1.0;
        project_out(row, done, cols, 2);
        let n = dot(row, row).sqrt();
        if n > 0.5 {
            return n;
        }
    }
    unreachable!("fewer orthonormal rows than columns leave a basis vector with a component");
}

/// The Lyapunov spectrum of the maps `J_0, J_1, …` (each `n × n`, row-major) by the QR
/// (Benettin) method: an orthonormal frame is pushed through every map and re-orthonormalised,
/// and exponent `i` is the mean of ln R_ii over the maps after the first `warmup`, in nats per
/// map, in descending order. A direction a map annihilates gives `-inf`.
pub struct Lyapunov {
    n: usize,
    warmup: usize,
    seen: usize,
    /// The frame, one orthonormal vector per row (Qᵀ), and its image under the last map.
    frame: Vec<f64>,
    image: Vec<f64>,
    /// The last map transposed.
    jt: Vec<f64>,
    norms: Vec<f64>,
    sums: Vec<f64>,
}

impl Lyapunov {
    /// The full spectrum (n exponents) of maps of `n × n`, the first `warmup` maps discarded.
    pub fn new(n: usize, warmup: usize) -> Self {
        let mut frame = vec![0.0; n * n];
        for i in 0..n {
            frame[i * n + i] = 1.0;
        }
        Lyapunov {
            n,
            warmup,
            seen: 0,
            frame,
            image: vec![0.0; n * n],
            jt: vec![0.0; n * n],
            norms: vec![0.0; n],
            sums: vec![0.0; n],
        }
    }

    /// Applies the next map `j` (`n × n`, row-major).
    pub fn push(&mut self, j: &[f64]) {
        let n = self.n;
        assert_eq!(j.len(), n * n, "Lyapunov::push: a map must be {n} × {n}");
        transpose_into(j, n, n, &mut self.jt);
        // (J Q)ᵀ = Qᵀ Jᵀ: the image of each frame vector is a row.
        let shape = GemmShape { m: n, k: n, n };
        dgemm(shape, &self.frame, &self.jt, &mut self.image);
        std::mem::swap(&mut self.frame, &mut self.image);
        orthonormalize_rows_blocked(&mut self.frame, n, &mut self.norms, GS_BLOCK);
        if self.seen >= self.warmup {
            for (s, r) in self.sums.iter_mut().zip(&self.norms) {
                *s += r.ln();
            }
        }
        self.seen += 1;
    }

    /// The exponents so far, in descending order (empty before the first map after the
    /// warm-up).
    pub fn exponents(&self) -> Vec<f64> {
        let measured = self.seen.saturating_sub(self.warmup);
        if measured == 0 {
            return Vec::new();
        }
        let mut l: Vec<f64> = self.sums.iter().map(|s| s / measured as f64).collect();
        l.sort_by(|a, b| b.total_cmp(a));
        l
    }
}

/// Kaplan-Yorke (Lyapunov) dimension of a spectrum in descending order: `k + S_k / |λ_{k+1}|`
/// with `k` the largest number of leading exponents whose sum `S_k` is not negative (0 when the
/// largest exponent is negative, `n` when every partial sum is non-negative).
pub fn kaplan_yorke_dimension(exponents: &[f64]) -> f64 {
    let mut sum = 0.0;
    for (k, &l) in exponents.iter().enumerate() {
        if sum + l < 0.0 {
            return k as f64 + sum / l.abs();
        }
        sum += l;
    }
    exponents.len() as f64
}

/// Singular values of a `rows × cols` row-major matrix, in descending order (min(rows, cols)
/// of them), by one-sided Jacobi rotations of its rows, which gives small singular values to
/// high relative accuracy. The matrix is scaled by its largest element first, so products of
/// many Jacobians (entries near under- or overflow) keep their precision.
pub fn singular_values(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    assert_eq!(a.len(), rows * cols, "singular_values: {rows} × {cols}");
    // Rotating the rows of the taller orientation: min(rows, cols) values from as many rows.
    let (r, c, mut m) = if rows <= cols {
        (rows, cols, a.to_vec())
    } else {
        let mut t = vec![0.0; rows * cols];
        transpose_into(a, rows, cols, &mut t);
        (cols, rows, t)
    };
    let scale = m.iter().fold(0.0f64, |s, x| s.max(x.abs()));
    if scale == 0.0 || !scale.is_finite() {
        return vec![if scale == 0.0 { 0.0 } else { f64::NAN }; r];
    }
    m.iter_mut().for_each(|x| *x /= scale);
    for _sweep in 0..60 {
        let mut rotated = false;
        for i in 0..r {
            for j in i + 1..r {
                let (head, tail) = m.split_at_mut(j * c);
                let (x, y) = (&mut head[i * c..(i + 1) * c], &mut tail[..c]);
                let (alpha, beta, gamma) = (dot(x, x), dot(y, y), dot(x, y));
                if gamma == 0.0 || gamma.abs() <= f64::EPSILON * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let cs = 1.0 / (1.0 + t * t).sqrt();
                let sn = cs * t;
                for (a, b) in x.iter_mut().zip(y.iter_mut()) {
                    let (u, v) = (*a, *b);
                    *a = cs * u - sn * v;
                    *b = sn * u + cs * v;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut s: Vec<f64> = m
        .chunks_exact(c)
        .map(|row| dot(row, row).sqrt() * scale)
        .collect();
    s.sort_by(|a, b| b.total_cmp(a));
    s
}

/// Distance of a recurrent weight matrix from orthogonality: `‖WᵀW − I‖_F / √H` of each
/// `H × H` gate block of `w` (`gates · H` rows of `H`), combined as the root mean square over
/// the blocks. 0 for an orthogonal (per-block) W_hh, as the `orthogonal` initialisation makes.
pub fn orthogonality_distance(w: &[f32], gates: usize, h: usize) -> f64 {
    assert_eq!(
        w.len(),
        gates * h * h,
        "orthogonality_distance: W_hh is (G·H, H)"
    );
    let mut sum = 0.0;
    let (mut block, mut block_t, mut gram) = (vec![0.0; h * h], vec![0.0; h * h], vec![0.0; h * h]);
    for g in w.chunks_exact(h * h) {
        for (b, &v) in block.iter_mut().zip(g) {
            *b = f64::from(v);
        }
        transpose_into(&block, h, h, &mut block_t);
        dgemm(GemmShape { m: h, k: h, n: h }, &block_t, &block, &mut gram);
        for i in 0..h {
            gram[i * h + i] -= 1.0;
        }
        sum += gram.iter().map(|x| x * x).sum::<f64>() / h as f64;
    }
    (sum / gates as f64).sqrt()
}
