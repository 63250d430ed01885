//! The sweep spec: parsed from TOML with every error located (file and line, or flag), changed
//! by command-line overrides (`--set`, `--grid`), and written back as the expanded
//! `sweep.toml` that reproduces the same runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use toml::{Spanned, Value};

use super::random::{parse_dist, Dist, Random};
use super::{SpecError, SpecErrorKind};
use crate::config::{display_value as show, parse_value, ConfigError, RunConfig, KEYS};

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
            format!("unknown key '{key}'; allowed keys: {}", allowed.join(", ")),
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
            SpecError::new(origin, SpecErrorKind::Syntax, message)
        })?;
        let err = |span: std::ops::Range<usize>, kind: SpecErrorKind, message: String| {
            SpecError::new(line(span), kind, message)
        };

        check_name(raw.name.get_ref()).map_err(|e| err(raw.name.span(), e.kind, e.message))?;
        let seeds = raw.seeds.get_ref().clone();
        if seeds.is_empty() {
            return Err(err(
                raw.seeds.span(),
                SpecErrorKind::Seeds,
                "seeds is empty; give at least one, e.g. seeds = [0, 1, 2]".into(),
            ));
        }
        if let Some(s) = first_duplicate(&seeds) {
            return Err(err(
                raw.seeds.span(),
                SpecErrorKind::Seeds,
                format!("seed {s} is listed twice"),
            ));
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
            check_key(k).map_err(|p| p.at(line(key.span()), "[base] "))?;
            base.set_value(k, value.get_ref().clone())
                .map_err(|e| config_problem(&e).at(line(value.span()), "[base] "))?;
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
                    return Err(err(
                        values.span(),
                        SpecErrorKind::Axis,
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
        let prefix = format!("[grid] {key}: ");
        let fail = |p: Problem| p.at(origin.clone(), &prefix);
        let axis = |message: &str| fail(Problem::new(SpecErrorKind::Axis, message));
        check_key(key).map_err(fail)?;
        if crate::config::LABEL_KEYS.contains(&key) {
            return Err(axis(
                "tags and note label runs without changing them (they are not part of run_id), \
                 so they cannot be swept; set them in [base]",
            ));
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

    fn parse_random(
        &self,
        table: Spanned<BTreeMap<Spanned<String>, Spanned<Value>>>,
        line: &dyn Fn(std::ops::Range<usize>) -> String,
    ) -> Result<Random, SpecError> {
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
                    Some(i) if i >= 1 => n = Some(i as usize),
                    _ => return Err(fail(span, format!("n = {v}: must be an integer >= 1"))),
                },
                "seed" => match v.as_integer() {
                    Some(i) if i >= 0 => seed = i as u64,
                    _ => return Err(fail(span, format!("seed = {v}: must be an integer >= 0"))),
                },
                _ => {
                    check_key(k).map_err(|p| p.at(line(key.span()), "[random] "))?;
                    if self.grid.iter().any(|a| a.key == k) {
                        return Err(fail(
                            key.span(),
                            format!("{k} is also a [grid] axis; sweep it in one place"),
                        ));
                    }
                    let dist =
                        parse_dist(v).map_err(|e| fail(span.clone(), format!("{k}: {e}")))?;
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
                            config_problem(&e).at(line(span.clone()), &format!("[random] {k}: "))
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
        let values: Vec<Value> = if values.trim().is_empty() {
            Vec::new()
        } else {
            values.split(',').map(|v| parse_value(v.trim())).collect()
        };
        self.grid.retain(|a| a.key != key);
        self.add_axis(key, values, origin)
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

fn first_duplicate<T: Ord + Copy>(items: &[T]) -> Option<T> {
    let mut seen = BTreeSet::new();
    items.iter().copied().find(|x| !seen.insert(*x))
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
