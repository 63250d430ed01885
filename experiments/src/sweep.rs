//! Sweeps (DESIGN.md "Sweeps, storage, distribution"): a TOML spec expanded into runs, run in
//! parallel with resume, and split into disjoint shards for many machines.
//!
//! A spec has `name`, `seeds`, a `[base]` run config, a `[grid]` of axes whose Cartesian
//! product runs, and optionally `[random]`: `n` samples (from `seed`) of keys drawn from
//! `{ uniform = [lo, hi] }`, `{ log_uniform = [lo, hi] }`, `{ int = [lo, hi] }` (inclusive) or
//! `{ choice = [v, ...] }`. Every grid point runs with the same `n` samples, and every
//! combination with every seed. Errors name the file, line and key, and say what is allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::Par;
use serde::Deserialize;
use toml::{Spanned, Value};

use crate::config::{parse_value, CellKind, RunConfig, KEYS};
use crate::error::ConfigError;
use crate::store::{self, Provenance};
use crate::train::{Outcome, Trainer};

/// A spec that cannot be run: where (file and line, or the command-line flag) and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct SpecError {
    pub origin: String,
    pub message: String,
}

/// One axis of the grid: a config key and the values it takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<Value>,
    /// Where the axis was given.
    origin: String,
}

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

/// A parsed and checked sweep spec, with any command-line overrides applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub name: String,
    pub seeds: Vec<u64>,
    /// The base run config (defaults for keys the spec leaves out).
    pub base: RunConfig,
    pub grid: Vec<Axis>,
    pub random: Option<Random>,
    /// Where each key of `[base]` (and `name`, `seeds`) was set.
    origins: BTreeMap<String, String>,
}

/// One run of an expanded sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedRun {
    /// Position in the expansion (grid point, then random sample, then seed).
    pub index: usize,
    pub id: String,
    pub config: RunConfig,
    /// The values of the swept keys (grid axes, random keys, seed), as `key=value`.
    pub swept: Vec<(String, String)>,
}

impl PlannedRun {
    /// `hidden=50 clip=norm:1 seed=0`.
    pub fn label(&self) -> String {
        label(&self.swept)
    }
}

fn label(swept: &[(String, String)]) -> String {
    swept
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Keys a spec sets outside `[base]` and `[grid]`.
const SPEC_ONLY: [(&str, &str); 2] = [
    ("name", "the sweep's name is the top-level `name`"),
    ("seed", "seeds come from the top-level `seeds = [...]`"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: Spanned<String>,
    seeds: Spanned<Vec<u64>>,
    #[serde(default)]
    base: BTreeMap<Spanned<String>, Spanned<Value>>,
    grid: Option<Spanned<BTreeMap<Spanned<String>, Spanned<Value>>>>,
    random: Option<Spanned<BTreeMap<Spanned<String>, Spanned<Value>>>>,
}

/// Display form of a value: strings bare, everything else as TOML.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The canonical form of `key`'s value in `cfg` (so `norm:1` and `norm:1.0` compare equal).
fn canonical(cfg: &RunConfig, key: &str) -> String {
    let table = toml::Table::try_from(cfg).expect("a RunConfig always serializes");
    table.get(key).map_or_else(|| "(unset)".into(), show)
}

/// Checks that `key` may be swept or set in `[base]`.
fn check_key(key: &str) -> Result<(), String> {
    if let Some((_, why)) = SPEC_ONLY.iter().find(|(k, _)| *k == key) {
        return Err(format!("'{key}' cannot be set here: {why}"));
    }
    if !KEYS.contains(&key) {
        let allowed: Vec<_> = KEYS
            .iter()
            .filter(|k| !SPEC_ONLY.iter().any(|(s, _)| s == *k))
            .copied()
            .collect();
        return Err(format!(
            "unknown key '{key}'; allowed keys: {}",
            allowed.join(", ")
        ));
    }
    Ok(())
}

/// Checks a sweep name: it names the results folder, so it must be a plain file name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid sweep name {name:?}: use 1 to 100 letters, digits, '.', '_' or '-', starting \
             with a letter or digit (it names the results folder)"
        ))
    }
}

