//! Results on disk (DESIGN.md "Sweeps, storage, distribution"; columns in `results/README.md`).
//!
//! One run writes `steps/<run_id>.parquet`, `flow/<run_id>.parquet` and, last, the completion
//! marker `runs/<run_id>.parquet`. Every file is written under a temporary name in its folder and
//! renamed, so a reader never sees a partial file. Columns use plain Parquet types (int64,
//! float64, boolean, string; nullable where a value can be missing), readable as-is by polars,
//! pyarrow and DuckDB.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use polars::prelude::*;

use crate::config::RunConfig;
use crate::train::{FlowRow, RunRecord, StepRow};

/// Identity of a run: a stable hash (FNV-1a, 64 bit) of its canonical TOML, seed included, as
/// 16 hex digits. The same on every machine and build.
pub fn run_id(cfg: &RunConfig) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in cfg.to_toml().bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Facts about the build and machine recorded with every run.
#[derive(Clone, Debug, PartialEq)]
pub struct Provenance {
    pub sweep: String,
    pub isa: String,
    pub gradlab_version: String,
    pub git_commit: String,
}

/// This machine's host name, as recorded in results and temporary-file names.
pub fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Marks a temporary file: `.<name>.tmp-<host>-<pid>-<n>`. Host and pid tell
/// [`clean_temporaries`] whether its writer may still be alive; `n` keeps the writes of one
/// process apart.
const TMP_MARK: &str = ".tmp-";

fn tmp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        ".{name}{TMP_MARK}{}-{}-{n}",
        host().replace('-', "_"),
        std::process::id()
    ))
}

