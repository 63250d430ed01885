//! The runner: a sweep's runs on a pool of threads, in order, each trained, written to the
//! store, or recorded in `failed/<run_id>.json` if it fails or panics while the others go on.
//! Small models run one per thread; a model above [`PARALLEL_FLOPS`] per update splits its
//! kernels over the threads instead (results are bit-identical either way).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use gradlab_kernels::Par;

use super::expand::PlannedRun;
use crate::memory::{MemoryBudget, MemoryError, MemoryLimit};
use crate::store::{self, Provenance};
use crate::train::record::Outcome;
use crate::train::{TrainError, Trainer};

/// Above this many FLOPs per update (about 10 ms on one core), a run splits its kernels over
/// the sweep's threads; below it, runs go one per core, which wastes nothing on
/// synchronisation.
pub const PARALLEL_FLOPS: f64 = 1e9;

/// How to run a sweep's runs.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Threads (runs at once for small models).
    pub jobs: usize,
    /// Stop starting runs after the first failure.
    pub fail_fast: bool,
    /// The memory the runs going at once may use (`None`: not checked); see [`MemoryBudget`].
    pub memory: Option<MemoryLimit>,
}

/// What the runner reports as runs start and end (from its worker threads).
#[derive(Debug)]
pub enum Event<'a> {
    Started(&'a PlannedRun),
    Finished(&'a PlannedRun, &'a Outcome),
    Failed(&'a PlannedRun, &'a RunError),
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

/// Testing hook (feature `test-hooks` only): a run_id whose run panics
/// (`GRADLAB_TEST_PANIC_RUN`), to test that a crash in one run is recorded and the sweep goes
/// on. A user's build has no such hook.
#[cfg(feature = "test-hooks")]
fn injected_panic(id: &str) {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let target = ID.get_or_init(|| std::env::var("GRADLAB_TEST_PANIC_RUN").ok());
    if target.as_deref() == Some(id) {
        panic!("injected panic (GRADLAB_TEST_PANIC_RUN={id})");
    }
}

#[cfg(not(feature = "test-hooks"))]
fn injected_panic(_id: &str) {}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("cannot write the results to {dir}: {source}")]
    Write {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("panicked: {0}")]
    Panic(String),
    #[error("completed, but cannot remove {path}: {source}")]
    StaleFailure {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{error} (and cannot write {path}: {source})")]
    Record {
        error: Box<RunError>,
        path: PathBuf,
        source: std::io::Error,
    },
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
    let budget = MemoryBudget::new(opts.memory);
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
                match run_one(dir, run, opts.jobs, &budget, prov) {
                    Ok(outcome) => {
                        {
                            let mut s = lock(&summary);
                            s.finished += 1;
                            s.diverged += usize::from(outcome.diverged_at_step.is_some());
                        }
                        on_event(Event::Finished(run, &outcome));
                    }
                    Err(error) => {
                        if opts.fail_fast {
                            stop.store(true, Ordering::Relaxed);
                        }
                        lock(&summary).failed += 1;
                        on_event(Event::Failed(run, &error));
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

/// Trains and stores one run on up to `jobs` threads once `budget` has room for it; a panic or
/// error (a run too large for the budget included) becomes
/// `failed/<run_id>.json` and an `Err`.
fn run_one(
    dir: &Path,
    run: &PlannedRun,
    jobs: usize,
    budget: &MemoryBudget,
    prov: &Provenance,
) -> Result<Outcome, RunError> {
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Outcome, RunError> {
        injected_panic(&run.id);
        let _memory = budget.reserve(&run.config)?;
        let mut trainer = Trainer::new(run.config.clone(), Par::Seq)?;
        if trainer.flops_per_update() >= PARALLEL_FLOPS {
            trainer.par = Par::rayon(jobs);
        }
        let record = trainer.run(|_, _| {});
        store::write_run(dir, &run.id, &run.config, &record, prov).map_err(|source| {
            RunError::Write {
                dir: dir.to_path_buf(),
                source,
            }
        })?;
        Ok(record.outcome)
    }));
    let result = result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        Err(RunError::Panic(message))
    });
    let path = failed_path(dir, &run.id);
    match result {
        Ok(outcome) => {
            if path.exists() {
                std::fs::remove_file(&path)
                    .map_err(|source| RunError::StaleFailure { path, source })?;
            }
            Ok(outcome)
        }
        Err(error) => {
            let record = serde_json::json!({
                "run_id": run.id,
                "error": error.to_string(),
                "swept": run.swept.iter().cloned().collect::<BTreeMap<_, _>>(),
                "config": run.config.to_toml(),
                "host": crate::fs::host(),
                "gradlab_version": prov.gradlab_version,
                "git_commit": prov.git_commit,
                "unix_time": crate::fs::unix_time(),
            });
            let text = serde_json::to_string_pretty(&record).expect("json serializes");
            match crate::fs::write_bytes_atomic(&path, text.as_bytes()) {
                Ok(()) => Err(error),
                Err(source) => Err(RunError::Record {
                    error: Box::new(error),
                    path,
                    source,
                }),
            }
        }
    }
}

/// The failure record of run `id` in `dir`.
pub fn failed_path(dir: &Path, id: &str) -> PathBuf {
    dir.join("failed").join(format!("{id}.json"))
}
