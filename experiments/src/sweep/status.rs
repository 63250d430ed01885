//! A sweep's results folder: opening it (its `sweep.toml` expanded again), where its runs stand
//! (complete, diverged, failed, missing), the folders gradlab writes in it, and its
//! `manifest.json`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::expand::PlannedRun;
use super::runner::failed_path;
use super::{Spec, SpecError};
use crate::store::{self, Provenance, StoreError};

/// The expanded spec a results folder keeps.
pub const SPEC_FILE: &str = "sweep.toml";

/// Why a folder is not a sweep's results folder.
#[derive(Debug, thiserror::Error)]
pub enum SweepDirError {
    #[error("{0} is not a sweep's results folder: it does not exist")]
    Missing(PathBuf),
    #[error("{0} is not a sweep's results folder: it has no sweep.toml (`gradlab sweep SPEC` writes one)")]
    NoSpec(PathBuf),
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// A sweep's results folder with its spec and runs.
#[derive(Clone, Debug)]
pub struct SweepDir {
    pub dir: PathBuf,
    pub spec: Spec,
    pub runs: Vec<PlannedRun>,
}

impl SweepDir {
    /// Opens the sweep whose results are in `dir`.
    pub fn open(dir: &Path) -> Result<Self, SweepDirError> {
        if !dir.is_dir() {
            return Err(SweepDirError::Missing(dir.to_path_buf()));
        }
        let path = dir.join(SPEC_FILE);
        if !path.is_file() {
            return Err(SweepDirError::NoSpec(dir.to_path_buf()));
        }
        let spec = Spec::load(&path)?;
        let runs = spec.expand()?;
        Ok(SweepDir {
            dir: dir.to_path_buf(),
            spec,
            runs,
        })
    }

    /// Where the sweep's runs stand.
    pub fn status(&self) -> Result<SweepStatus, StoreError> {
        let health = store::health(&self.dir)?;
        let done = health.complete;
        let mut status = SweepStatus::of(&self.dir, &self.runs, &done);
        status.damaged = health.damaged.into_iter().collect();
        let ids: BTreeSet<&str> = self.runs.iter().map(|r| r.id.as_str()).collect();
        status.extra = done.iter().filter(|id| !ids.contains(id.as_str())).count();
        status.diverged = store::diverged_ids(&self.dir)?
            .iter()
            .filter(|id| ids.contains(id.as_str()))
            .count();
        status.temporaries = crate::fs::temporaries(&folders(&self.dir)).len();
        Ok(status)
    }
}

/// Where a sweep's runs stand in its results folder.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepStatus {
    pub total: usize,
    pub complete: usize,
    /// Complete runs that diverged.
    pub diverged: usize,
    /// Failed and not since completed: (run, first line of the error).
    pub failed: Vec<(PlannedRun, String)>,
    pub missing: usize,
    /// Complete runs in the folder that the spec does not have (an earlier spec's).
    pub extra: usize,
    /// Temporary files (a writer is busy, or was killed).
    pub temporaries: usize,
    /// Runs with a `runs` row and a damaged or missing file ([`store::check`]), by run_id;
    /// counted as failed or missing above.
    pub damaged: Vec<(String, Vec<store::Damage>)>,
}