impl Spec {
    /// Reads and checks the spec file at `path`.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            origin: path.display().to_string(),
            message: format!("cannot read the sweep spec: {e}"),
        })?;
        Spec::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a spec; `file` names it in error messages.
    pub fn parse(text: &str, file: &str) -> Result<Spec, SpecError> {
        let line = |span: std::ops::Range<usize>| {
            let start = span.start.min(text.len());
            format!("{file}:{}", text[..start].matches('\n').count() + 1)
        };
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            let message = match e.message() {
                "duplicate key" => "duplicate key: a key (or grid axis) may appear once per table",
                m => m,
            }
            .to_string();
            let origin = e.span().map_or_else(|| file.to_string(), &line);
            SpecError { origin, message }
        })?;
        let err = |span: std::ops::Range<usize>, message: String| SpecError {
            origin: line(span),
            message,
        };

        check_name(raw.name.get_ref()).map_err(|m| err(raw.name.span(), m))?;
        let seeds = raw.seeds.get_ref().clone();
        if seeds.is_empty() {
            return Err(err(
                raw.seeds.span(),
                "seeds is empty; give at least one, e.g. seeds = [0, 1, 2]".into(),
            ));
        }
        if let Some(s) = first_duplicate(&seeds) {
            return Err(err(raw.seeds.span(), format!("seed {s} is listed twice")));
        }
        let mut origins = BTreeMap::new();
        origins.insert("name".to_string(), line(raw.name.span()));
        origins.insert("seeds".to_string(), line(raw.seeds.span()));

        // [base], in file order (the order of errors).
        let mut base_keys: Vec<_> = raw.base.into_iter().collect();
        base_keys.sort_by_key(|(k, _)| k.span().start);
        let mut base = RunConfig::default();
        for (key, value) in base_keys {
            let at = line(key.span());
            let k = key.get_ref().as_str();
            check_key(k).map_err(|m| err(key.span(), format!("[base] {m}")))?;
            base.set_value(k, value.get_ref().clone())
                .map_err(|e| err(value.span(), format!("[base] {}", config_message(&e))))?;
            origins.insert(k.to_string(), at);
        }
        base.name = raw.name.get_ref().clone();

        let mut spec = Spec {
            name: raw.name.into_inner(),
            seeds,
            base,
            grid: Vec::new(),
            random: None,
            origins,
        };

        if let Some(grid) = raw.grid {
            let table_span = grid.span();
            let mut axes: Vec<_> = grid.into_inner().into_iter().collect();
            if axes.is_empty() {
                return Err(err(
                    table_span,
                    "[grid] has no axes; add one (e.g. hidden = [32, 64]) or remove [grid] to \
                     sweep seeds only"
                        .into(),
                ));
            }
            axes.sort_by_key(|(k, _)| k.span().start);
            for (key, values) in axes {
                let k = key.get_ref().clone();
                let Value::Array(items) = values.get_ref() else {
                    return Err(err(
                        values.span(),
                        format!(
                            "[grid] {k}: an axis is a list of values, e.g. {k} = [{}]",
                            show(values.get_ref())
                        ),
                    ));
                };
                spec.add_axis(&k, items.clone(), line(values.span()))?;
            }
        }

        if let Some(random) = raw.random {
            spec.origins.insert("random".into(), line(random.span()));
            spec.random = Some(spec.parse_random(random, &line)?);
        }
        Ok(spec)
    }

    /// Adds a grid axis after checking its key, its values (each on the base config) and that
    /// no value repeats.
    fn add_axis(&mut self, key: &str, values: Vec<Value>, origin: String) -> Result<(), SpecError> {
        let fail = |message: String| SpecError {
            origin: origin.clone(),
            message: format!("[grid] {key}: {message}"),
        };
        check_key(key).map_err(fail)?;
        if self.grid.iter().any(|a| a.key == key) {
            return Err(fail("this axis is given twice".into()));
        }
        if self.random_has(key) {
            return Err(fail(
                "this key is also drawn in [random]; sweep it in one place".into(),
            ));
        }
        if values.is_empty() {
            return Err(fail("the axis is empty; give at least one value".into()));
        }
        let mut seen = BTreeSet::new();
        for value in &values {
            let mut cfg = self.base.clone();
            cfg.set_value(key, value.clone())
                .map_err(|e| fail(config_message(&e)))?;
            if !seen.insert(canonical(&cfg, key)) {
                return Err(fail(format!("the value {} is listed twice", show(value))));
            }
        }
        self.grid.push(Axis {
            key: key.to_string(),
            values,
            origin,
        });
        Ok(())
    }

    fn random_has(&self, key: &str) -> bool {
        self.random
            .as_ref()
            .is_some_and(|r| r.keys.iter().any(|(k, _)| k == key))
    }

    fn parse_random(
        &self,
        table: Spanned<BTreeMap<Spanned<String>, Spanned<Value>>>,
        line: &dyn Fn(std::ops::Range<usize>) -> String,
    ) -> Result<Random, SpecError> {
        let table_span = table.span();
        let fail = |span: std::ops::Range<usize>, message: String| SpecError {
            origin: line(span),
            message: format!("[random] {message}"),
        };
        let mut entries: Vec<_> = table.into_inner().into_iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        let mut n = None;
        let mut seed = 0;
        let mut keys = Vec::new();
        for (key, value) in entries {
            let k = key.get_ref().as_str();
            let (span, v) = (value.span(), value.get_ref());
            match k {
                "n" => match v.as_integer() {
                    Some(i) if i >= 1 => n = Some(i as usize),
                    _ => return Err(fail(span, format!("n = {v}: must be an integer >= 1"))),
                },
                "seed" => match v.as_integer() {
                    Some(i) if i >= 0 => seed = i as u64,
                    _ => return Err(fail(span, format!("seed = {v}: must be an integer >= 0"))),
                },
                _ => {
                    check_key(k).map_err(|m| fail(key.span(), m))?;
                    if self.grid.iter().any(|a| a.key == k) {
                        return Err(fail(
                            key.span(),
                            format!("{k} is also a [grid] axis; sweep it in one place"),
                        ));
                    }
                    let dist =
                        parse_dist(v).map_err(|m| fail(span.clone(), format!("{k}: {m}")))?;
                    // Every value the distribution can give must suit the key.
                    let probes: Vec<Value> = match &dist {
                        Dist::Uniform(lo, hi) | Dist::LogUniform(lo, hi) => {
                            vec![Value::Float(*lo), Value::Float(*hi)]
                        }
                        Dist::Int(lo, hi) => vec![Value::Integer(*lo), Value::Integer(*hi)],
                        Dist::Choice(values) => values.clone(),
                    };
                    for probe in probes {
                        let mut cfg = self.base.clone();
                        cfg.set_value(k, probe).map_err(|e| {
                            fail(span.clone(), format!("{k}: {}", config_message(&e)))
                        })?;
                    }
                    keys.push((k.to_string(), dist));
                }
            }
        }
        let Some(n) = n else {
            return Err(fail(
                table_span,
                "missing n, the number of samples (e.g. n = 16)".into(),
            ));
        };
        if keys.is_empty() {
            return Err(fail(
                table_span,
                "no key to draw; add one, e.g. lr = { log_uniform = [1e-3, 1e-1] }".into(),
            ));
        }
        Ok(Random { n, seed, keys })
    }

    /// The swept keys: the grid's axes, then the keys of `[random]`.
    pub fn swept_keys(&self) -> Vec<String> {
        let random = self
            .random
            .iter()
            .flat_map(|r| r.keys.iter().map(|(k, _)| k.clone()));
        self.grid
            .iter()
            .map(|a| a.key.clone())
            .chain(random)
            .collect()
    }

    /// `--set key=value`: changes one key of `[base]`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SpecError> {
        let origin = format!("--set {key}={value}");
        let fail = |message: String| SpecError {
            origin: origin.clone(),
            message,
        };
        check_key(key).map_err(fail)?;
        if self.grid.iter().any(|a| a.key == key) || self.random_has(key) {
            return Err(fail(format!(
                "'{key}' is swept; use --grid {key}=v1,v2 to change its values"
            )));
        }
        self.base
            .set_value(key, parse_value(value))
            .map_err(|e| fail(config_message(&e)))?;
        self.origins.insert(key.to_string(), origin.clone());
        Ok(())
    }

    /// `--grid key=v1,v2`: replaces the axis `key` (or adds it).
    pub fn set_axis(&mut self, key: &str, values: &str) -> Result<(), SpecError> {
        let origin = format!("--grid {key}={values}");
        if self.random_has(key) {
            return Err(SpecError {
                origin,
                message: format!("'{key}' is drawn in [random]; it cannot also be a grid axis"),
            });
        }
        let values: Vec<Value> = if values.trim().is_empty() {
            Vec::new()
        } else {
            values.split(',').map(|v| parse_value(v.trim())).collect()
        };
        self.grid.retain(|a| a.key != key);
        self.add_axis(key, values, origin)
    }

    /// Where `key`'s value in a run came from.
    fn origin_of(&self, key: &str) -> String {
        if let Some(axis) = self.grid.iter().find(|a| a.key == key) {
            return axis.origin.clone();
        }
        if self.random_has(key) {
            return self
                .origins
                .get("random")
                .cloned()
                .unwrap_or("[random]".into());
        }
        self.origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| format!("{key} (default value)"))
    }

    /// The `n` samples of `[random]` (empty: one sample with no keys).
    fn samples(&self) -> Vec<Vec<(String, Value)>> {
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

    /// Every run of the sweep, in order: grid points (last axis fastest), then random samples,
    /// then seeds. Each config is validated; an impossible combination names where its keys
    /// were set. Runs that come out identical are listed once.
    pub fn expand(&self) -> Result<Vec<PlannedRun>, SpecError> {
        let samples = self.samples();
        let sizes: Vec<usize> = self.grid.iter().map(|a| a.values.len()).collect();
        let points: usize = sizes.iter().product();
        let mut runs = Vec::new();
        let mut ids = BTreeSet::new();
        for p in 0..points {
            // Mixed-radix digits of p, last axis fastest.
            let mut rest = p;
            let mut choice = vec![(0, 0); sizes.len()];
            for (a, &size) in sizes.iter().enumerate().rev() {
                choice[a] = (a, rest % size);
                rest /= size;
            }
            let mut cfg = self.base.clone();
            let mut swept = Vec::new();
            for &(a, v) in &choice {
                let axis = &self.grid[a];
                cfg.set_value(&axis.key, axis.values[v].clone())
                    .map_err(|e| SpecError {
                        origin: axis.origin.clone(),
                        message: config_message(&e),
                    })?;
                swept.push((axis.key.clone(), canonical(&cfg, &axis.key)));
            }
            for sample in &samples {
                let mut cfg = cfg.clone();
                let mut swept = swept.clone();
                for (k, v) in sample {
                    cfg.set_value(k, v.clone()).map_err(|e| SpecError {
                        origin: "[random]".into(),
                        message: config_message(&e),
                    })?;
                    swept.push((k.clone(), canonical(&cfg, k)));
                }
                for &seed in &self.seeds {
                    let mut cfg = cfg.clone();
                    cfg.seed = seed;
                    cfg.name = self.name.clone();
                    let mut swept = swept.clone();
                    swept.push(("seed".into(), seed.to_string()));
                    if let Err(e) = cfg.validate() {
                        let key = match &e {
                            ConfigError::BadValue { key, .. }
                            | ConfigError::UnknownKey { key, .. } => key.clone(),
                            ConfigError::Toml(_) => String::new(),
                        };
                        let label = label(&swept);
                        return Err(SpecError {
                            origin: self.origin_of(&key),
                            message: format!("in the run {label}: {}", config_message(&e)),
                        });
                    }
                    let id = store::run_id(&cfg);
                    if ids.insert(id.clone()) {
                        runs.push(PlannedRun {
                            index: runs.len(),
                            id,
                            config: cfg,
                            swept,
                        });
                    }
                }
            }
        }
        Ok(runs)
    }

    /// The spec as TOML with every override applied and every `[base]` key explicit, so that
    /// reading it back expands to the same runs (`results/<name>/sweep.toml`).
    pub fn to_toml(&self) -> String {
        let mut doc = toml::Table::new();
        doc.insert("name".into(), Value::String(self.name.clone()));
        doc.insert(
            "seeds".into(),
            Value::Array(
                self.seeds
                    .iter()
                    .map(|&s| Value::Integer(s as i64))
                    .collect(),
            ),
        );
        let mut base = toml::Table::try_from(&self.base).expect("a RunConfig always serializes");
        base.remove("name");
        base.remove("seed");
        doc.insert("base".into(), Value::Table(base));
        if !self.grid.is_empty() {
            let grid = self
                .grid
                .iter()
                .map(|a| (a.key.clone(), Value::Array(a.values.clone())))
                .collect();
            doc.insert("grid".into(), Value::Table(grid));
        }
        if let Some(r) = &self.random {
            let mut t = toml::Table::new();
            t.insert("n".into(), Value::Integer(r.n as i64));
            t.insert("seed".into(), Value::Integer(r.seed as i64));
            for (k, d) in &r.keys {
                t.insert(k.clone(), d.to_value());
            }
            doc.insert("random".into(), Value::Table(t));
        }
        format!(
            "# The expanded sweep spec, written by gradlab: `gradlab sweep` on this file runs the \
             same runs.\n{}",
            toml::to_string(&doc).expect("a spec always serializes")
        )
    }
}

