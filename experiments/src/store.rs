//! Results on disk (DESIGN.md "Sweeps, storage, distribution"; columns in `results/README.md`).
//!
//! One run writes `steps/<run_id>.parquet`, `flow/<run_id>.parquet` and, last, the completion
//! marker `runs/<run_id>.parquet`. Every file is written under a temporary name in its folder and
//! renamed, so a reader never sees a partial file. Columns use plain Parquet types (int64,
//! float64, boolean, string; nullable where a value can be missing), readable as-is by polars,
//! pyarrow and DuckDB.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, then a rename.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        write(&mut f)?;
        f.flush()?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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

/// Reads a Parquet file (for tests and the report).
pub fn read_parquet(path: &Path) -> PolarsResult<DataFrame> {
    ParquetReader::new(File::open(path)?).finish()
}
