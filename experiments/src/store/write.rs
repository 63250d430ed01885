//! Writing one run's tables: `steps` and `flow` first, the `runs` row (the completion marker)
//! last, each file atomically.
//!
//! [`RowGroups`] writes a table too large for memory (`gradlab activations`) the same way, one
//! row group at a time.

use std::io::Write;
use std::path::Path;

use polars::io::parquet::write::get_encodings;
use polars::prelude::*;
use polars_parquet::write::{
    CompressionOptions, FileWriter, RowGroupIterator, StatisticsOptions, Version, WriteOptions,
};

use super::{run_paths, Provenance};
use crate::config::{Clip, RunConfig, Truncation, KEYS};
use crate::fs::{write_atomic, TempFile};
use crate::train::record::{FlowRow, RunRecord, SpectrumRow, StepRow};

/// Columns that identify a row: written as required (non-null) Parquet fields.
const KEY_COLUMNS: [&str; 9] = [
    "run_id", "step", "layer", "lag", "source", "kind", "index", "position", "unit",
];

/// Rows per Parquet row group (polars' default).
const ROW_GROUP: usize = 512 * 512;

/// Writes `df` as one Parquet file, atomically.
///
/// polars' own `ParquetWriter` declares strings with Arrow's `string_view` type, which pyarrow
/// can read but not filter, sort or join on, and marks every column nullable. This writer goes
/// through polars-parquet with the oldest Arrow compatibility level instead: strings are
/// `large_string`, and the [`KEY_COLUMNS`] are required fields.
pub(super) fn write_parquet(path: &Path, mut df: DataFrame) -> std::io::Result<()> {
    write_atomic(path, |f| {
        let mut groups = RowGroups::new(f, df.schema())?;
        groups.write(&mut df)?;
        groups.finish()
    })
}

/// A Parquet file written one row group at a time, for a table too large to hold in memory
/// (`gradlab activations`): the same types and required key columns as [`write_parquet`]'s.
pub struct RowGroups<'a> {
    writer: FileWriter<std::io::BufWriter<&'a mut TempFile>>,
    schema: ArrowSchema,
    options: WriteOptions,
}

impl<'a> RowGroups<'a> {
    /// Starts a file whose groups all have the columns of `schema`.
    pub fn new(file: &'a mut TempFile, schema: &Schema) -> std::io::Result<Self> {
        let mut schema = schema.to_arrow(CompatLevel::oldest());
        for field in schema.iter_values_mut() {
            if KEY_COLUMNS.contains(&field.name.as_str()) {
                field.is_nullable = false;
            }
        }
        let options = WriteOptions {
            statistics: StatisticsOptions::default(),
            compression: CompressionOptions::Zstd(None),
            version: Version::V1,
            data_page_size: None,
        };
        let writer = FileWriter::try_new(std::io::BufWriter::new(file), schema.clone(), options)
            .map_err(std::io::Error::other)?;
        Ok(RowGroups {
            writer,
            schema,
            options,
        })
    }

    /// Appends the rows of `df` (cut into groups of at most 2^18 rows).
    ///
    /// # Panics
    /// If a key column holds nulls.
    pub fn write(&mut self, df: &mut DataFrame) -> std::io::Result<()> {
        self.write_frame(df).map_err(std::io::Error::other)
    }

    fn write_frame(&mut self, df: &mut DataFrame) -> PolarsResult<()> {
        for name in KEY_COLUMNS {
            if let Ok(column) = df.column(name) {
                assert_eq!(column.null_count(), 0, "key column {name} has nulls");
            }
        }
        let chunked = polars::frame::chunk_df_for_writing(df, ROW_GROUP)?;
        let batches = chunked.iter_chunks(CompatLevel::oldest(), false).map(Ok);
        let row_groups = RowGroupIterator::try_new(
            batches,
            &self.schema,
            self.options,
            get_encodings(&self.schema),
        )?;
        for group in row_groups {
            self.writer.write(u64::MAX, group?)?;
        }
        Ok(())
    }

    /// Writes the footer: the file is complete (and renamed into place once
    /// [`write_atomic`]'s closure returns).
    pub fn finish(mut self) -> std::io::Result<()> {
        self.writer.end(None).map_err(std::io::Error::other)?;
        self.writer.into_inner().flush()
    }
}

fn frame(columns: Vec<Column>) -> DataFrame {
    DataFrame::new_infer_height(columns).expect("columns of one table have equal lengths")
}

/// Writes the tables of one run into the existing results folder `dir`, the `runs` row last
/// (a folder that is gone is an error, not made again: see [`write_atomic`]).
pub fn write_run(
    dir: &Path,
    id: &str,
    cfg: &RunConfig,
    record: &RunRecord,
    prov: &Provenance,
) -> std::io::Result<()> {
    let [runs, steps, layers, flow, spectrum] = run_paths(dir, id);
    write_parquet(&steps, steps_frame(id, &record.logged))?;
    write_parquet(
        &layers,
        layers_frame(id, &record.logged, cfg.recurrent_layers()),
    )?;
    write_parquet(&flow, flow_frame(id, &record.flow))?;
    write_parquet(&spectrum, spectrum_frame(id, &record.spectrum))?;
    write_parquet(&runs, runs_frame(id, cfg, record, prov))
}

fn steps_frame(id: &str, rows: &[StepRow]) -> DataFrame {
    let n = rows.len();
    let col = |name: &str, v: Vec<f64>| Column::new(name.into(), v);
    let opt = |name: &str, v: Vec<Option<f64>>| Column::new(name.into(), v);
    frame(vec![
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
        opt(
            "norm_ratio_mean",
            rows.iter().map(|r| r.norm_ratio_mean).collect(),
        ),
        opt(
            "norm_ratio_min",
            rows.iter().map(|r| r.norm_ratio_min).collect(),
        ),
        opt("omega", rows.iter().map(|r| r.omega).collect()),
    ])
}

