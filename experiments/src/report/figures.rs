//! The report's figures from its data: loss curves (mean and min–max band over seeds), the
//! gradient norm against lag of the last untruncated profile (log scale: a stack's probe, or a
//! seq2seq encoder's flow against its distance from the decoder) and over training step and lag
//! (a heatmap), the Lyapunov spectrum and the largest singular value of the Jacobian
//! ∂h_t/∂h_{t−k} against k at the end of training (`spectrum` table, where the runs have it),
//! and success rate against truncation and clipping (Wilson bands), drawn by [`super::plot`]
//! and [`super::heatmap`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::heatmap::{self, HeatPanel, Heatmap};
use super::plot::{self, Chart, FigureOptions, Series};
use super::{f64s, strings, ReportError};
use crate::store;
use crate::sweep::PlannedRun;
use crate::task::TaskKind;

/// What the figures are drawn from.
pub struct FigureData<'a> {
    /// The results folders (their `flow` and `spectrum` tables are read here).
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

/// A figure to draw.
enum Figure {
    Lines(Chart),
    Heat(Heatmap),
}

/// Table `table` of every folder, stacked; `None` when none has it (older folders have no
/// `spectrum`).
fn read_all(dirs: &[PathBuf], table: &str) -> PolarsResult<Option<DataFrame>> {
    let frames = dirs
        .iter()
        .filter_map(|d| store::read_table(d, table).transpose())
        .collect::<PolarsResult<Vec<_>>>()?;
    store::concat_aligned(frames)
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
    let mut figures = Vec::new();

    if steps.height() > 0 {
        let rows = xy(steps, "step", "loss")?;
        figures.push(Figure::Lines(Chart {
            file: "loss".into(),
            title: "Training loss (mean over seeds, band: min to max)".into(),
            x_label: "step".into(),
            y_label: "training loss".into(),
            log_x: false,
            log_y: true,
            reference_y: None,
            categories: None,
            keys: by.to_vec(),
            columns: columns(["step", "loss_mean", "loss_min", "loss_max"]),
            series: curves(rows, &labels, &order, false),
        }));
    }

    if let Some(flow) = read_all(dirs, "flow")? {
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
        figures.push(Figure::Lines(Chart {
            file: "gradient_vs_lag".into(),
            title: "‖∂L/∂h_t‖ at the end of training, top layer (geometric mean over seeds)".into(),
            x_label: x_label.into(),
            y_label: "‖∂L/∂h_t‖, top layer".into(),
            log_x: false,
            log_y: true,
            reference_y: None,
            categories: None,
            keys: by.to_vec(),
            columns: columns(["lag", "grad_norm_geomean", "grad_norm_min", "grad_norm_max"]),
            series: curves(rows, &labels, &order, true),
        }));
        figures.push(Figure::Heat(gradient_heatmap(&flow, &labels, &order, by)?));
    }

    if let Some(spectrum) = read_all(dirs, "spectrum")? {
        let [lyapunov, jacobian] = spectrum_charts(&spectrum, &labels, &order, by)?;
        figures.push(Figure::Lines(lyapunov));
        figures.push(Figure::Lines(jacobian));
    }

    if task.is_some_and(TaskKind::has_criterion) {
        for key in ["truncation", "clip", "seq_len"] {
            if let Some(chart) = success_against(table, by, planned, key)? {
                figures.push(Figure::Lines(chart));
            }
        }
    }

    let mut files = Vec::new();
    for figure in figures {
        match figure {
            Figure::Lines(chart) if chart.series.is_empty() => {}
            Figure::Lines(chart) => files.extend(plot::draw(&chart, out, opts)?),
            Figure::Heat(map) => files.extend(heatmap::draw(&map, out, opts)?),
        }
    }
    Ok(files)
}

/// The top layer of each run, among the `selected` rows.
fn top_layers<'a>(ids: &'a [String], layer: &[f64], selected: &[bool]) -> BTreeMap<&'a str, f64> {
    let mut top: BTreeMap<&str, f64> = BTreeMap::new();
    for i in (0..ids.len()).filter(|&i| selected[i]) {
        let e = top.entry(ids[i].as_str()).or_insert(layer[i]);
        *e = e.max(layer[i]);
    }
    top
}