/// Testing hook: milliseconds to wait between writing a temporary file and renaming it
/// (`GRADLAB_TEST_WRITE_DELAY_MS`), so that the reliability tests can kill a process mid-write.
fn write_delay() -> Option<Duration> {
    static DELAY: OnceLock<Option<Duration>> = OnceLock::new();
    *DELAY.get_or_init(|| {
        std::env::var("GRADLAB_TEST_WRITE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    })
}

/// Writes `path` atomically: a temporary file in the same folder, flushed to disk, then renamed,
/// so a reader sees the old file or the whole new one, never a part.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        write(&mut f)?;
        f.flush()?;
        f.sync_all()?;
        if let Some(delay) = write_delay() {
            std::thread::sleep(delay);
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// How long a temporary file of another host must be untouched before it counts as left over
/// (a write takes milliseconds; hosts sharing a folder cannot see each other's processes).
const FOREIGN_TMP_AGE: Duration = Duration::from_secs(600);

/// Removes temporary files left by killed writers in `dir` and its table folders: those of this
/// host whose process is gone, and those of other hosts untouched for ten minutes. Files of
/// live writers (a shard running beside this one) are kept. Returns how many were removed.
pub fn clean_temporaries(dir: &Path) -> std::io::Result<usize> {
    let me = host().replace('-', "_");
    let mut removed = 0;
    for path in temporaries(dir) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let owner = name
            .as_deref()
            .and_then(|n| n.rsplit_once(TMP_MARK))
            .map_or("", |o| o.1);
        let mut parts = owner.rsplitn(3, '-');
        let (_n, pid, host) = (parts.next(), parts.next(), parts.next());
        let stale = if host == Some(me.as_str()) {
            let pid = pid.unwrap_or("");
            pid == std::process::id().to_string() || !Path::new("/proc").join(pid).exists()
        } else {
            fs::metadata(&path)?
                .modified()?
                .elapsed()
                .is_ok_and(|age| age > FOREIGN_TMP_AGE)
        };
        if stale {
            fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Lists the temporary files in `dir` and the folders gradlab writes under it.
pub fn temporaries(dir: &Path) -> Vec<PathBuf> {
    ["", "runs", "steps", "flow", "failed", "report", "slurm"]
        .iter()
        .filter_map(|sub| fs::read_dir(dir.join(sub)).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with('.') && name.contains(TMP_MARK)
        })
        .map(|e| e.path())
        .collect()
}

fn write_parquet(path: &Path, mut df: DataFrame) -> std::io::Result<()> {
    write_atomic(path, |f| {
        ParquetWriter::new(f)
            .finish(&mut df)
            .map(|_| ())
            .map_err(std::io::Error::other)
    })
}

fn frame(columns: Vec<Column>) -> DataFrame {
    DataFrame::new_infer_height(columns).expect("columns of one table have equal lengths")
}

/// The paths of one run's files under `dir`.
pub fn run_paths(dir: &Path, id: &str) -> [PathBuf; 3] {
    ["runs", "steps", "flow"].map(|t| dir.join(t).join(format!("{id}.parquet")))
}

/// Writes the three tables of one run, the `runs` row last.
pub fn write_run(
    dir: &Path,
    cfg: &RunConfig,
    record: &RunRecord,
    prov: &Provenance,
) -> std::io::Result<String> {
    let id = run_id(cfg);
    let [runs, steps, flow] = run_paths(dir, &id);
    write_parquet(&steps, steps_frame(&id, &record.steps, cfg.depth))?;
    write_parquet(&flow, flow_frame(&id, &record.flow))?;
    write_parquet(&runs, runs_frame(&id, cfg, record, prov))?;
    Ok(id)
}

fn per_layer(
    rows: &[StepRow],
    layers: usize,
    get: impl Fn(&StepRow) -> &Vec<Option<f64>>,
) -> Vec<Vec<Option<f64>>> {
    (0..layers)
        .map(|l| {
            rows.iter()
                .map(|r| get(r).get(l).copied().flatten())
                .collect()
        })
        .collect()
}

fn steps_frame(id: &str, rows: &[StepRow], layers: usize) -> DataFrame {
    let n = rows.len();
    let col = |name: &str, v: Vec<f64>| Column::new(name.into(), v);
    let opt = |name: &str, v: Vec<Option<f64>>| Column::new(name.into(), v);
    let mut cols = vec![
        Column::new("run_id".into(), vec![id; n]),
        Column::new(
            "step".into(),
            rows.iter().map(|r| r.step as i64).collect::<Vec<_>>(),
        ),
        col("loss", rows.iter().map(|r| r.loss).collect()),
        col("grad_norm", rows.iter().map(|r| r.grad_norm).collect()),
        col(
            "grad_norm_clipped",
            rows.iter().map(|r| r.grad_norm_clipped).collect(),
        ),
        Column::new(
            "clipped".into(),
            rows.iter().map(|r| r.clipped).collect::<Vec<_>>(),
        ),
        col("lr", rows.iter().map(|r| r.lr).collect()),
        opt("eval_loss", rows.iter().map(|r| r.eval_loss).collect()),
        opt("eval_metric", rows.iter().map(|r| r.eval_metric).collect()),
        opt(
            "trunc_cosine",
            rows.iter().map(|r| r.trunc_cosine).collect(),
        ),
        opt(
            "trunc_norm_ratio",
            rows.iter().map(|r| r.trunc_norm_ratio).collect(),
        ),
    ];
    for l in 0..layers {
        cols.push(col(
            &format!("grad_norm_l{l}"),
            rows.iter()
                .map(|r| r.grad_norm_layers.get(l).copied().unwrap_or(f64::NAN))
                .collect(),
        ));
    }
    for (name, values) in [
        (
            "spectral_radius",
            per_layer(rows, layers, |r| &r.spectral_radius),
        ),
        ("sigma_max", per_layer(rows, layers, |r| &r.sigma_max)),
        ("forget_mean", per_layer(rows, layers, |r| &r.forget_mean)),
        (
            "forget_saturation",
            per_layer(rows, layers, |r| &r.forget_saturation),
        ),
    ] {
        for (l, v) in values.into_iter().enumerate() {
            cols.push(opt(&format!("{name}_l{l}"), v));
        }
    }
    frame(cols)
}

fn flow_frame(id: &str, rows: &[FlowRow]) -> DataFrame {
    let n = rows.len();
    frame(vec![
        Column::new("run_id".into(), vec![id; n]),
        Column::new(
            "step".into(),
            rows.iter().map(|r| r.step as i64).collect::<Vec<_>>(),
        ),
        Column::new(
            "layer".into(),
            rows.iter().map(|r| r.layer as i64).collect::<Vec<_>>(),
        ),
        Column::new(
            "lag".into(),
            rows.iter().map(|r| r.lag as i64).collect::<Vec<_>>(),
        ),
        Column::new(
            "source".into(),
            rows.iter().map(|r| r.source.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "grad_norm".into(),
            rows.iter().map(|r| r.grad_norm).collect::<Vec<_>>(),
        ),
    ])
}

/// One column per config key: strings for names and `clip`/`init`/`truncation`/`lr_schedule`,
/// int64 for counts, float64 for rates, boolean for `nesterov`.
fn config_columns(cfg: &RunConfig) -> Vec<Column> {
    let table = toml::Table::try_from(cfg).expect("a RunConfig always serializes");
    crate::config::KEYS
        .iter()
        .map(|&key| {
            let name: PlSmallStr = key.into();
            match table.get(key) {
                Some(toml::Value::String(s)) => Column::new(name, [s.as_str()]),
                Some(toml::Value::Integer(i)) if key == "truncation" => {
                    Column::new(name, [i.to_string()])
                }
                Some(toml::Value::Integer(i)) => Column::new(name, [*i]),
                Some(toml::Value::Float(f)) => Column::new(name, [*f]),
                Some(toml::Value::Boolean(b)) => Column::new(name, [*b]),
                Some(other) => Column::new(name, [other.to_string()]),
                None if key == "text" => Column::new(name, [None::<&str>]),
                None => Column::new(name, [None::<i64>]),
            }
        })
        .collect()
}

fn runs_frame(id: &str, cfg: &RunConfig, record: &RunRecord, prov: &Provenance) -> DataFrame {
    let o = &record.outcome;
    let mut cols = vec![
        Column::new("run_id".into(), [id]),
        Column::new("sweep".into(), [prov.sweep.as_str()]),
    ];
    cols.extend(config_columns(cfg));
    cols.extend([
        Column::new("status".into(), [o.status.as_str()]),
        Column::new("final_loss".into(), [o.final_loss]),
        Column::new("best_loss".into(), [o.best_loss]),
        Column::new("metric".into(), [o.metric]),
        Column::new("success".into(), [o.success]),
        Column::new(
            "diverged_at_step".into(),
            [o.diverged_at_step.map(|s| s as i64)],
        ),
        Column::new("clip_fraction".into(), [o.clip_fraction]),
        Column::new("decay_rate".into(), [o.decay_rate]),
        Column::new("steps_completed".into(), [o.steps as i64]),
        Column::new("wall_seconds".into(), [o.wall_seconds]),
        Column::new("steps_per_sec".into(), [o.steps_per_sec]),
        Column::new("isa".into(), [prov.isa.as_str()]),
        Column::new("gradlab_version".into(), [prov.gradlab_version.as_str()]),
        Column::new("git_commit".into(), [prov.git_commit.as_str()]),
    ]);
    frame(cols)
}

/// Reads a Parquet file.
pub fn read_parquet(path: &Path) -> PolarsResult<DataFrame> {
    ParquetReader::new(File::open(path)?).finish()
}

/// The tables of a results folder, one subfolder each.
pub const TABLES: [&str; 3] = ["runs", "steps", "flow"];

/// The file [`compact`] merges a table's parts into, beside them in the table's folder (so a
/// reader of `<table>/*.parquet` reads it too).
pub const COMPACTED: &str = "compacted.parquet";

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

/// The run_ids whose `runs` row exists (a part file, or a row of the compacted file): the runs
/// that are complete.
pub fn completed_ids(dir: &Path) -> PolarsResult<BTreeSet<String>> {
    let mut ids: BTreeSet<String> = parts(dir, "runs")?.into_iter().map(|(id, _)| id).collect();
    let compacted = dir.join("runs").join(COMPACTED);
    if compacted.exists() {
        let df = read_parquet(&compacted)?;
        ids.extend(
            df.column("run_id")?
                .str()?
                .iter()
                .flatten()
                .map(String::from),
        );
    }
    Ok(ids)
}

/// Reads one table of a results folder whole: every part file, and the rows of the compacted
/// file whose run has no part file (a part is newer: a compaction killed before it removed the
/// parts it merged leaves both). Runs whose tables have different columns (the per-layer
/// columns of `steps`) are aligned, with nulls where a run has no such column. `None` when the
/// table has no file at all.
pub fn read_table(dir: &Path, table: &str) -> PolarsResult<Option<DataFrame>> {
    let parts = parts(dir, table)?;
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
fn concat_aligned(frames: Vec<DataFrame>) -> PolarsResult<Option<DataFrame>> {
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
        let by: &[&str] = match table {
            "runs" => &["run_id"],
            "steps" => &["run_id", "step"],
            _ => &["run_id", "step", "source", "layer", "lag"],
        };
        let df = df.sort(by, SortMultipleOptions::default().with_maintain_order(true))?;
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
    fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
