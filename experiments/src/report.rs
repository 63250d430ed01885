//! `gradlab report` (DESIGN.md "Report"): a sweep's Parquet files aggregated over seeds with
//! polars, grouped by the swept keys, written as Markdown, LaTeX (booktabs) and CSV tables, with
//! plots of loss curves, gradient norm against lag, and success against truncation and clipping.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::config::TaskKind;
use crate::plot::{self, Chart, Series};
use crate::store;
use crate::sweep::{PlannedRun, Spec, SpecError};
use crate::tasks;

/// z of a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0} is not a sweep's results folder: {1}")]
    NotASweep(PathBuf, String),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Polars(#[from] PolarsError),
    #[error("--by {key}: not a config key of the runs table; swept keys here: {swept}")]
    BadBy { key: String, swept: String },
    #[error("--metric {0}: expected final_loss, best_loss or metric")]
    BadMetric(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot draw {path}: {message}")]
    Plot { path: PathBuf, message: String },
}

/// The table formats of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Latex,
    Csv,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "md" | "markdown" => Ok(Format::Markdown),
            "tex" | "latex" => Ok(Format::Latex),
            "csv" => Ok(Format::Csv),
            _ => Err(format!("unknown format '{s}': expected md, tex or csv")),
        }
    }
}

/// What to report and where.
#[derive(Clone, Debug)]
pub struct Options {
    /// Group by these keys (default: the swept keys).
    pub by: Option<Vec<String>>,
    /// Loss/metric columns of the Markdown and LaTeX tables: final_loss, best_loss, metric
    /// (default: the task metric, and the final loss where that is not the metric itself).
    pub metrics: Option<Vec<String>>,
    pub formats: Vec<Format>,
    /// Output folder (default `DIR/report`).
    pub out: Option<PathBuf>,
    pub plots: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            by: None,
            metrics: None,
            formats: vec![Format::Markdown, Format::Latex, Format::Csv],
            out: None,
            plots: true,
        }
    }
}

/// A written report.
#[derive(Debug)]
pub struct Report {
    /// One row per group: the grouping keys and every statistic (the CSV's columns).
    pub table: DataFrame,
    pub markdown: String,
    pub by: Vec<String>,
    pub expected: usize,
    pub complete: usize,
    pub files: Vec<PathBuf>,
}

impl Report {
    pub fn missing(&self) -> usize {
        self.expected - self.complete
    }
}

/// The name of the task metric, for headers.
fn metric_name(task: Option<TaskKind>) -> &'static str {
    match task {
        Some(TaskKind::Adding) => "MSE",
        Some(TaskKind::Copy) | Some(TaskKind::Hello) => "accuracy",
        Some(TaskKind::TemporalOrder) => "error rate",
        Some(TaskKind::Charlm) => "bits/char",
        None => "task metric",
    }
}

/// The Wilson score interval of `k` successes in `n` trials at `z`.
pub fn wilson(k: f64, n: f64, z: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let p = k / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// The first logged step whose evaluation meets the task's success criterion, per run.
fn steps_to_success(
    steps: &DataFrame,
    tasks: &BTreeMap<String, TaskKind>,
) -> PolarsResult<BTreeMap<String, i64>> {
    let ids = steps.column("run_id")?.str()?;
    let step = steps.column("step")?.i64()?;
    let metric = steps.column("eval_metric")?.f64()?;
    let mut first = BTreeMap::new();
    for ((id, step), metric) in ids.iter().zip(step.iter()).zip(metric.iter()) {
        let (Some(id), Some(step), Some(metric)) = (id, step, metric) else {
            continue;
        };
        let Some(&task) = tasks.get(id) else { continue };
        if tasks::success(task, metric) == Some(true) {
            let e = first.entry(id.to_string()).or_insert(step);
            *e = (*e).min(step);
        }
    }
    Ok(first)
}

/// Per run, the mean over its logged steps of the truncation-bias probe: the cosine and norm
/// ratio of the truncated gradient against full BPTT on the same batch (1 and 1 without
/// truncation).
fn truncation_bias(steps: &DataFrame) -> PolarsResult<BTreeMap<String, (f64, f64)>> {
    let ids = steps.column("run_id")?.str()?;
    let (cos, ratio) = (
        f64s(steps, "trunc_cosine")?,
        f64s(steps, "trunc_norm_ratio")?,
    );
    let mut sums: BTreeMap<String, (f64, f64, f64)> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let Some(id) = id else { continue };
        if cos[i].is_finite() && ratio[i].is_finite() {
            let e = sums.entry(id.to_string()).or_default();
            *e = (e.0 + cos[i], e.1 + ratio[i], e.2 + 1.0);
        }
    }
    Ok(sums
        .into_iter()
        .map(|(id, (c, r, n))| (id, (c / n, r / n)))
        .collect())
}

