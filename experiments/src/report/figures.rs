//! The report's figures from its data: loss curves (mean and min–max band over seeds), the
//! gradient norm against lag of the last untruncated profile (log scale: a stack's probe, or a
//! seq2seq encoder's flow against its distance from the decoder), and success rate against
//! truncation and clipping (Wilson bands), drawn by [`super::plot`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::plot::{self, Chart, FigureOptions, Series};
use super::{f64s, strings, ReportError};
use crate::store;
use crate::sweep::PlannedRun;
use crate::task::TaskKind;

/// What the figures are drawn from.
pub struct FigureData<'a> {
    /// The results folders (their `flow` tables are read here).
    pub dirs: &'a [PathBuf],
    pub runs: &'a DataFrame,
    pub steps: &'a DataFrame,
    /// The aggregated table, one row per group.
    pub table: &'a DataFrame,
    pub by: &'a [String],
    pub planned: &'a [PlannedRun],
    /// The sweep's task, if it has one.
    pub task: Option<TaskKind>,
}

/// The values of the keys `by` of every row of `t` (one empty list per row without keys).
fn group_keys(t: &DataFrame, by: &[String]) -> PolarsResult<Vec<Vec<String>>> {
    let cols: Vec<Vec<String>> = by
        .iter()
        .map(|k| strings(t, k))
        .collect::<PolarsResult<_>>()?;
    Ok((0..t.height())
        .map(|i| cols.iter().map(|c| c[i].clone()).collect())
        .collect())
}

/// The group (values of `by`) of every run (a row of `runs`).
fn run_groups(runs: &DataFrame, by: &[String]) -> PolarsResult<BTreeMap<String, Vec<String>>> {
    let ids = strings(runs, "run_id")?;
    let groups = group_keys(runs, by)?;
    Ok(ids.into_iter().zip(groups).collect())
}

/// Mean over the runs of each group, and the band (min, max), of `value` at each `x`.
fn curves(
    rows: impl Iterator<Item = (String, f64, f64)>,
    labels: &BTreeMap<String, Vec<String>>,
    order: &[Vec<String>],
    log_mean: bool,
) -> Vec<Series> {
    let mut acc: BTreeMap<&[String], BTreeMap<i64, Vec<f64>>> = BTreeMap::new();
    for (id, x, v) in rows {
        let Some(label) = labels.get(&id) else {
            continue;
        };
        if !v.is_finite() || (log_mean && v <= 0.0) {
            continue;
        }
        acc.entry(label.as_slice())
            .or_default()
            .entry(x as i64)
            .or_default()
            .push(v);
    }
    order
        .iter()
        .filter_map(|label| {
            let points = acc.get(label.as_slice())?;
            let mut s = Series::new(label.clone());
            for (&x, vs) in points {
                let mean = if log_mean {
                    (vs.iter().map(|v| v.ln()).sum::<f64>() / vs.len() as f64).exp()
                } else {
                    vs.iter().sum::<f64>() / vs.len() as f64
                };
                let lo = vs.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = vs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                s.points.push((x as f64, mean));
                s.band.push((x as f64, lo, hi));
            }
            Some(s)
        })
        .collect()
}

/// `(run_id, x, y)` of every row of `df`.
fn xy(df: &DataFrame, x: &str, y: &str) -> PolarsResult<impl Iterator<Item = (String, f64, f64)>> {
    let (ids, xs, ys) = (strings(df, "run_id")?, f64s(df, x)?, f64s(df, y)?);
    Ok(ids.into_iter().zip(xs).zip(ys).map(|((i, x), y)| (i, x, y)))
}

/// Draws every figure that `d` has data for into `out`; returns the files written.
pub fn draw_all(
    d: &FigureData<'_>,
    out: &Path,
    opts: &FigureOptions,
) -> Result<Vec<PathBuf>, ReportError> {
    let FigureData {
        dirs,
        runs,
        steps,
        table,
        by,
        planned,
        task,
    } = *d;
    let labels = run_groups(runs, by)?;
    let order = group_keys(table, by)?;
    let columns = |c: [&str; 4]| c.map(String::from);
    let mut charts = Vec::new();

    if steps.height() > 0 {
        let rows = xy(steps, "step", "loss")?;
        charts.push(Chart {
            file: "loss".into(),
            title: "Training loss (mean over seeds, band: min to max)".into(),
            x_label: "step".into(),
            y_label: "training loss".into(),
            log_y: true,
            categories: None,
            keys: by.to_vec(),
            columns: columns(["step", "loss_mean", "loss_min", "loss_max"]),
            series: curves(rows, &labels, &order, false),
        });
    }

    let flows = dirs
        .iter()
        .filter_map(|d| store::read_table(d, "flow").transpose())
        .collect::<PolarsResult<Vec<_>>>()?;
    if let Some(flow) = store::concat_aligned(flows)? {
        // The last untruncated profile of each run's top layer.
        let probe = last_probe(&flow)?;
        let rows = xy(&probe, "lag", "grad_norm")?;
        let sources: Vec<String> = strings(&probe, "source")?;
        let x_label = match (
            sources.iter().any(|s| s == "probe"),
            sources.iter().any(|s| s == "encoder"),
        ) {
            (false, true) => "lag (encoder steps before the decoder)",
            (true, true) => "lag (steps before the loss; seq2seq: before the decoder)",
            _ => "lag (steps before the loss)",
        };
        charts.push(Chart {
            file: "gradient_vs_lag".into(),
            title: "‖∂L/∂h_t‖ at the end of training, top layer (geometric mean over seeds)".into(),
            x_label: x_label.into(),
            y_label: "‖∂L/∂h_t‖, top layer".into(),
            log_y: true,
            categories: None,
            keys: by.to_vec(),
            columns: columns(["lag", "grad_norm_geomean", "grad_norm_min", "grad_norm_max"]),
            series: curves(rows, &labels, &order, true),
        });
    }

    if task.is_some_and(TaskKind::has_criterion) {
        for key in ["truncation", "clip"] {
            if let Some(chart) = success_against(table, by, planned, key)? {
                charts.push(chart);
            }
        }
    }

    let mut files = Vec::new();
    for chart in charts {
        if chart.series.is_empty() {
            continue;
        }
        files.extend(plot::draw(&chart, out, opts)?);
    }
    Ok(files)
}

