//! Compaction: a folder's per-run part files merged into one file per table, without ever
//! losing a row.

use std::fs::{self, File};
use std::path::Path;

use polars::prelude::*;

use super::read::{parts, read_parquet, read_table};
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

/// Merges each table's part files into `<table>/compacted.parquet`, without losing a row: the
/// merged file (earlier compacted rows plus every part, sorted by run) is written atomically,
/// checked, and only then are the parts it holds removed. Parts written meanwhile stay as they
/// are. A lock keeps two compactions of one folder apart.
pub fn compact(dir: &Path) -> Result<Vec<Compacted>, StoreError> {
    let lock_path = dir.join(".gradlab-compact.lock");
    let lock = File::create(&lock_path).map_err(|e| StoreError::io(&lock_path, e))?;
    lock.try_lock()
        .map_err(|_| StoreError::Locked(dir.to_path_buf()))?;
    let mut done = Vec::new();
    for table in TABLES {
        let parts = parts(dir, table).map_err(|e| StoreError::io(&dir.join(table), e))?;
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
        write_parquet(&path, df).map_err(|e| StoreError::io(&path, e))?;
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
        done.push(Compacted {
            table,
            parts: parts.len(),
            rows,
        });
    }
    Ok(done)
}