/// The values of column `name` as display strings.
fn strings(df: &DataFrame, name: &str) -> PolarsResult<Vec<String>> {
    let c = df.column(name)?.as_materialized_series().clone();
    Ok((0..c.len())
        .map(|i| match c.get(i) {
            Ok(AnyValue::String(s)) => s.to_string(),
            Ok(AnyValue::StringOwned(s)) => s.to_string(),
            Ok(AnyValue::Null) | Err(_) => "-".into(),
            Ok(v) => v.to_string(),
        })
        .collect())
}

fn f64s(df: &DataFrame, name: &str) -> PolarsResult<Vec<f64>> {
    let c = df.column(name)?.cast(&DataType::Float64)?;
    Ok(c.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// A number for a table: 4 significant digits, scientific outside [1e-3, 1e5).
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "-".into()
        } else {
            x.to_string()
        };
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{x:.2e}")
    } else {
        let digits = if a == 0.0 {
            0
        } else {
            3 - a.log10().floor() as i32
        };
        format!("{x:.*}", digits.clamp(0, 6) as usize)
    }
}

/// `mean ± std` with the std to two significant digits and the mean to the same decimal place.
pub fn pm(mean: f64, std: f64) -> String {
    if !(std.is_finite() && std > 0.0 && mean.is_finite()) {
        return num(mean);
    }
    let decimals = 1 - std.log10().floor() as i32;
    if !(0..=8).contains(&decimals) || mean.abs() >= 1e5 {
        return format!("{} ± {}", num(mean), num(std));
    }
    let d = decimals as usize;
    format!("{mean:.d$} ± {std:.d$}")
}

