//! The runner: a sweep's runs on a pool of threads, in order, each trained, written to the
//! store, or recorded in `failed/<run_id>.json` if it fails or panics while the others go on.
//! Small models run one per thread; a model above [`PARALLEL_FLOPS`] per update splits its
//! kernels over the threads instead (results are bit-identical either way).
//!
//! Every run writes mid-run checkpoints (`checkpoints/<run_id>.partial`, [`resume`]) and
//! continues from its newest readable one, so a sweep killed and started again finishes each
//! run with the rows it would have had; the checkpoint is removed once the run's results are
//! written. After a signal ([`crate::interrupt`]) no run starts, and runs in flight checkpoint
//! and stop.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use gradlab_kernels::Par;

use super::claim::{Claims, Taken};
use super::expand::PlannedRun;
use crate::fs::FolderFault;
use crate::memory::{MemoryBudget, MemoryError, MemoryLimit};
use crate::store::{self, Provenance};
use crate::train::record::Outcome;
use crate::train::resume::{self, Checkpointing, ResumeError};
use crate::train::{Control, RunEnd, TrainError, Trainer};

/// Above this many FLOPs per update (about 10 ms on one core), a run splits its kernels over
/// the sweep's threads; below it, runs go one per core, which wastes nothing on
/// synchronisation.
pub const PARALLEL_FLOPS: f64 = 1e9;

/// How to run a sweep's runs.
#[derive(Clone, Debug, Default)]
pub struct RunnerOptions {
    /// Threads (runs at once for small models).
    pub jobs: usize,
    /// Stop starting runs after the first failure.
    pub fail_fast: bool,
    /// Keep each run's final parameters as `checkpoints/<run_id>.safetensors` (PyTorch names,
    /// as `gradlab run` writes them); its mid-run checkpoint is removed either way.
    pub save_weights: bool,
    /// The memory the runs going at once may use (`None`: not checked); see [`MemoryBudget`].
    pub memory: Option<MemoryLimit>,
}

