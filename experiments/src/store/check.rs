//! Which runs of a results folder are complete, and which are damaged.
//!
//! A run is complete when its `runs` row exists (its part file, or a row of the compacted file)
//! and each of its tables is readable: its part file passes [`footer_check`], or, where it has
//! no part, the table's compacted file does (a compaction merged the part there). A run whose
//! `runs` row exists but one of whose files is truncated, empty, not Parquet or missing is
//! damaged: no command reads it as a result, `gradlab status` lists it and `gradlab sweep`
//! moves its damaged files aside and runs it again. Files of a run without a `runs` row belong
//! to a run still being written (or killed mid-run): neither complete nor damaged.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::read::parts;
use super::{StoreError, COMPACTED, TABLES};

/// `PAR1`, at both ends of every Parquet file.
const MAGIC: &[u8; 4] = b"PAR1";

/// Checks, cheaply, that `path` is a whole Parquet file: the magic at both ends and a footer
/// that fits in the file (what a truncated, empty or overwritten file fails). `Err` says what is
/// wrong in words; a file that does not exist is `Err` of kind `NotFound`.
pub fn footer_check(path: &Path) -> std::io::Result<Result<(), String>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(Err("empty file".into()));
    }
    if len < 12 {
        return Ok(Err(format!("{len} bytes: too short for Parquet")));
    }
    let mut head = [0u8; 4];
    f.read_exact(&mut head)?;
    let mut tail = [0u8; 8];
    f.seek(SeekFrom::End(-8))?;
    f.read_exact(&mut tail)?;
    if &head != MAGIC {
        return Ok(Err("not a Parquet file (no PAR1 at its start)".into()));
    }
    if &tail[4..] != MAGIC {
        return Ok(Err("truncated (no Parquet footer at its end)".into()));
    }
    let footer = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
    if footer + 12 > len {
        return Ok(Err(format!(
            "footer of {footer} bytes does not fit in the file's {len}"
        )));
    }
    Ok(Ok(()))
}

/// One damaged file of a run: its path and what is wrong with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Damage {
    pub path: PathBuf,
    pub problem: String,
}

/// Where the runs of a results folder stand on disk.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// Runs whose every file is present and readable.
    pub complete: BTreeSet<String>,
    /// Runs with a `runs` row and a damaged or missing file, with what is wrong.
    pub damaged: BTreeMap<String, Vec<Damage>>,
}

/// The tables' compacted files: which exist, checked; `Err` names a damaged one (written whole by
/// `gradlab compact`, it was changed by something else, and which runs it held cannot be told).
fn compacted_tables(dir: &Path) -> Result<[bool; TABLES.len()], StoreError> {
    let mut present = [false; TABLES.len()];
    for (i, table) in TABLES.iter().enumerate() {
        let path = dir.join(table).join(COMPACTED);
        match footer_check(&path) {
            Ok(Ok(())) => present[i] = true,
            Ok(Err(problem)) => return Err(StoreError::Damaged { path, problem }),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&path, e)),
        }
    }
    Ok(present)
}

/// The run_ids in the compacted `runs` file (none when there is none).
fn compacted_run_ids(dir: &Path, present: bool) -> Result<BTreeSet<String>, StoreError> {
    if !present {
        return Ok(BTreeSet::new());
    }
    let path = dir.join("runs").join(COMPACTED);
    let file = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
    let df = ParquetReader::new(file)
        .with_columns(Some(vec!["run_id".into()]))
        .finish()?;
    Ok(df
        .column("run_id")?
        .str()?
        .iter()
        .flatten()
        .map(String::from)
        .collect())
}

/// What is wrong with the files of run `id`, whose `runs` row is its part file (`runs_part`) or
/// a row of the compacted file: each table's part must pass the footer check or, missing, be
/// merged into a readable compacted file.
fn run_damage(
    dir: &Path,
    id: &str,
    runs_part: bool,
    compacted: &[bool; TABLES.len()],
) -> Result<Vec<Damage>, StoreError> {
    let mut damage = Vec::new();
    for (i, table) in TABLES.iter().enumerate() {
        if i == 0 && !runs_part {
            continue;
        }
        let path = dir.join(table).join(format!("{id}.parquet"));
        match footer_check(&path) {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => damage.push(Damage { path, problem }),
            // Merged by a compaction (maybe one running now), or never written.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if !compacted[i] {
                    damage.push(Damage {
                        path,
                        problem: "missing".into(),
                    });
                }
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        }
    }
    Ok(damage)
}

/// Where every run of `dir` stands: complete or damaged (a folder that does not exist holds
/// none).
pub fn health(dir: &Path) -> Result<Health, StoreError> {
    let runs_dir = dir.join("runs");
    let with_part: BTreeSet<String> = parts(dir, "runs")
        .map_err(|e| StoreError::io(&runs_dir, e))?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    // After the parts: a compaction writes its merged file before it removes the parts, so a
    // part listed and gone by the time it is checked is found merged.
    let compacted = compacted_tables(dir)?;
    let in_compacted = compacted_run_ids(dir, compacted[0])?;
    let mut health = Health::default();
    for id in with_part.iter().chain(&in_compacted) {
        if health.complete.contains(id) || health.damaged.contains_key(id) {
            continue;
        }
        let damage = run_damage(dir, id, with_part.contains(id), &compacted)?;
        if damage.is_empty() {
            health.complete.insert(id.clone());
        } else {
            health.damaged.insert(id.clone(), damage);
        }
    }
    Ok(health)
}

/// Whether run `id` of `dir` is complete, looked up alone (a sweep asks this of each run it is
/// about to start, since another process may have just finished it).
pub fn is_complete(dir: &Path, id: &str) -> Result<bool, StoreError> {
    // The part first: a compaction writes the merged file before it removes the part, so the
    // run is found in one or the other whenever it runs.
    let runs_part = dir.join("runs").join(format!("{id}.parquet")).exists();
    let compacted = compacted_tables(dir)?;
    if !runs_part && !compacted_run_ids(dir, compacted[0])?.contains(id) {
        return Ok(false);
    }
    Ok(run_damage(dir, id, runs_part, &compacted)?.is_empty())
}

/// The folder of a results folder that damaged files are moved to.
pub const DAMAGED: &str = "damaged";

/// Moves the damaged files of `damaged` (from [`health`]), and the `runs` part (the completion
/// marker) of each damaged run, to `damaged/<table>/<run_id>.parquet-<unix time>`: kept for
/// inspection, out of every reader's way, and the runs missing, so that they run again.
/// Returns how many files were moved; a file already gone (moved by another process) is
/// skipped.
pub fn set_aside(dir: &Path, damaged: &BTreeMap<String, Vec<Damage>>) -> std::io::Result<usize> {
    let mut moved = 0;
    let time = crate::fs::unix_time();
    for (id, damage) in damaged {
        let marker = dir.join(TABLES[0]).join(format!("{id}.parquet"));
        let mut files: Vec<PathBuf> = damage
            .iter()
            .filter(|d| d.path != marker && d.path.exists())
            .map(|d| d.path.clone())
            .collect();
        files.push(marker);
        for path in files {
            let (Some(name), Some(table)) =
                (path.file_name(), path.parent().and_then(|p| p.file_name()))
            else {
                continue;
            };
            let aside = dir.join(DAMAGED).join(table);
            std::fs::create_dir_all(&aside)?;
            let to = aside.join(format!("{}-{time}", name.to_string_lossy()));
            match std::fs::rename(&path, &to) {
                Ok(()) => moved += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(moved)
}
