//! The sweep spec: parsed from TOML with every error located (file and line, or flag), changed
//! by command-line overrides (`--set`, `--grid`), and written back as the expanded
//! `sweep.toml` that reproduces the same runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use toml::{Spanned, Value};

use super::random::{parse_dist, Dist, Random};
use super::{SpecError, SpecErrorKind, MAX_RUNS};
use crate::config::{
    did_you_mean, display_value as show, hint_unknown_field, parse_value, ConfigError, RunConfig,
    KEYS,
};

/// Why the keys that are not part of run_id cannot be swept (their runs would share one id).
const NOT_SWEPT: &str = "tags, note and the checkpoint settings do not change a run's results \
                         (they are not part of run_id), so they cannot be swept; set them in [base]";

/// One axis of the grid: a config key and the values it takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<Value>,
    /// Where the axis was given.
    pub(super) origin: String,
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

/// A problem with a spec whose place (file and line, or flag) the caller knows.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Problem {
    pub kind: SpecErrorKind,
    pub message: String,
}

impl Problem {
    fn new(kind: SpecErrorKind, message: impl Into<String>) -> Self {
        Problem {
            kind,
            message: message.into(),
        }
    }

    /// The error at `origin`, its message after `prefix`.
    pub(super) fn at(self, origin: impl Into<String>, prefix: &str) -> SpecError {
        SpecError::new(origin, self.kind, format!("{prefix}{}", self.message))
    }
}

