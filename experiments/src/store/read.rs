//! Reading a results folder's tables whole: every part file and the compacted file, aligned on
//! their columns; which runs are complete.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::check::footer_check;
use super::{StoreError, COMPACTED};
use crate::train::record::Status;

/// Reads a Parquet file.
pub fn read_parquet(path: &Path) -> PolarsResult<DataFrame> {
    ParquetReader::new(File::open(path)?).finish()
}

/// The per-run part files of a table, `<table>/<run_id>.parquet`, sorted by run_id.
pub fn parts(dir: &Path, table: &str) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut parts = Vec::new();
    let entries = match fs::read_dir(dir.join(table)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(parts),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(id) = name.strip_suffix(".parquet") {
            if !name.starts_with('.') && name != COMPACTED {
                parts.push((id.to_string(), path));
            }
        }
    }
    parts.sort();
    Ok(parts)
}

/// The run_ids of the complete runs of `dir` ([`super::check`]): every file present and
/// readable.
pub fn completed_ids(dir: &Path) -> Result<BTreeSet<String>, StoreError> {
    Ok(super::check::health(dir)?.complete)
}

/// The part files of a table that pass [`footer_check`]: a damaged part is never read as a
/// result (`gradlab status` lists it, `gradlab sweep` runs its run again).
pub fn readable_parts(dir: &Path, table: &str) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut ok = Vec::new();
    for (id, path) in parts(dir, table)? {
        match footer_check(&path) {
            Ok(Ok(())) => ok.push((id, path)),
            Ok(Err(_)) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ok)
}

/// Reads one table of a results folder whole: every part file, and the rows of the compacted
/// file whose run has no part file (a part is newer: a compaction killed before it removed the
/// parts it merged leaves both). Runs whose tables have different columns (folders written by
/// older builds: `steps` had per-layer columns, `runs` fewer columns) are aligned, with nulls
/// where a run has no such column. Damaged parts are left out ([`readable_parts`]). `None` when
/// the table has no file at all.
pub fn read_table(dir: &Path, table: &str) -> PolarsResult<Option<DataFrame>> {
    let parts = readable_parts(dir, table)?;
    let mut frames = Vec::with_capacity(parts.len() + 1);
    let compacted = dir.join(table).join(COMPACTED);
    if compacted.exists() {
        let df = read_parquet(&compacted)?;
        let ids: BTreeSet<&str> = parts.iter().map(|(id, _)| id.as_str()).collect();
        let keep: BooleanChunked = df
            .column("run_id")?
            .str()?
            .iter()
            .map(|id| !id.is_some_and(|id| ids.contains(id)))
            .collect();
        frames.push(df.filter(&keep)?);
    }
    for (_, path) in &parts {
        frames.push(
            read_parquet(path)
                .map_err(|e| e.context(format!("reading {}", path.display()).into()))?,
        );
    }
    concat_aligned(frames)
}

/// Stacks frames whose columns may differ: the union of their columns in first-seen order,
/// nulls where a frame lacks one.
pub fn concat_aligned(frames: Vec<DataFrame>) -> PolarsResult<Option<DataFrame>> {
    let mut schema: Vec<(PlSmallStr, DataType)> = Vec::new();
    for df in &frames {
        for c in df.columns() {
            if !schema.iter().any(|(n, _)| n == c.name()) {
                schema.push((c.name().clone(), c.dtype().clone()));
            }
        }
    }
    let mut out: Option<DataFrame> = None;
    for df in frames {
        let height = df.height();
        let cols = schema
            .iter()
            .map(|(name, dtype)| match df.column(name) {
                Ok(c) => c.cast(dtype),
                Err(_) => Ok(Column::full_null(name.clone(), height, dtype)),
            })
            .collect::<PolarsResult<Vec<_>>>()?;
        let df = DataFrame::new(height, cols)?;
        match &mut out {
            None => out = Some(df),
            Some(o) => {
                o.vstack_mut_owned(df)?;
            }
        }
    }
    Ok(out.map(|mut df| {
        df.rechunk_mut();
        df
    }))
}

/// The run_ids whose `runs` row says the run diverged.
pub fn diverged_ids(dir: &Path) -> PolarsResult<BTreeSet<String>> {
    let Some(df) = read_table(dir, "runs")? else {
        return Ok(BTreeSet::new());
    };
    let (id, status) = (df.column("run_id")?.str()?, df.column("status")?.str()?);
    Ok(id
        .iter()
        .zip(status.iter())
        .filter(|(_, s)| *s == Some(Status::Diverged.as_str()))
        .filter_map(|(i, _)| i.map(String::from))
        .collect())
}