/// Aggregates the sweep in `dir` and writes the tables (and plots) of `opts`.
pub fn report(dir: &Path, opts: &Options) -> Result<Report, ReportError> {
    let not_sweep = |why: &str| ReportError::NotASweep(dir.to_path_buf(), why.to_string());
    if !dir.is_dir() {
        return Err(not_sweep("it does not exist"));
    }
    let spec_path = dir.join("sweep.toml");
    if !spec_path.is_file() {
        return Err(not_sweep(
            "it has no sweep.toml (`gradlab sweep SPEC` writes one)",
        ));
    }
    for m in opts.metrics.iter().flatten() {
        if !["final_loss", "best_loss", "metric"].contains(&m.as_str()) {
            return Err(ReportError::BadMetric(m.clone()));
        }
    }
    let spec = Spec::load(&spec_path)?;
    let planned = spec.expand()?;
    let swept = spec.swept_keys();
    let by = opts.by.clone().unwrap_or_else(|| swept.clone());
    for key in &by {
        if !crate::config::KEYS.contains(&key.as_str()) || key == "seed" || key == "name" {
            return Err(ReportError::BadBy {
                key: key.clone(),
                swept: swept.join(", "),
            });
        }
    }
    let Some(runs) = store::read_table(dir, "runs").map_err(store::StoreError::from)? else {
        return Err(not_sweep("it has no runs yet (runs/ is empty)"));
    };
    let runs = only_planned(runs, &planned)?;
    let complete = runs.height();
    if complete == 0 {
        return Err(not_sweep("none of the runs in its sweep.toml is complete"));
    }

    let run_tasks: BTreeMap<String, TaskKind> = planned
        .iter()
        .map(|r| (r.id.clone(), r.config.task))
        .collect();
    let steps = store::read_table(dir, "steps")
        .map_err(store::StoreError::from)?
        .unwrap_or_default();
    let (firsts, bias) = if steps.height() > 0 {
        (
            steps_to_success(&steps, &run_tasks)?,
            truncation_bias(&steps)?,
        )
    } else {
        Default::default()
    };
    let ids = strings(&runs, "run_id")?;
    let to_success: Vec<Option<i64>> = ids.iter().map(|id| firsts.get(id).copied()).collect();
    let index_of: BTreeMap<&str, i64> = planned
        .iter()
        .map(|r| (r.id.as_str(), r.index as i64))
        .collect();
    let order: Vec<i64> = ids.iter().map(|id| index_of[id.as_str()]).collect();
    let mut runs = runs;
    runs.with_column(Column::new("steps_to_success".into(), to_success))?;
    let (cos, ratio): (Vec<f64>, Vec<f64>) = ids
        .iter()
        .map(|id| bias.get(id).copied().unwrap_or((f64::NAN, f64::NAN)))
        .unzip();
    runs.with_column(Column::new("trunc_cosine".into(), cos))?;
    runs.with_column(Column::new("trunc_norm_ratio".into(), ratio))?;
    runs.with_column(Column::new("order".into(), order))?;

    let table = aggregate(&runs, &by)?;
    // The task, if the sweep has one (the metric's name and the success plots depend on it).
    let task = planned
        .first()
        .map(|r| r.config.task)
        .filter(|t| planned.iter().all(|r| r.config.task == *t));
    let out = opts.out.clone().unwrap_or_else(|| dir.join("report"));
    std::fs::create_dir_all(&out).map_err(|e| ReportError::Write {
        path: out.clone(),
        source: e,
    })?;

    let headline = format!(
        "Sweep `{}`: {complete} of {} runs complete{}; mean ± std over seeds, grouped by {}.",
        spec.name,
        planned.len(),
        if complete < planned.len() {
            format!(" ({} missing)", planned.len() - complete)
        } else {
            String::new()
        },
        if by.is_empty() {
            "nothing (all runs)".to_string()
        } else {
            by.join(", ")
        }
    );
    let metrics = opts.metrics.clone().unwrap_or_else(|| match task {
        // The adding problem's metric is its final loss (MSE).
        Some(TaskKind::Adding) => vec!["metric".into()],
        _ => vec!["metric".into(), "final_loss".into()],
    });
    let cells = Cells::new(&table, &by, &metrics, metric_name(task))?;
    let markdown = format!("{headline}\n\n{}", cells.markdown());
    let mut files = Vec::new();
    let write = |name: &str, text: &str, files: &mut Vec<PathBuf>| -> Result<(), ReportError> {
        let path = out.join(name);
        store::write_atomic(&path, |f| std::io::Write::write_all(f, text.as_bytes())).map_err(
            |e| ReportError::Write {
                path: path.clone(),
                source: e,
            },
        )?;
        files.push(path);
        Ok(())
    };
    for format in &opts.formats {
        match format {
            Format::Markdown => write("summary.md", &(markdown.clone() + "\n"), &mut files)?,
            Format::Latex => write("summary.tex", &cells.latex(&headline), &mut files)?,
            Format::Csv => write("summary.csv", &to_csv(&table)?, &mut files)?,
        }
    }
    if opts.plots {
        files.extend(plots(
            dir, &out, &runs, &steps, &table, &by, &planned, task,
        )?);
    }
    Ok(Report {
        table,
        markdown,
        by,
        expected: planned.len(),
        complete,
        files,
    })
}

/// The table as CSV: a header of column names, numbers at full precision (shortest round-trip
/// form), empty cells for missing values.
fn to_csv(table: &DataFrame) -> PolarsResult<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let names: Vec<&str> = table.columns().iter().map(|c| c.name().as_str()).collect();
    let cells: Vec<Vec<String>> = table
        .columns()
        .iter()
        .map(|c| {
            let s = c.as_materialized_series();
            (0..s.len())
                .map(|i| match s.get(i) {
                    Ok(AnyValue::Null) | Err(_) => String::new(),
                    Ok(AnyValue::Float64(x)) if x.is_nan() => String::new(),
                    Ok(AnyValue::Float64(x)) => format!("{x:?}"),
                    Ok(AnyValue::String(v)) => v.to_string(),
                    Ok(AnyValue::StringOwned(v)) => v.to_string(),
                    Ok(v) => v.to_string(),
                })
                .collect()
        })
        .collect();
    let io = |e: csv::Error| PolarsError::ComputeError(e.to_string().into());
    w.write_record(&names).map_err(io)?;
    for i in 0..table.height() {
        w.write_record(cells.iter().map(|c| c[i].as_str()))
            .map_err(io)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| PolarsError::ComputeError(e.to_string().into()))?;
    Ok(String::from_utf8(bytes).expect("the cells are UTF-8"))
}