fn first_duplicate<T: Ord + Copy>(items: &[T]) -> Option<T> {
    let mut seen = BTreeSet::new();
    items.iter().copied().find(|x| !seen.insert(*x))
}

/// A config error as a spec message (the key is said by the error).
fn config_message(e: &ConfigError) -> String {
    match e {
        ConfigError::UnknownKey { key, .. } => check_key(key).err().unwrap_or(e.to_string()),
        _ => e.to_string(),
    }
}

fn parse_dist(v: &Value) -> Result<Dist, String> {
    const FORMS: &str = "use { uniform = [lo, hi] }, { log_uniform = [lo, hi] }, \
                         { int = [lo, hi] } or { choice = [v1, v2, ...] }";
    let Some(t) = v.as_table().filter(|t| t.len() == 1) else {
        return Err(format!("{v} is not a distribution; {FORMS}"));
    };
    let (kind, arg) = t.iter().next().expect("one entry");
    let pair = |f: &dyn Fn(&Value) -> Option<f64>| -> Result<(f64, f64), String> {
        match arg.as_array().map(|a| a.as_slice()) {
            Some([lo, hi]) => match (f(lo), f(hi)) {
                (Some(lo), Some(hi)) if lo.is_finite() && hi.is_finite() && lo < hi => Ok((lo, hi)),
                _ => Err(format!("{kind} = {arg}: need two finite numbers lo < hi")),
            },
            _ => Err(format!("{kind} = {arg}: need [lo, hi]")),
        }
    };
    let number = |v: &Value| v.as_float().or(v.as_integer().map(|i| i as f64));
    match kind.as_str() {
        "uniform" => pair(&number).map(|(lo, hi)| Dist::Uniform(lo, hi)),
        "log_uniform" => match pair(&number)? {
            (lo, hi) if lo > 0.0 => Ok(Dist::LogUniform(lo, hi)),
            _ => Err(format!("log_uniform = {arg}: lo must be > 0")),
        },
        "int" => pair(&|v: &Value| v.as_integer().map(|i| i as f64))
            .map(|(lo, hi)| Dist::Int(lo as i64, hi as i64)),
        "choice" => match arg.as_array() {
            Some(a) if !a.is_empty() => Ok(Dist::Choice(a.clone())),
            _ => Err(format!("choice = {arg}: need a non-empty list")),
        },
        other => Err(format!("unknown distribution '{other}'; {FORMS}")),
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

    fn to_value(&self) -> Value {
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

/// The runs of shard `i` of `n`: every `n`-th run from the `i`-th, so shards are balanced
/// across the grid and disjoint, and together hold every run.
pub fn shard(runs: &[PlannedRun], i: usize, n: usize) -> Vec<&PlannedRun> {
    runs.iter().filter(|r| r.index % n == i).collect()
}

/// Parses `i/N` with 0 <= i < N.
pub fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("invalid shard '{text}': expected i/N with 0 <= i < N, e.g. --shard 0/4");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Floating-point work of one training step, about 6·T·B·G·H·(I + H) per layer with I ~ H: the
/// size that decides whether a run gets threads of its own.
fn flops_per_step(cfg: &RunConfig) -> f64 {
    let gates = if cfg.cell == CellKind::Lstm { 4.0 } else { 1.0 };
    let h = cfg.hidden as f64;
    6.0 * (cfg.seq_len * cfg.batch * cfg.depth) as f64 * gates * h * 2.0 * h
}

/// Above this many FLOPs per step (about 10 ms on one core), a run splits its kernels over the
/// sweep's threads; below it, runs go one per core, which wastes nothing on synchronisation.
const PARALLEL_FLOPS: f64 = 1e9;

/// How to run a sweep's runs.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Threads (runs at once for small models).
    pub jobs: usize,
    /// Stop starting runs after the first failure.
    pub fail_fast: bool,
}

/// What the runner reports as runs start and end (from its worker threads).
#[derive(Debug)]
pub enum Event<'a> {
    Started(&'a PlannedRun),
    Finished(&'a PlannedRun, &'a Outcome),
    Failed(&'a PlannedRun, &'a str),
}

/// How a sweep invocation ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub finished: usize,
    pub diverged: usize,
    pub failed: usize,
    /// Runs not started because `fail_fast` stopped the sweep.
    pub not_started: usize,
}

/// Testing hook: a run_id whose run panics (`GRADLAB_TEST_PANIC_RUN`), to test that a crash
/// in one run is recorded and the sweep goes on.
fn injected_panic() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| std::env::var("GRADLAB_TEST_PANIC_RUN").ok())
        .as_deref()
}