impl SweepStatus {
    /// Counts the complete (in `done`, from [`store::completed_ids`]), failed and missing runs
    /// of `runs` in `dir`.
    pub fn of(dir: &Path, runs: &[PlannedRun], done: &BTreeSet<String>) -> SweepStatus {
        let mut p = SweepStatus {
            total: runs.len(),
            ..SweepStatus::default()
        };
        for run in runs {
            if done.contains(&run.id) {
                p.complete += 1;
                continue;
            }
            match std::fs::read_to_string(failed_path(dir, &run.id)) {
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

    /// Whether some run is failed, missing or damaged.
    pub fn unfinished(&self) -> bool {
        !self.failed.is_empty() || self.missing > 0 || !self.damaged.is_empty()
    }
}

/// The folders gradlab writes in a results folder: the folder itself, those of its runs
/// ([`store::RUN_FOLDERS`]), `report`, `slurm` and `claims`.
pub fn folders(dir: &Path) -> Vec<PathBuf> {
    let subs = store::RUN_FOLDERS
        .iter()
        .chain(&["report", "slurm", super::claim::CLAIMS]);
    std::iter::once(dir.to_path_buf())
        .chain(subs.map(|s| dir.join(s)))
        .collect()
}

/// A folder that holds another sweep's results: running `spec` into it would replace its
/// `sweep.toml` and drop runs that its report counts.
#[derive(Debug, thiserror::Error)]
#[error(
    "{dir} holds the results of sweep `{old}` ({planned} runs, {complete} complete), and this \
     spec does not contain {dropped} of its runs ({dropped_complete} of them complete): its report \
     would stop counting them. Write to another folder (--out), or pass --replace-spec to make \
     this spec the folder's (the old one is kept as {kept}; no result file is removed)",
    dir = dir.display(),
    kept = SPEC_FILE.to_string() + ".replaced-<time>"
)]
pub struct SpecReuseError {
    pub dir: PathBuf,
    pub old: String,
    pub planned: usize,
    pub complete: usize,
    pub dropped: usize,
    pub dropped_complete: usize,
}

/// Why a spec may not be run into a folder.
#[derive(Debug, thiserror::Error)]
pub enum SpecCheckError {
    #[error(transparent)]
    Reuse(#[from] SpecReuseError),
    /// Which runs are complete cannot be told, so neither can what the spec would drop.
    #[error("cannot tell which runs in {dir} are complete: {source}", dir = .0.display(), source = .1)]
    Read(PathBuf, StoreError),
}

/// What running a spec into a folder does to the spec already there.
#[derive(Debug, PartialEq, Eq)]
pub enum SpecChange {
    /// No `sweep.toml` yet, or the same runs.
    None,
    /// Every run of the old spec is in the new one, and `added` more.
    Extends { added: usize },
    /// The old spec is replaced (`--replace-spec`, or none of its runs was complete): it is
    /// kept under this name.
    Replaces { kept: PathBuf },
}

/// Checks that `runs` may be written into `dir` beside what its `sweep.toml` planned: the same
/// runs, more runs, or a spec none of whose runs completed; anything else (a spec that drops
/// complete runs) only with `replace`. A `sweep.toml` that cannot be read counts as dropping
/// all its runs.
pub fn check_spec_change(
    dir: &Path,
    runs: &[PlannedRun],
    replace: bool,
) -> Result<SpecChange, SpecCheckError> {
    let path = dir.join(SPEC_FILE);
    if !path.is_file() {
        return Ok(SpecChange::None);
    }
    let new: BTreeSet<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let done = store::completed_ids(dir).map_err(|e| SpecCheckError::Read(dir.to_path_buf(), e))?;
    let (old_name, old_ids) = match SweepDir::open(dir) {
        Ok(old) => (
            old.spec.name.clone(),
            old.runs
                .iter()
                .map(|r| r.id.clone())
                .collect::<BTreeSet<_>>(),
        ),
        Err(_) => ("(unreadable sweep.toml)".to_string(), done.clone()),
    };
    let dropped: Vec<&String> = old_ids
        .iter()
        .filter(|id| !new.contains(id.as_str()))
        .collect();
    if dropped.is_empty() {
        let added = new.iter().filter(|id| !old_ids.contains(**id)).count();
        return Ok(if added == 0 {
            SpecChange::None
        } else {
            SpecChange::Extends { added }
        });
    }
    let dropped_complete = dropped.iter().filter(|id| done.contains(**id)).count();
    if dropped_complete > 0 && !replace {
        return Err(SpecCheckError::Reuse(SpecReuseError {
            dir: dir.to_path_buf(),
            old: old_name,
            planned: old_ids.len(),
            complete: old_ids.iter().filter(|id| done.contains(*id)).count(),
            dropped: dropped.len(),
            dropped_complete,
        }));
    }
    let kept = dir.join(format!("{SPEC_FILE}.replaced-{}", crate::fs::unix_time()));
    Ok(SpecChange::Replaces { kept })
}

/// Writes `sweep.toml` (the spec as run) and `manifest.json` (what ran it, where) into `dir`.
pub fn write_spec_and_manifest(
    dir: &Path,
    spec: &Spec,
    jobs: usize,
    shard: Option<&str>,
) -> std::io::Result<()> {
    crate::fs::write_bytes_atomic(&dir.join(SPEC_FILE), spec.to_toml().as_bytes())?;
    let prov = Provenance::current(&spec.name);
    let manifest = serde_json::json!({
        "sweep": spec.name,
        "gradlab_version": prov.gradlab_version,
        "git_commit": prov.git_commit,
        "rustc": crate::RUSTC,
        "host": crate::fs::host(),
        "isa": prov.isa,
        "cpu_features": gradlab_kernels::cpu_features(),
        "jobs": jobs,
        "shard": shard,
        "command": std::env::args().collect::<Vec<_>>(),
        "unix_time": crate::fs::unix_time(),
    });
    let text = serde_json::to_string_pretty(&manifest).expect("json serializes") + "\n";
    crate::fs::write_bytes_atomic(&dir.join("manifest.json"), text.as_bytes())
}
