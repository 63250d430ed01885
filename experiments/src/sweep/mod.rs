//! Sweeps (DESIGN.md "Sweeps, storage, distribution"): a TOML [`spec`] expanded into runs
//! with their identity ([`expand`], [`identity`], [`random`]), run in parallel and resumably
//! ([`runner`]; one process per run where several share a folder: [`claim`]), split into disjoint shards for many machines, and the state of a sweep's
//! results folder ([`status`]).
//!
//! A spec has `name`, `seeds`, a `[base]` run config, a `[grid]` of axes whose Cartesian
//! product runs, and optionally `[random]`: `n` samples (from `seed`) of keys drawn from
//! `{ uniform = [lo, hi] }`, `{ log_uniform = [lo, hi] }`, `{ int = [lo, hi] }` (inclusive) or
//! `{ choice = [v, ...] }`. Every grid point runs with the same `n` samples, and every
//! combination with every seed. Errors name the file, line and key, and say what is allowed;
//! a spec's problems are reported together. The command line changes a spec (or makes one
//! without a file) through [`Spec::set`], [`Spec::set_axis`] (`v1,v2` or
//! `range(start, stop, step)`), [`Spec::set_random`] (`log_uniform(lo, hi)`, ...) and
//! [`Spec::set_samples`], with the same checks as the file.

pub mod claim;
pub mod expand;
pub mod identity;
pub mod random;
pub mod runner;
pub mod spec;
pub mod status;

pub use expand::{parse_shard, shard, PlannedRun};
pub use identity::run_id;
pub use runner::{execute, Event, RunError, RunnerOptions, Summary};
pub use spec::{check_name, Spec};
pub use status::{
    check_spec_change, SpecChange, SpecCheckError, SpecReuseError, SweepDir, SweepDirError,
    SweepStatus,
};

/// The most runs one sweep may expand to (grid points × `[random]` draws × seeds): expanding
/// holds every run's config in memory (about 1 KB each), so a larger count is refused before
/// anything is allocated. The same bound as a `range(...)` axis.
pub const MAX_RUNS: usize = 100_000;

/// What is wrong with a spec, for matching; the message says it in words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecErrorKind {
    /// The file cannot be read.
    Read,
    /// Not TOML, or not the shape of a spec (unknown table, wrong type).
    Syntax,
    /// `name` is not a plain folder name.
    Name,
    /// `seeds` is empty or repeats a seed.
    Seeds,
    /// A key that is unknown, or may not be set where it is.
    Key,
    /// A value a key cannot take.
    Value,
    /// A grid axis that is empty, given twice, or repeats a value.
    Axis,
    /// A `[random]` table that is incomplete or draws impossible values.
    Random,
    /// Values that cannot run together in one run.
    Run,
    /// A `--shard` that is not `i/N` with `0 <= i < N`.
    Shard,
}

/// A spec that cannot be run: where (file and line, or the command-line flag) and why, with
/// the spec's further problems in `also`, so that one attempt lists everything to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{origin}: {message}{}", also.iter().map(|e| format!("\n{e}")).collect::<String>())]
pub struct SpecError {
    pub origin: String,
    pub kind: SpecErrorKind,
    pub message: String,
    /// Further problems of the same spec, in file order.
    pub also: Vec<SpecError>,
}

impl SpecError {
    pub(crate) fn new(
        origin: impl Into<String>,
        kind: SpecErrorKind,
        message: impl Into<String>,
    ) -> Self {
        SpecError {
            origin: origin.into(),
            kind,
            message: message.into(),
            also: Vec::new(),
        }
    }

    /// The first of `errors` with the others in `also`; `None` when there are none.
    pub(crate) fn all(errors: Vec<SpecError>) -> Option<SpecError> {
        let mut errors = errors.into_iter();
        let mut first = errors.next()?;
        first.also.extend(errors);
        Some(first)
    }
}
