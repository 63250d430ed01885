//! Expansion: a spec's runs in order (grid points, then random samples, then seeds), each with
//! its validated config and identity, and the shards that split them over machines.

use std::collections::BTreeSet;

use super::identity::run_id;
use super::spec::{config_problem, Spec};
use super::{SpecError, SpecErrorKind, MAX_RUNS};
use crate::config::{ConfigError, RunConfig};

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

impl Spec {
    /// Every run of the sweep, in order: grid points (last axis fastest), then random samples,
    /// then seeds. Each config is validated; an impossible combination names where its keys
    /// were set, and every distinct problem is reported (the first run that shows each). Runs
    /// that come out identical are listed once.
    pub fn expand(&self) -> Result<Vec<PlannedRun>, SpecError> {
        self.check_run_count()?;
        let samples = self.samples();
        let sizes: Vec<usize> = self.grid.iter().map(|a| a.values.len()).collect();
        let points: usize = sizes.iter().product();
        let mut runs = Vec::new();
        let mut ids = BTreeSet::new();
        let mut errors: Vec<SpecError> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut report = |e: SpecError, what: String| {
            if seen.insert((e.origin.clone(), what)) {
                errors.push(e);
            }
        };
        'points: for p in 0..points {
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
                if let Err(e) = cfg.set_value(&axis.key, axis.values[v].clone()) {
                    let p = config_problem(&e);
                    report(p.clone().at(axis.origin.clone(), ""), p.message);
                    continue 'points;
                }
                swept.push((axis.key.clone(), cfg.value_string(&axis.key)));
            }
            'samples: for sample in &samples {
                let mut cfg = cfg.clone();
                let mut swept = swept.clone();
                for (k, v) in sample {
                    if let Err(e) = cfg.set_value(k, v.clone()) {
                        let p = config_problem(&e);
                        report(p.clone().at(self.origin_of(k), ""), p.message);
                        continue 'samples;
                    }
                    swept.push((k.clone(), cfg.value_string(k)));
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
                            ConfigError::Toml { .. } => String::new(),
                        };
                        let label = label(&swept);
                        let message = config_problem(&e).message;
                        report(
                            SpecError::new(
                                self.origin_of(&key),
                                SpecErrorKind::Run,
                                format!("in the run {label}: {message}"),
                            ),
                            message,
                        );
                        continue;
                    }
                    let id = run_id(&cfg);
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
        const SHOWN: usize = 20;
        let more = errors.len().saturating_sub(SHOWN);
        errors.truncate(SHOWN);
        if more > 0 {
            let last = errors.last().expect("SHOWN > 0").origin.clone();
            errors.push(SpecError::new(
                last,
                SpecErrorKind::Run,
                format!("... and {more} more problems of the same kinds"),
            ));
        }
        match SpecError::all(errors) {
            Some(e) => Err(e),
            None => Ok(runs),
        }
    }
}

impl Spec {
    /// Refuses a sweep of more than [`MAX_RUNS`] runs before expanding it, naming where its
    /// largest factor was set.
    fn check_run_count(&self) -> Result<(), SpecError> {
        let draws = self.random.as_ref().map_or(1, |r| r.n.max(1));
        let mut factors: Vec<(usize, String)> = self
            .grid
            .iter()
            .map(|a| (a.values.len(), a.origin.clone()))
            .collect();
        factors.push((draws, self.origin_of("random")));
        factors.push((self.seeds.len(), self.origin_of("seeds")));
        let total = factors
            .iter()
            .try_fold(1usize, |acc, (n, _)| acc.checked_mul(*n));
        if total.is_some_and(|t| t <= MAX_RUNS) {
            return Ok(());
        }
        let shown = total.map_or_else(|| "more than 2^64".into(), |t| t.to_string());
        let product = factors
            .iter()
            .map(|(n, _)| n.to_string())
            .collect::<Vec<_>>()
            .join(" × ");
        let (_, origin) = factors
            .iter()
            .max_by_key(|(n, _)| *n)
            .expect("seeds are a factor");
        Err(SpecError::new(
            origin.clone(),
            SpecErrorKind::Run,
            format!(
                "the sweep would have {shown} runs (grid values × [random] draws × seeds = \
                 {product}); at most {MAX_RUNS}: split it into several sweeps"
            ),
        ))
    }

    /// Checks that the text files of `runs` exist (a missing one would fail every run that
    /// reads it), before any run starts.
    pub fn check_texts(&self, runs: &[PlannedRun]) -> Result<(), SpecError> {
        let texts: BTreeSet<&std::path::Path> = runs
            .iter()
            .filter_map(|r| r.config.text.as_deref())
            .collect();
        match texts.into_iter().find(|t| !t.is_file()) {
            Some(text) => Err(SpecError::new(
                self.origin_of("text"),
                SpecErrorKind::Value,
                format!(
                    "the text file {} (key 'text') does not exist or is not a file",
                    text.display()
                ),
            )),
            None => Ok(()),
        }
    }
}

/// The runs of shard `i` of `n`: every `n`-th run from the `i`-th, so shards are balanced
/// across the grid and disjoint, and together hold every run.
pub fn shard(runs: &[PlannedRun], i: usize, n: usize) -> Vec<&PlannedRun> {
    runs.iter().filter(|r| r.index % n == i).collect()
}

/// Parses `i/N` with 0 <= i < N.
pub fn parse_shard(text: &str) -> Result<(usize, usize), SpecError> {
    let bad = || {
        SpecError::new(
            "--shard",
            SpecErrorKind::Shard,
            format!("invalid shard '{text}': expected i/N with 0 <= i < N, e.g. --shard 0/4"),
        )
    };
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