/// The per-layer quantities of each logged update, one row per (step, layer).
fn layers_frame(id: &str, rows: &[StepRow], layers: usize) -> DataFrame {
    let cells = || rows.iter().flat_map(|r| (0..layers).map(move |l| (r, l)));
    let n = rows.len() * layers;
    let opt = |name: &str, get: fn(&StepRow) -> &Vec<Option<f64>>| {
        let v: Vec<Option<f64>> = cells()
            .map(|(r, l)| get(r).get(l).copied().flatten())
            .collect();
        Column::new(name.into(), v)
    };
    frame(vec![
        Column::new("run_id".into(), vec![id; n]),
        Column::new(
            "step".into(),
            cells().map(|(r, _)| r.step as i64).collect::<Vec<_>>(),
        ),
        Column::new(
            "layer".into(),
            cells().map(|(_, l)| l as i64).collect::<Vec<_>>(),
        ),
        Column::new(
            "grad_norm".into(),
            cells()
                .map(|(r, l)| r.grad_norm_layers.get(l).copied())
                .collect::<Vec<_>>(),
        ),
        opt("spectral_radius", |r| &r.spectral_radius),
        opt("sigma_max", |r| &r.sigma_max),
        opt("forget_mean", |r| &r.forget_mean),
        opt("forget_saturation", |r| &r.forget_saturation),
        opt("orthogonality", |r| &r.orthogonality),
        opt("lyapunov_max", |r| &r.lyapunov_max),
        opt("kaplan_yorke_dim", |r| &r.kaplan_yorke_dim),
        Column::new(
            "lyapunov_positive".into(),
            cells()
                .map(|(r, l)| {
                    r.lyapunov_positive
                        .get(l)
                        .copied()
                        .flatten()
                        .map(|n| n as i64)
                })
                .collect::<Vec<_>>(),
        ),
        opt("omega", |r| &r.omega_layers),
    ])
}

fn spectrum_frame(id: &str, rows: &[SpectrumRow]) -> DataFrame {
    let n = rows.len();
    let ints = |name: &str, get: fn(&SpectrumRow) -> usize| {
        Column::new(
            name.into(),
            rows.iter().map(|r| get(r) as i64).collect::<Vec<_>>(),
        )
    };
    frame(vec![
        Column::new("run_id".into(), vec![id; n]),
        ints("step", |r| r.step),
        ints("layer", |r| r.layer),
        Column::new(
            "kind".into(),
            rows.iter().map(|r| r.kind.name()).collect::<Vec<_>>(),
        ),
        ints("index", |r| r.index),
        Column::new(
            "value".into(),
            rows.iter().map(|r| r.value).collect::<Vec<_>>(),
        ),
    ])
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
/// int64 for counts, float64 for rates, boolean for `nesterov`, a list of strings for `tags`.
/// The string-valued axes also get columns a plot can use (`truncation_k`, `clip_kind`,
/// `clip_threshold`) right after them.
fn config_columns(cfg: &RunConfig) -> Vec<Column> {
    let table = cfg.to_table();
    let mut cols = Vec::new();
    for &key in KEYS.iter() {
        let name: PlSmallStr = key.into();
        cols.push(match table.get(key) {
            _ if key == "tags" => {
                let tags = Series::new(PlSmallStr::EMPTY, &cfg.tags.0);
                Column::new(name, [tags])
            }
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
        });
        match key {
            "truncation" => {
                let steps = match cfg.truncation {
                    Truncation::Full => None,
                    Truncation::K(k) => Some(k as i64),
                };
                cols.push(Column::new("truncation_k".into(), [steps]));
            }
            "clip" => {
                let (kind, threshold) = match cfg.clip {
                    Clip::None => ("none", None),
                    Clip::Norm(t) => ("norm", Some(f64::from(t))),
                    Clip::Value(t) => ("value", Some(f64::from(t))),
                };
                cols.push(Column::new("clip_kind".into(), [kind]));
                cols.push(Column::new("clip_threshold".into(), [threshold]));
            }
            _ => {}
        }
    }
    cols
}

fn runs_frame(id: &str, cfg: &RunConfig, record: &RunRecord, prov: &Provenance) -> DataFrame {
    let o = &record.outcome;
    let criterion = cfg.task.criterion();
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
        Column::new("success_op".into(), [criterion.map(|c| c.op())]),
        Column::new(
            "success_threshold".into(),
            [criterion.map(|c| c.threshold())],
        ),
        Column::new(
            "diverged_at_step".into(),
            [o.diverged_at_step.map(|s| s as i64)],
        ),
        Column::new("clip_fraction".into(), [o.clip_fraction]),
        Column::new("decay_rate".into(), [o.decay_rate]),
        Column::new("steps_completed".into(), [o.steps as i64]),
        Column::new(
            "sequences_seen".into(),
            [(o.steps as i64).saturating_mul(cfg.batch as i64)],
        ),
        Column::new(
            "started_at".into(),
            [humantime::format_rfc3339_seconds(o.started_at).to_string()],
        ),
        Column::new("host".into(), [crate::fs::host()]),
        Column::new("wall_seconds".into(), [o.wall_seconds]),
        Column::new("steps_per_sec".into(), [o.steps_per_sec]),
        Column::new("isa".into(), [prov.isa.as_str()]),
        Column::new("gradlab_version".into(), [prov.gradlab_version.as_str()]),
        Column::new("git_commit".into(), [prov.git_commit.as_str()]),
    ]);
    frame(cols)
}
