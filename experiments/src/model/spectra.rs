//! Spectra of recurrent weight matrices: the spectral radius of a square W_hh and the largest
//! singular value of any W_hh, by seeded power iteration in f64. The smart-tanh initialisation
//! scales to a spectral radius; the training diagnostics log both.

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