/// Checks that `key` may be swept or set in `[base]`.
fn check_key(key: &str) -> Result<(), Problem> {
    if let Some((_, why)) = SPEC_ONLY.iter().find(|(k, _)| *k == key) {
        return Err(Problem::new(
            SpecErrorKind::Key,
            format!("'{key}' cannot be set here: {why}"),
        ));
    }
    if !KEYS.contains(&key) {
        let allowed: Vec<_> = KEYS
            .iter()
            .filter(|k| !SPEC_ONLY.iter().any(|(s, _)| s == *k))
            .copied()
            .collect();
        return Err(Problem::new(
            SpecErrorKind::Key,
            format!(
                "unknown key '{key}'{}; allowed keys: {}",
                did_you_mean(key, allowed.iter().copied()),
                allowed.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Checks a sweep name: it names the results folder, so it must be a plain file name.
pub fn check_name(name: &str) -> Result<(), SpecError> {
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
        Err(SpecError::new(
            "name",
            SpecErrorKind::Name,
            format!(
                "invalid sweep name {name:?}: use 1 to 100 letters, digits, '.', '_' or '-', \
                 starting with a letter or digit (it names the results folder)"
            ),
        ))
    }
}

impl Spec {
    /// Reads and checks the spec file at `path`.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SpecError::new(
                path.display().to_string(),
                SpecErrorKind::Read,
                format!("cannot read the sweep spec: {e}"),
            )
        })?;
        Spec::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a spec; `file` names it in error messages. Every problem found is
    /// reported at once (the first in the error, the others in its `also`), except TOML that
    /// does not parse, after which nothing else can be checked.
    pub fn parse(text: &str, file: &str) -> Result<Spec, SpecError> {
        let line = |span: std::ops::Range<usize>| {
            let start = span.start.min(text.len());
            format!("{file}:{}", text[..start].matches('\n').count() + 1)
        };
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            let int64 = format!(
                "integer too large: at most {} (TOML and the results store integers as int64)",
                i64::MAX
            );
            let message = match e.message() {
                "duplicate key" => "duplicate key: a key (or grid axis) may appear once per table",
                m if m.contains("value was too large") => &int64,
                m => m,
            };
            let origin = e.span().map_or_else(|| file.to_string(), &line);
            SpecError::new(origin, SpecErrorKind::Syntax, hint_unknown_field(message))
        })?;
        let err = |span: std::ops::Range<usize>, kind: SpecErrorKind, message: String| {
            SpecError::new(line(span), kind, message)
        };
        let mut errors = Vec::new();

        if let Err(e) = check_name(raw.name.get_ref()) {
            errors.push(err(raw.name.span(), e.kind, e.message));
        }
        let mut seeds = raw.seeds.get_ref().clone();
        if seeds.is_empty() {
            errors.push(err(
                raw.seeds.span(),
                SpecErrorKind::Seeds,
                "seeds is empty; give at least one, e.g. seeds = [0, 1, 2]".into(),
            ));
        }
        if let Some(s) = first_duplicate(&seeds) {
            errors.push(err(
                raw.seeds.span(),
                SpecErrorKind::Seeds,
                format!("seed {s} is listed twice"),
            ));
        }
        if let Some(s) = seeds.iter().find(|&&s| i64::try_from(s).is_err()) {
            errors.push(err(
                raw.seeds.span(),
                SpecErrorKind::Seeds,
                format!(
                    "seed {s} is too large: seeds are at most {} (the runs table stores them \
                     as int64)",
                    i64::MAX
                ),
            ));
            // Reported here, not again by every run of the expansion.
            seeds.retain(|&s| i64::try_from(s).is_ok());
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
            if let Err(p) = check_key(k) {
                errors.push(p.at(at, "[base] "));
                continue;
            }
            match base.set_value(k, value.get_ref().clone()) {
                Ok(()) => {
                    origins.insert(k.to_string(), at);
                }
                Err(e) => errors.push(config_problem(&e).at(line(value.span()), "[base] ")),
            }
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
                errors.push(err(
                    table_span,
                    SpecErrorKind::Axis,
                    "[grid] has no axes; add one (e.g. hidden = [32, 64]) or remove [grid] to \
                     sweep seeds only"
                        .into(),
                ));
            }
            axes.sort_by_key(|(k, _)| k.span().start);
            for (key, values) in axes {
                let k = key.get_ref().clone();
                let Value::Array(items) = values.get_ref() else {
                    errors.push(err(
                        values.span(),
                        SpecErrorKind::Axis,
                        format!(
                            "[grid] {k}: an axis is a list of values, e.g. {k} = [{}]",
                            show(values.get_ref())
                        ),
                    ));
                    continue;
                };
                if let Err(e) = spec.add_axis(&k, items.clone(), line(values.span())) {
                    errors.push(e);
                }
            }
        }

        if let Some(random) = raw.random {
            spec.origins.insert("random".into(), line(random.span()));
            spec.random = spec.parse_random(random, &line, &mut errors);
        }
        // With problems found, also those of the runs that the rest of the spec makes, so that
        // one attempt shows everything (without problems, the caller expands it anyway).
        if !errors.is_empty() {
            if let Err(mut e) = spec.expand() {
                let also = std::mem::take(&mut e.also);
                errors.push(e);
                errors.extend(also);
            }
        }
        match SpecError::all(errors) {
            Some(e) => Err(e),
            None => Ok(spec),
        }
    }

    /// Adds a grid axis after checking its key, its values (each on the base config) and that
    /// no value repeats.
    fn add_axis(&mut self, key: &str, values: Vec<Value>, origin: String) -> Result<(), SpecError> {
        let prefix = format!("[grid] {key}: ");
        let fail = |p: Problem| p.at(origin.clone(), &prefix);
        let axis = |message: &str| fail(Problem::new(SpecErrorKind::Axis, message));
        check_key(key).map_err(fail)?;
        if crate::config::NON_IDENTITY_KEYS.contains(&key) {
            return Err(axis(NOT_SWEPT));
        }
        if self.grid.iter().any(|a| a.key == key) {
            return Err(axis("this axis is given twice"));
        }
        if self.random_has(key) {
            return Err(axis(
                "this key is also drawn in [random]; sweep it in one place",
            ));
        }
        if values.is_empty() {
            return Err(axis("the axis is empty; give at least one value"));
        }
        let mut seen = BTreeSet::new();
        for value in &values {
            let mut cfg = self.base.clone();
            cfg.set_value(key, value.clone())
                .map_err(|e| fail(config_problem(&e)))?;
            check_value(&cfg, key).map_err(fail)?;
            if !seen.insert(cfg.value_string(key)) {
                return Err(axis(&format!("the value {} is listed twice", show(value))));
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

    /// `[random]`, or `None` after pushing its problems to `errors`.
    fn parse_random(
        &self,
        table: Spanned<BTreeMap<Spanned<String>, Spanned<Value>>>,
        line: &dyn Fn(std::ops::Range<usize>) -> String,
        errors: &mut Vec<SpecError>,
    ) -> Option<Random> {
        let before = errors.len();
        let table_span = table.span();
        let fail = |span: std::ops::Range<usize>, message: String| {
            SpecError::new(
                line(span),
                SpecErrorKind::Random,
                format!("[random] {message}"),
            )
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
                    Some(i) if (1..=MAX_RUNS as i64).contains(&i) => n = Some(i as usize),
                    _ => errors.push(fail(
                        span,
                        format!(
                            "n = {v}: must be an integer from 1 to {MAX_RUNS} (the most runs a \
                             sweep may have)"
                        ),
                    )),
                },
                "seed" => match v.as_integer() {
                    Some(i) if i >= 0 => seed = i as u64,
                    _ => errors.push(fail(span, format!("seed = {v}: must be an integer >= 0"))),
                },
                _ => match parse_dist(v) {
                    Err(e) => errors.push(fail(span, format!("{k}: {e}"))),
                    Ok(dist) => match self.check_random(k, &dist) {
                        Ok(()) => keys.push((k.to_string(), dist)),
                        Err(p) => errors.push(p.at(line(key.span()), "[random] ")),
                    },
                },
            }
        }
        if n.is_none() {
            errors.push(fail(
                table_span.clone(),
                "missing n, the number of samples (e.g. n = 16)".into(),
            ));
        }
        if keys.is_empty() && errors.len() == before {
            errors.push(fail(
                table_span,
                "no key to draw; add one, e.g. lr = { log_uniform = [1e-3, 1e-1] }".into(),
            ));
        }
        match n {
            Some(n) if errors.len() == before => Some(Random { n, seed, keys }),
            _ => None,
        }
    }

    /// Checks that `key` may be drawn from `dist`: a key that may be swept, not a grid axis, and
    /// every value the distribution can give suits it.
    fn check_random(&self, key: &str, dist: &Dist) -> Result<(), Problem> {
        check_key(key)?;
        if crate::config::NON_IDENTITY_KEYS.contains(&key) {
            return Err(Problem::new(SpecErrorKind::Random, NOT_SWEPT));
        }
        if self.grid.iter().any(|a| a.key == key) {
            return Err(Problem::new(
                SpecErrorKind::Random,
                format!("{key} is also a [grid] axis; sweep it in one place"),
            ));
        }
        let probes: Vec<Value> = match dist {
            Dist::Uniform(lo, hi) | Dist::LogUniform(lo, hi) => {
                vec![Value::Float(*lo), Value::Float(*hi)]
            }
            Dist::Int(lo, hi) => vec![Value::Integer(*lo), Value::Integer(*hi)],
            Dist::Choice(values) => values.clone(),
        };
        for probe in probes {
            let mut cfg = self.base.clone();
            cfg.set_value(key, probe).map_err(|e| {
                let p = config_problem(&e);
                Problem::new(p.kind, format!("{key}: {}", p.message))
            })?;
            check_value(&cfg, key)
                .map_err(|p| Problem::new(p.kind, format!("{key}: {}", p.message)))?;
        }
        Ok(())
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
        check_key(key).map_err(|p| p.at(origin.clone(), ""))?;
        if self.grid.iter().any(|a| a.key == key) || self.random_has(key) {
            return Err(SpecError::new(
                origin,
                SpecErrorKind::Key,
                format!("'{key}' is swept; use --grid {key}=v1,v2 to change its values"),
            ));
        }
        self.base
            .set_value(key, parse_value(value))
            .map_err(|e| config_problem(&e).at(origin.clone(), ""))?;
        self.origins.insert(key.to_string(), origin.clone());
        Ok(())
    }

    /// `--grid key=v1,v2`: replaces the axis `key` (or adds it).
    pub fn set_axis(&mut self, key: &str, values: &str) -> Result<(), SpecError> {
        let origin = format!("--grid {key}={values}");
        if self.random_has(key) {
            return Err(SpecError::new(
                origin,
                SpecErrorKind::Axis,
                format!("'{key}' is drawn in [random]; it cannot also be a grid axis"),
            ));
        }
        let values = axis_values(values)
            .map_err(|m| SpecError::new(origin.clone(), SpecErrorKind::Axis, m))?;
        self.grid.retain(|a| a.key != key);
        self.add_axis(key, values, origin)
    }

    /// `--random key=log_uniform(1e-4,1e-1)`: draws `key` from a distribution (the forms of
    /// `[random]`, written as calls), replacing its distribution when `[random]` has one. A spec
    /// without `[random]` gets one with `n = 0` until [`Spec::set_samples`] gives the count.
    pub fn set_random(&mut self, key: &str, text: &str) -> Result<(), SpecError> {
        let origin = format!("--random {key}={text}");
        let fail = |kind, m: String| SpecError::new(origin.clone(), kind, m);
        let value = call_value(text).map_err(|m| fail(SpecErrorKind::Random, m))?;
        let dist = parse_dist(&value).map_err(|e| fail(SpecErrorKind::Random, e.to_string()))?;
        self.check_random(key, &dist)
            .map_err(|p| p.at(origin.clone(), ""))?;
        let random = self.random.get_or_insert(Random {
            n: 0,
            seed: 0,
            keys: Vec::new(),
        });
        match random.keys.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = dist,
            None => random.keys.push((key.to_string(), dist)),
        }
        self.origins.insert("random".into(), origin);
        Ok(())
    }

    /// `--samples N`: the number of draws of `[random]` (given by the spec or `--random`).
    pub fn set_samples(&mut self, n: usize) -> Result<(), SpecError> {
        let fail = |m: &str| SpecError::new("--samples", SpecErrorKind::Random, m);
        let Some(random) = self.random.as_mut() else {
            return Err(fail(
                "nothing is drawn: give the keys to draw with --random, e.g. \
                 --random 'lr=log_uniform(1e-4,1e-1)'",
            ));
        };
        if !(1..=MAX_RUNS).contains(&n) {
            return Err(fail(&format!(
                "{n}: must be from 1 to {MAX_RUNS} (the most runs a sweep may have)"
            )));
        }
        random.n = n;
        Ok(())
    }

    /// Checks what the command line's overrides leave: a `--random` without `--samples`.
    pub fn check_overrides(&self) -> Result<(), SpecError> {
        match &self.random {
            Some(r) if r.n == 0 => Err(SpecError::new(
                "--random",
                SpecErrorKind::Random,
                "how many draws? add --samples N (e.g. --samples 8)",
            )),
            _ => Ok(()),
        }
    }

    /// A spec without a file: `name`, seed 0, the default `[base]`, no axes (the command line
    /// then adds them).
    pub fn new(name: &str) -> Result<Spec, SpecError> {
        check_name(name)?;
        let base = RunConfig {
            name: name.to_string(),
            ..RunConfig::default()
        };
        Ok(Spec {
            name: name.to_string(),
            seeds: vec![0],
            base,
            grid: Vec::new(),
            random: None,
            origins: BTreeMap::from([
                ("name".to_string(), "--name".to_string()),
                ("seeds".to_string(), "--seeds (default 0)".to_string()),
            ]),
        })
    }

    /// `--name`: the sweep's name (and its default results folder).
    pub fn set_name(&mut self, name: &str) -> Result<(), SpecError> {
        check_name(name)?;
        self.name = name.to_string();
        self.base.name = name.to_string();
        self.origins.insert("name".into(), format!("--name {name}"));
        Ok(())
    }

    /// `--seeds 0,1,2` (or `range(0,10)`): the seeds every combination runs with.
    pub fn set_seeds(&mut self, text: &str) -> Result<(), SpecError> {
        let origin = format!("--seeds {text}");
        let fail = |m: String| SpecError::new(origin.clone(), SpecErrorKind::Seeds, m);
        let seeds = axis_values(text)
            .map_err(fail)?
            .iter()
            .map(|v| match v.as_integer() {
                Some(i) if i >= 0 => Ok(i as u64),
                _ => Err(fail(format!("seed {}: must be an integer >= 0", show(v)))),
            })
            .collect::<Result<Vec<u64>, _>>()?;
        if seeds.is_empty() {
            return Err(fail("give at least one seed, e.g. --seeds 0,1,2".into()));
        }
        if let Some(s) = first_duplicate(&seeds) {
            return Err(fail(format!("seed {s} is listed twice")));
        }
        self.seeds = seeds;
        self.origins.insert("seeds".into(), origin);
        Ok(())
    }

    /// Where `key`'s value in a run came from.
    pub(super) fn origin_of(&self, key: &str) -> String {
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
        let mut base = self.base.to_table();
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

/// The values of a command-line axis: `v1,v2,...` (each a TOML value or a bare word), or
/// `range(start, stop[, step])`, the integers of Python's `range`.
fn axis_values(text: &str) -> Result<Vec<Value>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text.starts_with("range(") {
        let bad = |why: &str| {
            format!("{text}: {why}; write range(start, stop) or range(start, stop, step) with integers, e.g. range(50, 201, 50) for 50, 100, 150, 200")
        };
        let args = text
            .strip_prefix("range(")
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| bad("missing ')'"))?;
        let n: Vec<i64> = args
            .split(',')
            .map(|a| a.trim().parse::<i64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("the arguments are not integers"))?;
        let (start, stop, step) = match n[..] {
            [start, stop] => (start, stop, 1),
            [start, stop, step] => (start, stop, step),
            _ => return Err(bad("two or three arguments")),
        };
        if step == 0 {
            return Err(bad("the step must not be 0"));
        }
        let (span, stride) = if step > 0 {
            (stop - start, step)
        } else {
            (start - stop, -step)
        };
        let len = (span.max(0) as u64).div_ceil(stride as u64) as i64;
        if len == 0 {
            return Err(bad("the range is empty"));
        }
        if len > 100_000 {
            return Err(bad(&format!("{len} values is too many (at most 100000)")));
        }
        return Ok((0..len).map(|i| Value::Integer(start + i * step)).collect());
    }
    Ok(text.split(',').map(|v| parse_value(v.trim())).collect())
}

