//! `gradlab report` (DESIGN.md "Report"): a sweep's Parquet files [`aggregate`]d over seeds
//! with polars, grouped by the swept keys, written as [`table`]s (Markdown, LaTeX booktabs, CSV)
//! and [`figures`] ([`plot`]: PDF, SVG and PNG, with their data as CSV).

pub mod aggregate;
pub mod figures;
pub mod plot;
pub mod table;

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::sweep::{SweepDir, SweepDirError};
use crate::task::TaskKind;
use aggregate::{aggregate, SweepData};
use figures::FigureData;
use table::{to_csv, Cells};

pub use table::Format;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Sweep(#[from] SweepDirError),
    #[error(
        "{0} has no complete run of its sweep.toml yet; `gradlab status {0}` says where it stands"
    )]
    NoRuns(PathBuf),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
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
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    #[error("--facet {key}: not a key the report groups by; use one of: {by}, or `none`")]
    BadFacet { key: String, by: String },
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
    /// Figure formats, facets and size.
    pub figures: plot::FigureOptions,
}

impl Options {
    /// Checks the options against the sweep; returns the keys to group by.
    fn check(&self, sweep: &SweepDir) -> Result<Vec<String>, ReportError> {
        for m in self.metrics.iter().flatten() {
            if !["final_loss", "best_loss", "metric"].contains(&m.as_str()) {
                return Err(ReportError::BadMetric(m.clone()));
            }
        }
        let swept = sweep.spec.swept_keys();
        let by = self.by.clone().unwrap_or_else(|| swept.clone());
        for key in &by {
            if !crate::config::KEYS.contains(&key.as_str()) || key == "seed" || key == "name" {
                return Err(ReportError::BadBy {
                    key: key.clone(),
                    swept: swept.join(", "),
                });
            }
        }
        if let plot::Facet::Key(key) = &self.figures.facet {
            if !by.contains(key) {
                return Err(ReportError::BadFacet {
                    key: key.clone(),
                    by: if by.is_empty() {
                        "(no key: the report groups by nothing)".into()
                    } else {
                        by.join(", ")
                    },
                });
            }
        }
        Ok(by)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            by: None,
            metrics: None,
            formats: vec![Format::Markdown, Format::Latex, Format::Csv],
            out: None,
            plots: true,
            figures: plot::FigureOptions::default(),
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

/// The values of column `name` as display strings ("-" for a missing value).
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

/// The values of column `name` as f64 (NaN for a missing value).
fn f64s(df: &DataFrame, name: &str) -> PolarsResult<Vec<f64>> {
    let c = df.column(name)?.cast(&DataType::Float64)?;
    Ok(c.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// Aggregates the sweep in `dir` and writes the tables (and figures) of `opts`.
pub fn report(dir: &Path, opts: &Options) -> Result<Report, ReportError> {
    let sweep = SweepDir::open(dir)?;
    let by = opts.check(&sweep)?;
    let Some(data) = SweepData::load(&sweep)? else {
        return Err(ReportError::NoRuns(dir.to_path_buf()));
    };
    let (planned, complete) = (&sweep.runs, data.runs.height());
    let table = aggregate(&data.runs, &by)?;
    // The task, if the sweep has one (the metric's name and the success plots depend on it).
    let task = planned
        .first()
        .map(|r| r.config.task)
        .filter(|t| planned.iter().all(|r| r.config.task == *t));
    let out = opts.out.clone().unwrap_or_else(|| dir.join("report"));

    let headline = format!(
        "Sweep `{}`: {complete} of {} runs complete{}; mean ± std over seeds, grouped by {}.",
        sweep.spec.name,
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
    let metrics = opts.metrics.clone().unwrap_or_else(|| {
        if task.is_some_and(TaskKind::metric_is_loss) {
            vec!["metric".into()]
        } else {
            vec!["metric".into(), "final_loss".into()]
        }
    });
    let metric_name = task.map_or("task metric", TaskKind::metric_name);
    let cells = Cells::new(&table, &by, &metrics, metric_name)?;
    let markdown = format!("{headline}\n\n{}", cells.markdown());
    let mut files = Vec::new();
    for format in &opts.formats {
        let (name, text) = match format {
            Format::Markdown => ("summary.md", markdown.clone() + "\n"),
            Format::Latex => ("summary.tex", cells.latex(&headline)),
            Format::Csv => ("summary.csv", to_csv(&table)?),
        };
        let path = out.join(name);
        crate::fs::write_bytes_atomic(&path, text.as_bytes()).map_err(|source| {
            ReportError::Write {
                path: path.clone(),
                source,
            }
        })?;
        files.push(path);
    }
    if opts.plots {
        let figures = FigureData {
            dir,
            runs: &data.runs,
            steps: &data.steps,
            table: &table,
            by: &by,
            planned,
            task,
        };
        files.extend(figures::draw_all(&figures, &out, &opts.figures)?);
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
