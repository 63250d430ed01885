//! Writing one run's tables: `steps` and `flow` first, the `runs` row (the completion marker)
//! last, each file atomically.

use std::path::Path;

use polars::prelude::*;

use super::{run_paths, Provenance};
use crate::config::{RunConfig, KEYS};
use crate::fs::write_atomic;
use crate::train::record::{FlowRow, RunRecord, StepRow};

pub(super) fn write_parquet(path: &Path, mut df: DataFrame) -> std::io::Result<()> {
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

/// Writes the three tables of one run, the `runs` row last.
pub fn write_run(
    dir: &Path,
    id: &str,
    cfg: &RunConfig,
    record: &RunRecord,
    prov: &Provenance,
) -> std::io::Result<()> {
    let [runs, steps, flow] = run_paths(dir, id);
    write_parquet(&steps, steps_frame(id, &record.logged, cfg.depth))?;
    write_parquet(&flow, flow_frame(id, &record.flow))?;
    write_parquet(&runs, runs_frame(id, cfg, record, prov))
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
    let table = cfg.to_table();
    KEYS.iter()
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