/// `name(a, b, ...)` as the TOML value `{ name = [a, b, ...] }`: a distribution of `[random]`
/// written on the command line.
fn call_value(text: &str) -> Result<Value, String> {
    let text = text.trim();
    let parsed = text
        .strip_suffix(')')
        .and_then(|t| t.split_once('('))
        .filter(|(name, _)| !name.trim().is_empty());
    let Some((name, args)) = parsed else {
        return Err(format!(
            "{text} is not a distribution; write uniform(lo,hi), log_uniform(lo,hi), \
             int(lo,hi) or choice(v1,v2,...)"
        ));
    };
    let args = args.split(',').map(|a| parse_value(a.trim())).collect();
    Ok(Value::Table(
        [(name.trim().to_string(), Value::Array(args))]
            .into_iter()
            .collect(),
    ))
}

fn first_duplicate<T: Ord + Copy>(items: &[T]) -> Option<T> {
    let mut seen = BTreeSet::new();
    items.iter().copied().find(|x| !seen.insert(*x))
}

/// Keys whose validation depends on their own value alone (not on other keys, which a grid
/// or [random] may change).
const SELF_CHECKED: [&str; 10] = [
    "hidden",
    "depth",
    "batch",
    "steps",
    "log_every",
    "eval_every",
    "eval_sequences",
    "lr",
    "momentum",
    "forget_bias",
];