/// The flow sources that hold a run's untruncated profile: a stack's probe (the last step's
/// loss through the whole window), a seq2seq encoder's flow (the whole loss across the
/// bottleneck into every source step). A run has one or the other.
const PROFILE_SOURCES: [&str; 2] = ["probe", "encoder"];

/// The rows of `flow` of each run's last untruncated profile ([`PROFILE_SOURCES`]) of its top
/// layer.
fn last_probe(flow: &DataFrame) -> PolarsResult<DataFrame> {
    let ids = strings(flow, "run_id")?;
    let (step, layer) = (f64s(flow, "step")?, f64s(flow, "layer")?);
    let source = flow.column("source")?.str()?;
    let is_probe: Vec<bool> = source
        .iter()
        .map(|s| s.is_some_and(|s| PROFILE_SOURCES.contains(&s)))
        .collect();
    let mut last: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for i in 0..flow.height() {
        if is_probe[i] {
            let e = last.entry(ids[i].as_str()).or_insert((layer[i], step[i]));
            *e = (e.0.max(layer[i]), e.1.max(step[i]));
        }
    }
    let keep: BooleanChunked = (0..flow.height())
        .map(|i| is_probe[i] && last[ids[i].as_str()] == (layer[i], step[i]))
        .collect();
    flow.filter(&keep)
}

/// Success rate against the values of the swept `key`, one line per group of the other keys,
/// with Wilson intervals as the band.
fn success_against(
    table: &DataFrame,
    by: &[String],
    planned: &[PlannedRun],
    key: &str,
) -> PolarsResult<Option<Chart>> {
    // The key's values in the order of the spec, as the runs table writes them.
    let mut categories: Vec<String> = Vec::new();
    for run in planned {
        if let Some((_, v)) = run.swept.iter().find(|(k, _)| k == key) {
            if !categories.contains(v) {
                categories.push(v.clone());
            }
        }
    }
    if !by.iter().any(|k| k == key) || categories.len() < 2 {
        return Ok(None);
    }
    let others: Vec<String> = by.iter().filter(|k| *k != key).cloned().collect();
    let groups = group_keys(table, &others)?;
    let xs = strings(table, key)?;
    let (k, n) = (f64s(table, "successes")?, f64s(table, "judged")?);
    let (lo, hi) = (f64s(table, "success_lo95")?, f64s(table, "success_hi95")?);
    let mut series: Vec<Series> = Vec::new();
    for i in 0..table.height() {
        let Some(x) = categories.iter().position(|c| canonical_eq(c, &xs[i])) else {
            continue;
        };
        if n[i] <= 0.0 {
            continue;
        }
        let s = match series.iter_mut().position(|s| s.keys == groups[i]) {
            Some(j) => &mut series[j],
            None => {
                series.push(Series::new(groups[i].clone()));
                series.last_mut().expect("just pushed")
            }
        };
        s.points.push((x as f64, k[i] / n[i]));
        s.band.push((x as f64, lo[i], hi[i]));
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        s.band.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(Some(Chart {
        file: format!("success_vs_{key}"),
        title: format!("Success rate against {key} (band: 95% Wilson interval)"),
        x_label: key.into(),
        y_label: "success rate".into(),
        log_y: false,
        categories: Some(categories),
        keys: others,
        columns: [key, "success_rate", "success_lo95", "success_hi95"].map(String::from),
        series,
    }))
}

/// Whether a value of a sweep axis and a value of the runs table are the same (numbers compare
/// as numbers: the table may print `1e-5` as `0.00001`).
fn canonical_eq(axis: &str, table: &str) -> bool {
    axis == table || matches!((axis.parse::<f64>(), table.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}
