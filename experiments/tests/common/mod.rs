//! Helpers shared by the tests of gradlab-experiments.

/// Asserts that the trainer's f32 loss and gradient `got` match the f64 reference's `want`:
/// the loss to 1e-5 relative, every gradient element to 1e-4 of the reference's largest one
/// (or of 1); `what` names the case.
pub fn assert_matches_reference(what: &str, got: (f64, &[f32]), want: (f64, &[f64])) {
    let ((loss, got), (want_loss, want)) = (got, want);
    assert!(
        (loss - want_loss).abs() <= 1e-5 * want_loss.abs(),
        "{what}: loss {loss}, reference {want_loss}"
    );
    assert_eq!(got.len(), want.len(), "{what}: gradient length");
    let max = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let tol = 1e-4 * max.max(1.0);
    for (e, (&g, &r)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - r).abs() <= tol,
            "{what}: parameter {e} of {}: gradient {g}, reference {r} (tolerance {tol})",
            want.len()
        );
    }
}

/// Asserts that the f64 gradient `g` at parameters `p` matches central finite differences
/// (step 1e-6) of `loss` to 1e-6 relative; `what` names the case.
pub fn assert_matches_finite_differences(
    what: &str,
    p: &[f64],
    g: &[f64],
    loss: impl Fn(&[f64]) -> f64,
) {
    let eps = 1e-6;
    let mut p = p.to_vec();
    for e in 0..p.len() {
        let orig = p[e];
        p[e] = orig + eps;
        let plus = loss(&p);
        p[e] = orig - eps;
        let minus = loss(&p);
        p[e] = orig;
        let fd = (plus - minus) / (2.0 * eps);
        assert!(
            (g[e] - fd).abs() <= 1e-6 * (1.0 + g[e].abs()),
            "{what}: parameter {e} of {}: reference {}, finite differences {fd}",
            p.len(),
            g[e]
        );
    }
}
