//! Compaction: a folder's per-run part files merged into one file per table, without ever
//! losing a row.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::read::{read_parquet, read_table, readable_parts};
use super::write::write_parquet;
use super::{key_columns, StoreError, TABLES};

/// The file [`compact`] merges a table's parts into, beside them in the table's folder (so a
/// reader of `<table>/*.parquet` reads it too).
pub const COMPACTED: &str = "compacted.parquet";

/// What [`compact`] did to one table.
#[derive(Clone, Debug, PartialEq)]
pub struct Compacted {
    pub table: &'static str,
    /// Part files merged (and removed).
    pub parts: usize,
    /// Rows in the compacted file.
    pub rows: usize,
}

/// Everything [`compact`] did to a folder.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Compaction {
    /// The tables merged, in the order of [`TABLES`].
    pub tables: Vec<Compacted>,
    /// Temporary files of a killed compaction (or writer) removed before starting.
    pub removed_temporaries: usize,
    /// Tables left with their parts because `stop` was set (a signal), in order.
    pub stopped_before: Vec<&'static str>,
}

/// Merges each table's readable part files into `<table>/compacted.parquet`, without losing a
/// row: the merged file (earlier compacted rows plus every part, sorted by run) is written
/// atomically, checked, and only then are the parts it holds removed. Parts written meanwhile
/// stay as they are. A folder with damaged runs ([`super::check`]) is refused: their readable
/// files would be merged beside the damaged ones, and `gradlab sweep` must first move those
/// aside and run the runs again. A lock keeps two compactions of one folder apart; the
/// temporary files of a compaction that was killed are removed first. When `stop()` becomes
/// true (a signal), the table being merged is finished and the others keep their parts.
pub fn compact(dir: &Path, stop: &dyn Fn() -> bool) -> Result<Compaction, StoreError> {
    let lock_path = dir.join(".gradlab-compact.lock");
    let lock = File::create(&lock_path).map_err(|e| StoreError::io(&lock_path, e))?;
    lock.try_lock()
        .map_err(|_| StoreError::Locked(dir.to_path_buf()))?;
    let folders: Vec<PathBuf> = TABLES.iter().map(|t| dir.join(t)).collect();
    let mut done = Compaction {
        removed_temporaries: crate::fs::clean_temporaries(&folders)
            .map_err(|e| StoreError::io(dir, e))?,
        ..Compaction::default()
    };
    let damaged = super::check::health(dir)?.damaged;
    if !damaged.is_empty() {
        return Err(StoreError::DamagedRuns {
            dir: dir.to_path_buf(),
            runs: damaged.into_iter().collect(),
        });
    }
    for table in TABLES {
        if stop() {
            done.stopped_before.push(table);
            continue;
        }
        let parts = readable_parts(dir, table).map_err(|e| StoreError::io(&dir.join(table), e))?;
        if parts.is_empty() {
            continue;
        }
        let path = dir.join(table).join(COMPACTED);
        let before = if path.exists() {
            read_parquet(&path)?.height()
        } else {
            0
        };
        let df = read_table(dir, table)?.expect("the table has parts");
        let df = df.sort(
            key_columns(table),
            SortMultipleOptions::default().with_maintain_order(true),
        )?;
        let rows = df.height();
        write_parquet(&path, df).map_err(|source| {
            match crate::fs::FolderFault::of(&source, dir) {
                Some(fault) => StoreError::Fault {
                    fault,
                    dir: dir.to_path_buf(),
                    source,
                },
                None => StoreError::io(&path, source),
            }
        })?;
        let reread = read_parquet(&path)?.height();
        if reread != rows || rows < before {
            return Err(StoreError::Check {
                path,
                expected: rows,
                found: reread,
            });
        }
        for (_, part) in &parts {
            fs::remove_file(part).map_err(|e| StoreError::io(part, e))?;
        }
        done.tables.push(Compacted {
            table,
            parts: parts.len(),
            rows,
        });
    }
    Ok(done)
}