/// Keeps the rows of runs in the sweep's current spec (a folder may hold runs of an earlier one).
fn only_planned(runs: DataFrame, planned: &[PlannedRun]) -> PolarsResult<DataFrame> {
    let ids: BTreeSet<&str> = planned.iter().map(|r| r.id.as_str()).collect();
    let keep: BooleanChunked = runs
        .column("run_id")?
        .str()?
        .iter()
        .map(|id| id.is_some_and(|id| ids.contains(id)))
        .collect();
    runs.filter(&keep)
}

/// Mean and sample standard deviation of the finite values (NaN when there are none; the std
/// is NaN for one value).
fn mean_std(v: &[f64]) -> (f64, f64) {
    let ca =
        Float64Chunked::from_iter_values("v".into(), v.iter().copied().filter(|x| x.is_finite()));
    (ca.mean().unwrap_or(f64::NAN), ca.std(1).unwrap_or(f64::NAN))
}

/// One row per group of `by` (polars' group_by), in the order of the spec, with every
/// statistic: the CSV's columns.
fn aggregate(runs: &DataFrame, by: &[String]) -> PolarsResult<DataFrame> {
    let (keys, groups): (Vec<Column>, Vec<Vec<IdxSize>>) = if by.is_empty() {
        (Vec::new(), vec![(0..runs.height() as IdxSize).collect()])
    } else {
        let gb = runs.group_by(by.iter().map(String::as_str))?;
        let groups = gb
            .get_groups()
            .iter()
            .map(|g| match g {
                GroupsIndicator::Idx((_, all)) => all.to_vec(),
                GroupsIndicator::Slice([first, len]) => (first..first + len).collect(),
            })
            .collect();
        (gb.keys(), groups)
    };
    let mut stats: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut push = |name: &'static str, v: f64| stats.entry(name).or_default().push(v);
    for idx in &groups {
        let g = runs.take(&IdxCa::from_vec("idx".into(), idx.clone()))?;
        let n = g.height() as f64;
        push(
            "order",
            f64s(&g, "order")?.into_iter().fold(f64::INFINITY, f64::min),
        );
        push("runs", n);
        for (m, mean, std) in [
            ("final_loss", "final_loss_mean", "final_loss_std"),
            ("best_loss", "best_loss_mean", "best_loss_std"),
            ("metric", "metric_mean", "metric_std"),
        ] {
            let (mu, sd) = mean_std(&f64s(&g, m)?);
            push(mean, mu);
            push(std, sd);
        }
        let success = g.column("success")?.bool()?;
        let judged = success.len() - success.null_count();
        let k = success.sum().unwrap_or(0) as f64;
        let (lo, hi) = wilson(k, judged as f64, Z95);
        push("successes", k);
        push("judged", judged as f64);
        push("success_rate", k / judged as f64);
        push("success_lo95", lo);
        push("success_hi95", hi);
        let to_success = g.column("steps_to_success")?.cast(&DataType::Float64)?;
        push(
            "median_steps_to_success",
            to_success.f64()?.median().unwrap_or(f64::NAN),
        );
        let status = g.column("status")?.str()?;
        push(
            "diverged",
            status.iter().filter(|s| *s == Some("diverged")).count() as f64,
        );
        push("clip_fraction", mean_std(&f64s(&g, "clip_fraction")?).0);
        push("decay_rate", mean_std(&f64s(&g, "decay_rate")?).0);
        push("trunc_cosine", mean_std(&f64s(&g, "trunc_cosine")?).0);
        push(
            "trunc_norm_ratio",
            mean_std(&f64s(&g, "trunc_norm_ratio")?).0,
        );
    }
    let counts = ["runs", "successes", "judged", "diverged", "order"];
    let names = [
        "order",
        "runs",
        "final_loss_mean",
        "final_loss_std",
        "best_loss_mean",
        "best_loss_std",
        "metric_mean",
        "metric_std",
        "successes",
        "judged",
        "success_rate",
        "success_lo95",
        "success_hi95",
        "median_steps_to_success",
        "diverged",
        "clip_fraction",
        "decay_rate",
        "trunc_cosine",
        "trunc_norm_ratio",
    ];
    let mut columns = keys;
    for name in names {
        let v = &stats[name];
        columns.push(if counts.contains(&name) {
            Column::new(name.into(), v.iter().map(|&x| x as i64).collect::<Vec<_>>())
        } else {
            Column::new(name.into(), v.clone())
        });
    }
    let table = DataFrame::new(groups.len(), columns)?;
    table
        .sort(["order"], SortMultipleOptions::default())?
        .drop("order")
}