/// Which rows of `df` are of their run's top layer at its last step, among the `selected`.
fn last_of_top_layer(df: &DataFrame, selected: &[bool]) -> PolarsResult<Vec<bool>> {
    let ids = strings(df, "run_id")?;
    let (step, layer) = (f64s(df, "step")?, f64s(df, "layer")?);
    let rows = || (0..df.height()).filter(|&i| selected[i]);
    let top = top_layers(&ids, &layer, selected);
    let mut last: BTreeMap<&str, f64> = BTreeMap::new();
    for i in rows().filter(|&i| layer[i] == top[ids[i].as_str()]) {
        let e = last.entry(ids[i].as_str()).or_insert(step[i]);
        *e = e.max(step[i]);
    }
    Ok((0..df.height())
        .map(|i| {
            let id = ids[i].as_str();
            selected[i] && layer[i] == top[id] && step[i] == last[id]
        })
        .collect())
}

/// The flow sources that hold a run's untruncated profile: a stack's probe (the last step's
/// loss through the whole window), a seq2seq encoder's flow (the whole loss across the
/// bottleneck into every source step). A run has one or the other.
const PROFILE_SOURCES: [&str; 2] = ["probe", "encoder"];

/// Whether each row of `flow` is of a run's untruncated profile ([`PROFILE_SOURCES`]).
fn probe_rows(flow: &DataFrame) -> PolarsResult<Vec<bool>> {
    let source = flow.column("source")?.str()?;
    Ok(source
        .iter()
        .map(|s| s.is_some_and(|s| PROFILE_SOURCES.contains(&s)))
        .collect())
}

/// The rows of `flow` of each run's last probe of its top layer.
fn last_probe(flow: &DataFrame) -> PolarsResult<DataFrame> {
    let keep: BooleanChunked = last_of_top_layer(flow, &probe_rows(flow)?)?
        .into_iter()
        .collect();
    flow.filter(&keep)
}

/// ‖∂L/∂h_t‖ of the probe of each run's top layer over (logged step, lag), one panel per group:
/// log10 of the geometric mean over the group's runs of the positive finite values, NaN
/// (blank) where there is none.
fn gradient_heatmap(
    flow: &DataFrame,
    labels: &BTreeMap<String, Vec<String>>,
    order: &[Vec<String>],
    by: &[String],
) -> PolarsResult<Heatmap> {
    let ids = strings(flow, "run_id")?;
    let probe = probe_rows(flow)?;
    let (step, layer) = (f64s(flow, "step")?, f64s(flow, "layer")?);
    let (lag, norm) = (f64s(flow, "lag")?, f64s(flow, "grad_norm")?);
    let top = top_layers(&ids, &layer, &probe);
    /// A group's logged steps and lags, and per cell the sum and count of log10 values.
    #[derive(Default)]
    struct Cells {
        steps: BTreeSet<i64>,
        lags: BTreeSet<i64>,
        sums: BTreeMap<(i64, i64), (f64, usize)>,
    }
    let mut groups: BTreeMap<&[String], Cells> = BTreeMap::new();
    for i in 0..flow.height() {
        let Some(label) = labels.get(&ids[i]) else {
            continue;
        };
        if !probe[i] || layer[i] != top[ids[i].as_str()] {
            continue;
        }
        let g = groups.entry(label.as_slice()).or_default();
        let cell = (step[i] as i64, lag[i] as i64);
        g.steps.insert(cell.0);
        g.lags.insert(cell.1);
        if norm[i].is_finite() && norm[i] > 0.0 {
            let s = g.sums.entry(cell).or_insert((0.0, 0));
            *s = (s.0 + norm[i].log10(), s.1 + 1);
        }
    }
    let panels = order
        .iter()
        .filter_map(|label| {
            let g = groups.get(label.as_slice())?;
            let values = g
                .steps
                .iter()
                .flat_map(|&s| g.lags.iter().map(move |&l| (s, l)))
                .map(|cell| g.sums.get(&cell).map_or(f64::NAN, |&(s, k)| s / k as f64))
                .collect();
            let positions = |v: &BTreeSet<i64>| v.iter().map(|&x| x as f64).collect();
            Some(HeatPanel::new(
                label.clone(),
                positions(&g.steps),
                positions(&g.lags),
                values,
            ))
        })
        .collect();
    Ok(Heatmap {
        file: "gradient_heatmap".into(),
        title: "‖∂L/∂h_t‖ of the probe over training step and lag, top layer (geometric mean over seeds)"
            .into(),
        x_label: "training step".into(),
        y_label: "lag (steps back)".into(),
        colour_label: "‖∂L/∂h_t‖".into(),
        keys: by.to_vec(),
        columns: ["step", "lag", "log10_grad_norm"].map(String::from),
        panels,
    })
}