/// What the runner reports as runs start and end (from its worker threads).
#[derive(Debug)]
pub enum Event<'a> {
    Started(&'a PlannedRun),
    /// Continues from its checkpoint at this update.
    Resumed(&'a PlannedRun, usize),
    /// A checkpoint that could not be used (the run continues from an older one, or starts
    /// over).
    CheckpointSkipped(&'a PlannedRun, &'a ResumeError),
    Finished(&'a PlannedRun, &'a Outcome),
    /// Stopped by a signal before this update, after checkpointing.
    Interrupted(&'a PlannedRun, usize),
    Failed(&'a PlannedRun, &'a RunError),
}

/// How a sweep invocation ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub finished: usize,
    pub diverged: usize,
    pub failed: usize,
    /// Runs not started because `fail_fast`, a [`FolderFault`] or a signal stopped the sweep.
    pub not_started: usize,
    /// Runs stopped by a signal after checkpointing.
    pub interrupted: usize,
    /// Runs skipped because another process holds their claim (is running them).
    pub claimed_elsewhere: usize,
    /// Runs another process completed after this one listed them.
    pub completed_elsewhere: usize,
    /// The fault of the results folder that stopped the sweep, if one did.
    pub fault: Option<FolderFault>,
    /// Failed runs whose `failed/<run_id>.json` could not be written, by run_id.
    pub unrecorded: Vec<String>,
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
    #[error("cannot claim the run in {dir}: {source}")]
    Claim {
        dir: PathBuf,
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
/// (unless `fail_fast`). A run that diverges is complete: divergence is an outcome. Each run is
/// claimed first ([`super::claim`]): runs that another process is running, or has completed
/// since `runs` was listed, are skipped. A fault of the folder (full, read-only, vanished) stops
/// the sweep from starting more runs.
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
    let claims = Claims::new(dir)?;
    let budget = MemoryBudget::new(opts.memory);
    pool.scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|_| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(run) = runs.get(i) else { break };
                if stop.load(Ordering::Relaxed) || crate::interrupt::requested().is_some() {
                    lock(&summary).not_started += 1;
                    continue;
                }
                match claim(dir, &claims, &run.id) {
                    Ok(Claimed::Mine) => {}
                    Ok(Claimed::Busy) => {
                        lock(&summary).claimed_elsewhere += 1;
                        continue;
                    }
                    Ok(Claimed::Complete) => {
                        lock(&summary).completed_elsewhere += 1;
                        continue;
                    }
                    Err(error) => {
                        on_event(Event::Started(run));
                        failed(&summary, &stop, opts, dir, run, &error);
                        on_event(Event::Failed(run, &error));
                        continue;
                    }
                }
                on_event(Event::Started(run));
                let result = run_one(dir, run, opts, &budget, prov, on_event);
                // The results, the checkpoint or the failure record are written: the claim has
                // done its job. One that cannot be removed is stale once this process ends.
                let _ = claims.release(&run.id);
                match result {
                    Ok(None) => lock(&summary).interrupted += 1,
                    Ok(Some(outcome)) => {
                        {
                            let mut s = lock(&summary);
                            s.finished += 1;
                            s.diverged += usize::from(outcome.diverged_at_step.is_some());
                        }
                        on_event(Event::Finished(run, &outcome));
                    }
                    Err(error) => {
                        failed(&summary, &stop, opts, dir, run, &error);
                        on_event(Event::Failed(run, &error));
                    }
                }
            });
        }
    });
    Ok(summary.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Whether this process may run a run.
enum Claimed {
    Mine,
    /// Another live process holds the claim.
    Busy,
    /// Claimed, but another process completed it since it was listed (claim given back).
    Complete,
}

/// Claims run `id` in `dir` and checks, holding the claim, that it is not complete yet.
fn claim(dir: &Path, claims: &Claims, id: &str) -> Result<Claimed, RunError> {
    let error = |source| RunError::Claim {
        dir: dir.to_path_buf(),
        source,
    };
    if let Taken::Busy(_) = claims.take(id).map_err(error)? {
        return Ok(Claimed::Busy);
    }
    match store::is_complete(dir, id) {
        Ok(false) => Ok(Claimed::Mine),
        Ok(true) => {
            claims.release(id).map_err(error)?;
            Ok(Claimed::Complete)
        }
        Err(e) => {
            let _ = claims.release(id);
            Err(error(std::io::Error::other(e)))
        }
    }
}

/// Counts a failed run; stops the sweep on `fail_fast`, and on a fault of the results folder
/// (every later run would fail the same way).
fn failed(
    summary: &Mutex<Summary>,
    stop: &AtomicBool,
    opts: &RunnerOptions,
    dir: &Path,
    run: &PlannedRun,
    error: &RunError,
) {
    let fault = error.folder_fault(dir);
    if opts.fail_fast || fault.is_some() {
        stop.store(true, Ordering::Relaxed);
    }
    let mut s = lock(summary);
    s.failed += 1;
    if s.fault.is_none() {
        s.fault = fault;
    }
    if let RunError::Record { .. } | RunError::Claim { .. } = error {
        s.unrecorded.push(run.id.clone());
    }
}

impl RunError {
    /// The fault of the results folder `dir` behind this error, if any.
    pub fn folder_fault(&self, dir: &Path) -> Option<FolderFault> {
        match self {
            RunError::Write { source, .. }
            | RunError::Claim { source, .. }
            | RunError::StaleFailure { source, .. } => FolderFault::of(source, dir),
            RunError::Record { error, source, .. } => {
                error.folder_fault(dir).or(FolderFault::of(source, dir))
            }
            RunError::Train(_) | RunError::Panic(_) | RunError::Memory(_) => None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Trains (or continues) and stores one run on up to `opts.jobs` threads once `budget` has
/// room for it: its outcome, or `None` when a signal stopped it after a checkpoint. A panic or
/// error (a run too large for the budget included) becomes
/// `failed/<run_id>.json` and an `Err`.
fn run_one(
    dir: &Path,
    run: &PlannedRun,
    opts: &RunnerOptions,
    budget: &MemoryBudget,
    prov: &Provenance,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<Option<Outcome>, RunError> {
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Option<Outcome>, RunError> {
        injected_panic(&run.id);
        let _memory = budget.reserve(&run.config)?;
        let path = resume::resume_path(dir, &run.id);
        let (mut trainer, from, skipped) = Trainer::resumed(run.config.clone(), Par::Seq, &path)?;
        for e in &skipped {
            on_event(Event::CheckpointSkipped(run, e));
        }
        if let Some(step) = from {
            on_event(Event::Resumed(run, step));
        }
        if trainer.flops_per_update() >= PARALLEL_FLOPS {
            trainer.par = Par::rayon(opts.jobs);
        }
        let checkpoint = Checkpointing::of(&run.config, path);
        let ctl = Control::until_signal(&checkpoint);
        let write_error = |source| RunError::Write {
            dir: dir.to_path_buf(),
            source,
        };
        let record = match trainer.run_with(&ctl, |_, _| {}).map_err(write_error)? {
            RunEnd::Finished(record) => record,
            RunEnd::Interrupted { next_step, .. } => {
                on_event(Event::Interrupted(run, next_step));
                return Ok(None);
            }
        };
        if opts.save_weights {
            trainer
                .save_weights(&store::checkpoint_path(dir, &run.id))
                .map_err(write_error)?;
        }
        store::write_run(dir, &run.id, &run.config, &record, prov).map_err(write_error)?;
        // The run is complete; a checkpoint left by a failed removal is removed by the next
        // sweep's start (`resume::remove_stale`).
        let _ = resume::remove(&checkpoint.path);
        Ok(Some(record.outcome))
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