/// The table's cells as text, shared by the Markdown and LaTeX writers.
struct Cells {
    header: Vec<String>,
    /// Columns of keys (left-aligned) before the statistics.
    keys: usize,
    rows: Vec<Vec<String>>,
}

impl Cells {
    fn new(t: &DataFrame, by: &[String], metrics: &[String], metric: &str) -> PolarsResult<Cells> {
        let mut header: Vec<String> = by.to_vec();
        let mut columns: Vec<Vec<String>> = by
            .iter()
            .map(|k| strings(t, k))
            .collect::<PolarsResult<_>>()?;
        header.push("runs".into());
        columns.push(strings(t, "runs")?);
        for m in metrics {
            let (mean, std) = (
                f64s(t, &format!("{m}_mean"))?,
                f64s(t, &format!("{m}_std"))?,
            );
            header.push(match m.as_str() {
                "metric" => metric.to_string(),
                other => other.replace('_', " "),
            });
            columns.push(mean.iter().zip(&std).map(|(m, s)| pm(*m, *s)).collect());
        }
        let (k, n) = (f64s(t, "successes")?, f64s(t, "judged")?);
        let (lo, hi) = (f64s(t, "success_lo95")?, f64s(t, "success_hi95")?);
        header.push("success [95% CI]".into());
        columns.push(
            (0..t.height())
                .map(|i| {
                    if n[i] > 0.0 {
                        format!("{}/{} [{:.2}, {:.2}]", k[i], n[i], lo[i], hi[i])
                    } else {
                        "-".into()
                    }
                })
                .collect(),
        );
        header.push("median steps to success".into());
        columns.push(
            f64s(t, "median_steps_to_success")?
                .into_iter()
                .map(num)
                .collect(),
        );
        header.push("diverged".into());
        columns.push(strings(t, "diverged")?);
        header.push("clip fraction".into());
        columns.push(f64s(t, "clip_fraction")?.into_iter().map(num).collect());
        header.push("decay rate".into());
        columns.push(f64s(t, "decay_rate")?.into_iter().map(num).collect());
        // The truncation-bias probe, where some run is truncated.
        let (cos, ratio) = (f64s(t, "trunc_cosine")?, f64s(t, "trunc_norm_ratio")?);
        if cos.iter().any(|c| c.is_finite() && *c < 1.0) {
            header.push("trunc. cosine".into());
            columns.push(cos.into_iter().map(num).collect());
            header.push("trunc. norm ratio".into());
            columns.push(ratio.into_iter().map(num).collect());
        }
        let rows = (0..t.height())
            .map(|i| columns.iter().map(|c| c[i].clone()).collect())
            .collect();
        Ok(Cells {
            header,
            keys: by.len(),
            rows,
        })
    }

    fn markdown(&self) -> String {
        let align: Vec<&str> = (0..self.header.len())
            .map(|i| if i < self.keys { "---" } else { "---:" })
            .collect();
        let line = |cells: &[String]| format!("| {} |", cells.join(" | "));
        let mut out = vec![line(&self.header), format!("|{}|", align.join("|"))];
        out.extend(self.rows.iter().map(|r| line(r)));
        out.join("\n")
    }

    fn latex(&self, headline: &str) -> String {
        let spec: String = (0..self.header.len())
            .map(|i| if i < self.keys { 'l' } else { 'r' })
            .collect();
        let row = |cells: &[String]| {
            cells
                .iter()
                .map(|c| latex_escape(c))
                .collect::<Vec<_>>()
                .join(" & ")
                + " \\\\"
        };
        let mut out = vec![
            format!("% {}", headline.replace('`', "")),
            "% Written by gradlab report; needs \\usepackage{booktabs}.".to_string(),
            format!("\\begin{{tabular}}{{{spec}}}"),
            "\\toprule".into(),
            row(&self.header),
            "\\midrule".into(),
        ];
        out.extend(self.rows.iter().map(|r| row(r)));
        out.extend([
            "\\bottomrule".into(),
            "\\end{tabular}".into(),
            String::new(),
        ]);
        out.join("\n")
    }
}

