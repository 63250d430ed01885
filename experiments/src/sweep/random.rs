//! `[random]`: `n` seeded samples of keys from distributions, the same for every grid point.

use gradlab_kernels::rng::SplitMix64;
use toml::Value;

use super::spec::Spec;

/// A distribution of `[random]`.
#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    Uniform(f64, f64),
    LogUniform(f64, f64),
    /// Integers in `lo..=hi`.
    Int(i64, i64),
    Choice(Vec<Value>),
}

/// The `[random]` table: `n` seeded samples of some keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Random {
    pub n: usize,
    pub seed: u64,
    pub keys: Vec<(String, Dist)>,
}

/// A `[random]` value that is not a distribution, or not a valid one.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DistError(String);

/// Parses `{ uniform = [lo, hi] }`, `{ log_uniform = [lo, hi] }`, `{ int = [lo, hi] }` or
/// `{ choice = [...] }`.
pub(super) fn parse_dist(v: &Value) -> Result<Dist, DistError> {
    const FORMS: &str = "use { uniform = [lo, hi] }, { log_uniform = [lo, hi] }, \
                         { int = [lo, hi] } or { choice = [v1, v2, ...] }";
    let Some(t) = v.as_table().filter(|t| t.len() == 1) else {
        return Err(DistError(format!("{v} is not a distribution; {FORMS}")));
    };
    let (kind, arg) = t.iter().next().expect("one entry");
    let bad = |m: String| DistError(m);
    let pair = |f: &dyn Fn(&Value) -> Option<f64>| -> Result<(f64, f64), DistError> {
        match arg.as_array().map(|a| a.as_slice()) {
            Some([lo, hi]) => match (f(lo), f(hi)) {
                (Some(lo), Some(hi)) if lo.is_finite() && hi.is_finite() && lo < hi => Ok((lo, hi)),
                _ => Err(bad(format!(
                    "{kind} = {arg}: need two finite numbers lo < hi"
                ))),
            },
            _ => Err(bad(format!("{kind} = {arg}: need [lo, hi]"))),
        }
    };
    let number = |v: &Value| v.as_float().or(v.as_integer().map(|i| i as f64));
    match kind.as_str() {
        "uniform" => pair(&number).map(|(lo, hi)| Dist::Uniform(lo, hi)),
        "log_uniform" => match pair(&number)? {
            (lo, hi) if lo > 0.0 => Ok(Dist::LogUniform(lo, hi)),
            _ => Err(bad(format!("log_uniform = {arg}: lo must be > 0"))),
        },
        "int" => match pair(&|v: &Value| v.as_integer().map(|i| i as f64))? {
            // Drawn as lo + below(hi - lo + 1): the width must fit in an i64.
            (lo, hi) if hi - lo < i64::MAX as f64 => Ok(Dist::Int(lo as i64, hi as i64)),
            _ => Err(bad(format!(
                "int = {arg}: the range is too wide (hi - lo must be below {})",
                i64::MAX
            ))),
        },
        "choice" => match arg.as_array() {
            Some(a) if !a.is_empty() => Ok(Dist::Choice(a.clone())),
            _ => Err(bad(format!("choice = {arg}: need a non-empty list"))),
        },
        other => Err(bad(format!("unknown distribution '{other}'; {FORMS}"))),
    }
}

impl Dist {
    fn sample(&self, rng: &mut SplitMix64) -> Value {
        match self {
            Dist::Uniform(lo, hi) => Value::Float(rng.uniform(*lo, *hi)),
            Dist::LogUniform(lo, hi) => Value::Float(rng.uniform(lo.ln(), hi.ln()).exp()),
            Dist::Int(lo, hi) => Value::Integer(lo + rng.below((hi - lo + 1) as usize) as i64),
            Dist::Choice(values) => values[rng.below(values.len())].clone(),
        }
    }

    pub(super) fn to_value(&self) -> Value {
        let (kind, arg) = match self {
            Dist::Uniform(lo, hi) => ("uniform", vec![Value::Float(*lo), Value::Float(*hi)]),
            Dist::LogUniform(lo, hi) => ("log_uniform", vec![Value::Float(*lo), Value::Float(*hi)]),
            Dist::Int(lo, hi) => ("int", vec![Value::Integer(*lo), Value::Integer(*hi)]),
            Dist::Choice(values) => ("choice", values.clone()),
        };
        Value::Table(
            [(kind.to_string(), Value::Array(arg))]
                .into_iter()
                .collect(),
        )
    }
}

impl Spec {
    /// The `n` samples of `[random]` (without one: one sample with no keys).
    pub(super) fn samples(&self) -> Vec<Vec<(String, Value)>> {
        let Some(r) = &self.random else {
            return vec![Vec::new()];
        };
        let mut rng = SplitMix64(r.seed);
        (0..r.n)
            .map(|_| {
                r.keys
                    .iter()
                    .map(|(k, d)| (k.clone(), d.sample(&mut rng)))
                    .collect()
            })
            .collect()
    }
}