/// Runs `runs` into `dir` on `opts.jobs` threads. Each run writes its tables (the `runs` row
/// last); a run that fails or panics is written to `failed/<run_id>.json` and the others go on
/// (unless `fail_fast`). A run that diverges is complete: divergence is an outcome.
pub fn execute(
    dir: &Path,
    runs: &[&PlannedRun],
    opts: &RunnerOptions,
    prov: &Provenance,
    on_event: &(dyn Fn(Event) + Sync),
) -> std::io::Result<Summary> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .map_err(std::io::Error::other)?;
    // Workers take runs in order (so a partly done sweep has whole grid points done first).
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let summary = Mutex::new(Summary::default());
    pool.scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|_| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(run) = runs.get(i) else { break };
                if stop.load(Ordering::Relaxed) {
                    lock(&summary).not_started += 1;
                    continue;
                }
                on_event(Event::Started(run));
                let par = if flops_per_step(&run.config) < PARALLEL_FLOPS {
                    Par::Seq
                } else {
                    Par::rayon(opts.jobs)
                };
                match run_one(dir, run, par, prov) {
                    Ok(outcome) => {
                        {
                            let mut s = lock(&summary);
                            s.finished += 1;
                            s.diverged += usize::from(outcome.diverged_at_step.is_some());
                        }
                        on_event(Event::Finished(run, &outcome));
                    }
                    Err(message) => {
                        if opts.fail_fast {
                            stop.store(true, Ordering::Relaxed);
                        }
                        lock(&summary).failed += 1;
                        on_event(Event::Failed(run, &message));
                    }
                }
            });
        }
    });
    Ok(summary.into_inner().unwrap_or_else(|p| p.into_inner()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Trains and stores one run; a panic or error becomes `failed/<run_id>.json` and an `Err`.
fn run_one(dir: &Path, run: &PlannedRun, par: Par, prov: &Provenance) -> Result<Outcome, String> {
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Outcome, String> {
        if injected_panic() == Some(run.id.as_str()) {
            panic!("injected panic (GRADLAB_TEST_PANIC_RUN={})", run.id);
        }
        let mut trainer = Trainer::new(run.config.clone(), par).map_err(|e| e.to_string())?;
        let record = trainer.run(|_, _| {});
        store::write_run(dir, &run.config, &record, prov)
            .map_err(|e| format!("cannot write the results to {}: {e}", dir.display()))?;
        Ok(record.outcome)
    }));
    let result = result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        Err(format!("panicked: {message}"))
    });
    let failed = dir.join("failed").join(format!("{}.json", run.id));
    match &result {
        Ok(_) => {
            if failed.exists() {
                std::fs::remove_file(&failed).map_err(|e| {
                    format!("completed, but cannot remove {}: {e}", failed.display())
                })?;
            }
        }
        Err(message) => {
            let record = serde_json::json!({
                "run_id": run.id,
                "error": message,
                "swept": run.swept.iter().cloned().collect::<BTreeMap<_, _>>(),
                "config": run.config.to_toml(),
                "host": store::host(),
                "gradlab_version": prov.gradlab_version,
                "git_commit": prov.git_commit,
                "unix_time": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            });
            let text = serde_json::to_string_pretty(&record).expect("json serializes");
            store::write_atomic(&failed, |f| std::io::Write::write_all(f, text.as_bytes()))
                .map_err(|e| format!("{message} (and cannot write {}: {e})", failed.display()))?;
        }
    }
    result
}

/// Where a sweep's runs stand in its results folder.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    pub total: usize,
    pub complete: usize,
    /// Failed and not since completed: (run, first line of the error).
    pub failed: Vec<(PlannedRun, String)>,
    pub missing: usize,
}

/// Counts the complete (in `done`, from [`store::completed_ids`]), failed and missing runs of
/// `runs` in `dir`.
pub fn progress(dir: &Path, runs: &[PlannedRun], done: &BTreeSet<String>) -> Progress {
    let mut p = Progress {
        total: runs.len(),
        ..Progress::default()
    };
    for run in runs {
        if done.contains(&run.id) {
            p.complete += 1;
            continue;
        }
        let failed = dir.join("failed").join(format!("{}.json", run.id));
        match std::fs::read_to_string(&failed) {
            Ok(text) => {
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(String::from))
                    .unwrap_or_else(|| "(unreadable failure record)".into());
                let first = message.lines().next().unwrap_or("").to_string();
                p.failed.push((run.clone(), first));
            }
            Err(_) => p.missing += 1,
        }
    }
    p
}