/// Text for LaTeX: specials escaped, ± as math.
pub fn latex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '±' => out.push_str("$\\pm$"),
            c => out.push(c),
        }
    }
    out
}

/// `key=value key=value` per group, in table order.
fn group_labels(t: &DataFrame, by: &[String]) -> PolarsResult<Vec<String>> {
    if by.is_empty() {
        return Ok(vec!["all runs".into(); t.height()]);
    }
    let cols: Vec<Vec<String>> = by
        .iter()
        .map(|k| strings(t, k))
        .collect::<PolarsResult<_>>()?;
    Ok((0..t.height())
        .map(|i| {
            by.iter()
                .zip(&cols)
                .map(|(k, c)| format!("{k}={}", c[i]))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect())
}

/// The group label of every run (a row of `runs`).
fn run_labels(runs: &DataFrame, by: &[String]) -> PolarsResult<BTreeMap<String, String>> {
    let ids = strings(runs, "run_id")?;
    let labels = group_labels(runs, by)?;
    Ok(ids.into_iter().zip(labels).collect())
}

/// Mean over the runs of each group, and the band (min, max), of `value` at each `x`.
fn curves(
    rows: impl Iterator<Item = (String, f64, f64)>,
    labels: &BTreeMap<String, String>,
    order: &[String],
    log_mean: bool,
) -> Vec<Series> {
    let mut acc: BTreeMap<&str, BTreeMap<i64, Vec<f64>>> = BTreeMap::new();
    for (id, x, v) in rows {
        let Some(label) = labels.get(&id) else {
            continue;
        };
        if !v.is_finite() || (log_mean && v <= 0.0) {
            continue;
        }
        acc.entry(label.as_str())
            .or_default()
            .entry(x as i64)
            .or_default()
            .push(v);
    }
    order
        .iter()
        .filter_map(|label| {
            let points = acc.get(label.as_str())?;
            let mut s = Series::new(label);
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

#[allow(clippy::too_many_arguments)]
fn plots(
    dir: &Path,
    out: &Path,
    runs: &DataFrame,
    steps: &DataFrame,
    table: &DataFrame,
    by: &[String],
    planned: &[PlannedRun],
    task: Option<TaskKind>,
) -> Result<Vec<PathBuf>, ReportError> {
    let labels = run_labels(runs, by)?;
    let order = group_labels(table, by)?;
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
            series: curves(rows, &labels, &order, false),
        });
    }

    if let Some(flow) = store::read_table(dir, "flow").map_err(store::StoreError::from)? {
        // The last untruncated probe of each run's top layer.
        let probe = last_probe(&flow)?;
        let rows = xy(&probe, "lag", "grad_norm")?;
        charts.push(Chart {
            file: "gradient_vs_lag".into(),
            title: "‖∂L/∂h_t‖ at the end of training, top layer (geometric mean over seeds)".into(),
            x_label: "lag (steps before the loss)".into(),
            y_label: "gradient norm".into(),
            log_y: true,
            categories: None,
            series: curves(rows, &labels, &order, true),
        });
    }

    if task.is_some_and(|t| t != TaskKind::Charlm) {
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
        files.extend(
            plot::draw(&chart, out)
                .map_err(|(path, message)| ReportError::Plot { path, message })?,
        );
    }
    Ok(files)
}

/// The rows of `flow` of each run's last probe of its top layer.
fn last_probe(flow: &DataFrame) -> PolarsResult<DataFrame> {
    let ids = strings(flow, "run_id")?;
    let (step, layer) = (f64s(flow, "step")?, f64s(flow, "layer")?);
    let source = flow.column("source")?.str()?;
    let is_probe: Vec<bool> = source.iter().map(|s| s == Some("probe")).collect();
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
    let labels = group_labels(table, &others)?;
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
        let s = match series.iter_mut().position(|s| s.label == labels[i]) {
            Some(j) => &mut series[j],
            None => {
                series.push(Series::new(&labels[i]));
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
        series,
    }))
}

/// Whether a value of a sweep axis and a value of the runs table are the same (numbers compare
/// as numbers: the table may print `1e-5` as `0.00001`).
fn canonical_eq(axis: &str, table: &str) -> bool {
    axis == table || matches!((axis.parse::<f64>(), table.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}
