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
        let done = store::completed_ids(&self.dir)?;
        let mut status = SweepStatus::of(&self.dir, &self.runs, &done);
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

    /// Whether some run is failed or missing.
    pub fn unfinished(&self) -> bool {
        !self.failed.is_empty() || self.missing > 0
    }
}

/// The folders gradlab writes in a results folder: the folder itself, those of its runs
/// ([`store::RUN_FOLDERS`]), `report` and `slurm`.
pub fn folders(dir: &Path) -> Vec<PathBuf> {
    let subs = store::RUN_FOLDERS.iter().chain(&["report", "slurm"]);
    std::iter::once(dir.to_path_buf())
        .chain(subs.map(|s| dir.join(s)))
        .collect()
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