/// The problem validation finds with the value of `key` in `cfg`, for keys whose range does
/// not depend on other keys (momentum in [0, 1), depth >= 1); the others are checked in the
/// expansion, run by run.
fn check_value(cfg: &RunConfig, key: &str) -> Result<(), Problem> {
    let Some(value) = cfg.to_table().get(key).cloned() else {
        return Ok(());
    };
    if !SELF_CHECKED.contains(&key) {
        return Ok(());
    }
    // On the defaults, so that another key's problem cannot hide this one's.
    let mut alone = RunConfig::default();
    if alone.set_value(key, value).is_err() {
        return Ok(());
    }
    match alone.validate() {
        Err(e) if matches!(&e, ConfigError::BadValue { key: bad, .. } if bad == key) => {
            Err(config_problem(&e))
        }
        _ => Ok(()),
    }
}

/// A config error as a spec problem (the key is said by the error).
pub(super) fn config_problem(e: &ConfigError) -> Problem {
    match e {
        ConfigError::UnknownKey { key, .. } => check_key(key)
            .err()
            .unwrap_or_else(|| Problem::new(SpecErrorKind::Key, e.to_string())),
        ConfigError::Toml { .. } => Problem::new(SpecErrorKind::Syntax, e.to_string()),
        ConfigError::BadValue { .. } => Problem::new(SpecErrorKind::Value, e.to_string()),
    }
}