/// The Lyapunov spectrum (λ_i against i, from 1) and the largest singular value of
/// ∂h_t/∂h_{t−k} against k, each of every run's top layer at its last measured step.
fn spectrum_charts(
    spectrum: &DataFrame,
    labels: &BTreeMap<String, Vec<String>>,
    order: &[Vec<String>],
    by: &[String],
) -> PolarsResult<[Chart; 2]> {
    let ids = strings(spectrum, "run_id")?;
    let kind = spectrum.column("kind")?.str()?;
    let (index, value) = (f64s(spectrum, "index")?, f64s(spectrum, "value")?);
    let is_lyapunov: Vec<bool> = kind.iter().map(|k| k == Some("lyapunov")).collect();
    // k of `jacobian_sv_k<k>`, on the rows of the largest singular value.
    let k: Vec<Option<f64>> = kind
        .iter()
        .zip(&index)
        .map(|(kind, &i)| {
            let k = kind?.strip_prefix("jacobian_sv_k")?.parse::<u64>().ok()?;
            (i == 0.0).then_some(k as f64)
        })
        .collect();
    let is_jacobian: Vec<bool> = k.iter().map(Option::is_some).collect();
    let lyapunov = last_of_top_layer(spectrum, &is_lyapunov)?;
    let jacobian = last_of_top_layer(spectrum, &is_jacobian)?;
    let rows = |keep: &[bool], x: &dyn Fn(usize) -> f64| -> Vec<(String, f64, f64)> {
        (0..spectrum.height())
            .filter(|&i| keep[i])
            .map(|i| (ids[i].clone(), x(i), value[i]))
            .collect()
    };
    let lyapunov = rows(&lyapunov, &|i| index[i] + 1.0);
    let jacobian = rows(&jacobian, &|i| k[i].unwrap_or(f64::NAN));
    Ok([
        Chart {
            file: "lyapunov_spectrum".into(),
            title: "Lyapunov spectrum at the last measured update, top layer (mean over seeds, band: min to max)"
                .into(),
            x_label: "exponent index i".into(),
            y_label: "λ_i (nats per step)".into(),
            log_x: false,
            log_y: false,
            reference_y: Some(0.0),
            categories: None,
            keys: by.to_vec(),
            columns: ["index", "lyapunov_mean", "lyapunov_min", "lyapunov_max"].map(String::from),
            series: curves(lyapunov.into_iter(), labels, order, false),
        },
        Chart {
            file: "jacobian_sv_vs_k".into(),
            title: "Largest singular value of ∂h_t/∂h_{t−k} at the last measured update, top layer (geometric mean over seeds, band: min to max)"
                .into(),
            x_label: "k (steps back)".into(),
            y_label: "σ_max of ∂h_t/∂h_(t−k)".into(),
            log_x: true,
            log_y: true,
            reference_y: Some(1.0),
            categories: None,
            keys: by.to_vec(),
            columns: ["k", "sigma_max_geomean", "sigma_max_min", "sigma_max_max"]
                .map(String::from),
            series: curves(jacobian.into_iter(), labels, order, true),
        },
    ])
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
        log_x: false,
        log_y: false,
        reference_y: None,
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
