//! Results on disk (DESIGN.md "Sweeps, storage, distribution"; columns in `results/README.md`):
//! the Parquet tables a run [`write`]s, [`read`]ing them back whole, and [`compact`]ing a
//! folder's per-run parts into one file per table.
//!
//! One run writes `steps/<run_id>.parquet`, `layers/<run_id>.parquet`, `flow/<run_id>.parquet`,
//! `spectrum/<run_id>.parquet` and, last, the completion marker `runs/<run_id>.parquet`, each atomically
//! ([`crate::fs::write_atomic`]), so a reader never sees a partial file. Columns use plain
//! Parquet types (int64, float64, boolean, string annotated as Arrow `large_string`; nullable
//! where a value can be missing, required for the key columns), and every file of a table has
//! the same schema whatever the run's depth (per-layer quantities are rows of `layers`), so
//! `<table>/*.parquet` reads as-is in polars, pyarrow, pandas and DuckDB.

pub mod check;
pub mod compact;
pub mod read;
pub mod write;

use std::path::{Path, PathBuf};

use polars::prelude::PolarsError;

pub use check::{footer_check, health, is_complete, Damage, Health};
pub use compact::{compact, Compacted, Compaction, COMPACTED};
pub use read::{completed_ids, concat_aligned, diverged_ids, parts, read_parquet, read_table};
pub use write::write_run;

/// The tables of a results folder, one subfolder each; `runs` (the completion marker) first.
pub const TABLES: [&str; 5] = ["runs", "steps", "layers", "flow", "spectrum"];

/// The folders one run writes into: the tables, `failed` and `checkpoints`.
pub const RUN_FOLDERS: [&str; 7] = [
    "runs",
    "steps",
    "layers",
    "flow",
    "spectrum",
    "failed",
    "checkpoints",
];

/// The columns that identify a row of `table`, in sort order.
pub fn key_columns(table: &str) -> &'static [&'static str] {
    match table {
        "runs" => &["run_id"],
        "steps" => &["run_id", "step"],
        "layers" => &["run_id", "step", "layer"],
        "spectrum" => &["run_id", "step", "layer", "kind", "index"],
        _ => &["run_id", "step", "source", "layer", "lag"],
    }
}

/// Columns of `runs` that say when, where and how fast a run ran, not what it computed: two
/// runs of one configuration agree on every other column.
pub const VOLATILE_COLUMNS: [&str; 4] = ["started_at", "host", "wall_seconds", "steps_per_sec"];

/// The checkpoint of run `id` in `dir`.
pub fn checkpoint_path(dir: &Path, id: &str) -> PathBuf {
    dir.join("checkpoints").join(format!("{id}.safetensors"))
}

/// The paths of one run's files under `dir`, in the order of [`TABLES`].
pub fn run_paths(dir: &Path, id: &str) -> [PathBuf; 5] {
    TABLES.map(|t| dir.join(t).join(format!("{id}.parquet")))
}

/// Facts about the build and machine recorded with every run.
#[derive(Clone, Debug, PartialEq)]
pub struct Provenance {
    pub sweep: String,
    pub isa: String,
    pub gradlab_version: String,
    pub git_commit: String,
}

impl Provenance {
    /// This build's facts, for runs of sweep (or run) `sweep`.
    pub fn current(sweep: &str) -> Self {
        Provenance {
            sweep: sweep.into(),
            isa: gradlab_kernels::isa().into(),
            gradlab_version: crate::VERSION.into(),
            git_commit: crate::GIT_COMMIT.into(),
        }
    }
}

/// Why results could not be read or compacted.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Polars(#[from] PolarsError),
    #[error("{path} is damaged ({problem}); move it aside, and `gradlab sweep` runs again the runs it held")]
    Damaged { path: PathBuf, problem: String },
    #[error(
        "{} runs in {} have damaged or missing files ({}); `gradlab status` lists them, and \
         `gradlab sweep` moves the files aside and runs them again: compact after that",
        .runs.len(),
        .dir.display(),
        .runs.iter().flat_map(|(_, d)| d).take(3)
            .map(|d| format!("{}: {}", d.path.display(), d.problem))
            .collect::<Vec<_>>().join(", ")
    )]
    DamagedRuns {
        dir: PathBuf,
        runs: Vec<(String, Vec<Damage>)>,
    },
    #[error("{}; the parts were kept, and `gradlab compact` finishes the job", .fault.message(.dir))]
    Fault {
        fault: crate::fs::FolderFault,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("another `gradlab compact` is working on {0}; wait for it to finish")]
    Locked(PathBuf),
    #[error("{path} holds {found} rows after writing, expected {expected}; the parts were kept")]
    Check {
        path: PathBuf,
        expected: usize,
        found: usize,
    },
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
