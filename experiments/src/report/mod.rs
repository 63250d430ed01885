//! `gradlab report` (DESIGN.md "Report"): a sweep's Parquet files [`aggregate`]d over seeds
//! with polars, grouped by the swept keys, written as [`table`]s (Markdown, LaTeX booktabs, CSV)
//! and [`figures`] ([`plot`] and [`heatmap`]: PDF, SVG and PNG, with their data as CSV). And
//! `gradlab activations` ([`activations`]): a character model's units over a text, as a table,
//! a ranking and a page.

pub mod activations;
pub mod aggregate;
pub mod figures;
pub mod heatmap;
pub mod plot;
pub mod source;
pub mod table;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::config::{KEYS, NON_IDENTITY_KEYS};
use crate::sweep::{SweepDir, SweepDirError};
use crate::task::TaskKind;
use aggregate::{aggregate, SweepData};
use figures::FigureData;
use source::{Condition, Source, WhereError};
use table::{to_csv, Cells, ColumnError};

pub use table::Format;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Sweep(#[from] SweepDirError),
    #[error(
        "{0} has no complete run yet (of its sweep.toml{1}); `gradlab status` says where a sweep stands"
    )]
    NoRuns(String, &'static str),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Polars(#[from] PolarsError),
    #[error("--by {key}: not a config key of the runs table to group by; swept keys here: {swept}{hint}")]
    BadBy {
        key: String,
        swept: String,
        hint: String,
    },
    #[error("--metric {0}: expected final_loss, best_loss or metric")]
    BadMetric(String),
    #[error(transparent)]
    Columns(#[from] ColumnError),
    #[error(transparent)]
    Where(#[from] WhereError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    #[error("--facet {key}: not a key the report groups by; use one of: {by}, or `none`")]
    BadFacet { key: String, by: String },
    #[error(
        "{dir}'s sweep.toml no longer matches its runs: {problems}. The report would leave them \
         out silently; `gradlab status {dir}` lists them. Pass --partial to report the complete \
         runs of the sweep.toml that are there",
        dir = .dir.display()
    )]
    Mismatch { dir: PathBuf, problems: String },
}

/// What to report and where.
#[derive(Clone, Debug)]
pub struct Options {
    /// Group by these keys (default: the swept keys, the keys in which the runs differ, and the
    /// folder when there are several).
    pub by: Option<Vec<String>>,
    /// Loss/metric columns of the default Markdown and LaTeX tables: final_loss, best_loss,
    /// metric (default: the task metric, and the final loss where that is not the metric).
    pub metrics: Option<Vec<String>>,
    /// The statistic columns of the Markdown and LaTeX tables ([`table::COLUMNS`]; default: all
    /// of them in Markdown, the metric, success and median steps to success in LaTeX).
    pub columns: Option<Vec<String>>,
    /// Only the runs that meet every condition (`--where`).
    pub conditions: Vec<Condition>,
    pub formats: Vec<Format>,
    /// Output folder (default `DIR/report` of the first folder).
    pub out: Option<PathBuf>,
    pub plots: bool,
    /// Figure formats, facets and size.
    pub figures: plot::FigureOptions,
    /// Report the complete runs of a sweep even where its folder holds complete runs its
    /// `sweep.toml` does not plan, or damaged runs ([`check_matches`]).
    pub partial: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            by: None,
            metrics: None,
            columns: None,
            conditions: Vec::new(),
            formats: vec![Format::Markdown, Format::Latex, Format::Csv],
            out: None,
            plots: true,
            figures: plot::FigureOptions::default(),
            partial: false,
        }
    }
}

/// Keys a report never groups by (nor [`NON_IDENTITY_KEYS`]): seeds are what it aggregates over, a
/// name does not change a run.
const NOT_GROUPS: [&str; 2] = ["seed", "name"];

/// The keys the runs were swept over: the sweeps' axes, the config keys in which the loaded
/// runs differ, and `source` when the report compares several folders.
fn swept_keys(sources: &[Source], runs: &DataFrame) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    if sources.len() > 1 {
        keys.push("source".into());
    }
    for s in sources.iter().filter_map(|s| s.sweep.as_ref()) {
        for k in s.spec.swept_keys() {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    for &k in KEYS {
        let skip = NOT_GROUPS.contains(&k)
            || NON_IDENTITY_KEYS.contains(&k)
            || keys.iter().any(|x| x == k);
        if !skip
            && runs
                .column(k)
                .is_ok_and(|c| c.n_unique().is_ok_and(|n| n > 1))
        {
            keys.push(k.into());
        }
    }
    keys
}

impl Options {
    /// Checks that `--facet` names a key the report groups by.
    fn check_facet(&self, by: &[String]) -> Result<(), ReportError> {
        match &self.figures.facet {
            plot::Facet::Key(key) if !by.contains(key) => Err(ReportError::BadFacet {
                key: key.clone(),
                by: if by.is_empty() {
                    "(no key: the report groups by nothing)".into()
                } else {
                    by.join(", ")
                },
            }),
            _ => Ok(()),
        }
    }

    /// Checks the options against the runs; returns the keys to group by.
    fn check(&self, swept: &[String], runs: &DataFrame) -> Result<Vec<String>, ReportError> {
        for m in self.metrics.iter().flatten() {
            if !["final_loss", "best_loss", "metric"].contains(&m.as_str()) {
                return Err(ReportError::BadMetric(m.clone()));
            }
        }
        if let Some(columns) = &self.columns {
            table::check_columns(columns)?;
        }
        let Some(by) = self.by.clone() else {
            self.check_facet(swept)?;
            return Ok(swept.to_vec());
        };
        let groupable: Vec<&str> = KEYS
            .iter()
            .copied()
            .filter(|k| !NOT_GROUPS.contains(k) && !NON_IDENTITY_KEYS.contains(k))
            .chain(["source"])
            .collect();
        for key in &by {
            if !groupable.contains(&key.as_str()) || runs.column(key).is_err() {
                return Err(ReportError::BadBy {
                    key: key.clone(),
                    swept: swept.join(", "),
                    hint: crate::config::did_you_mean(key, groupable.iter().copied()),
                });
            }
        }
        self.check_facet(&by)?;
        Ok(by)
    }
}

/// A written report.
#[derive(Debug)]
pub struct Report {
    /// One row per group: the grouping keys and every statistic (the CSV's columns).
    pub table: DataFrame,
    pub markdown: String,
    pub by: Vec<String>,
    /// The swept keys not grouped by, whose runs each group pools, with their values.
    pub pooled: Vec<(String, Vec<String>)>,
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
    Ok(values(df, name)?
        .into_iter()
        .map(|v| v.unwrap_or_else(|| "-".into()))
        .collect())
}

/// The values of column `name` as display strings (`None` for a missing value).
fn values(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<String>>> {
    let c = df.column(name)?.as_materialized_series().clone();
    Ok((0..c.len())
        .map(|i| match c.get(i) {
            Ok(AnyValue::String(s)) => Some(s.to_string()),
            Ok(AnyValue::StringOwned(s)) => Some(s.to_string()),
            Ok(AnyValue::Null) | Err(_) => None,
            Ok(v) => Some(v.to_string()),
        })
        .collect())
}

/// The values of column `name` as f64 (NaN for a missing value).
fn f64s(df: &DataFrame, name: &str) -> PolarsResult<Vec<f64>> {
    let c = df.column(name)?.cast(&DataType::Float64)?;
    Ok(c.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// Refuses a sweep folder whose `sweep.toml` no longer describes its runs: complete runs it
/// does not plan (an earlier spec's, or one edited by hand: the report would leave results out
/// without a word), or damaged runs (results that cannot be read). Planned runs that are not
/// complete yet are no mismatch: a sweep is reported while it runs, and the report says how
/// many are missing.
pub fn check_matches(sweep: &SweepDir) -> Result<(), ReportError> {
    let health = crate::store::health(&sweep.dir)?;
    let planned: BTreeSet<&str> = sweep.runs.iter().map(|r| r.id.as_str()).collect();
    let unplanned = health
        .complete
        .iter()
        .filter(|id| !planned.contains(id.as_str()))
        .count();
    let mut problems = Vec::new();
    if unplanned > 0 {
        problems.push(format!(
            "{unplanned} complete runs are not in it (an earlier or edited spec)"
        ));
    }
    if !health.damaged.is_empty() {
        problems.push(format!(
            "{} runs have damaged or missing files (`gradlab sweep` runs them again)",
            health.damaged.len()
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(ReportError::Mismatch {
        dir: sweep.dir.clone(),
        problems: problems.join("; "),
    })
}

/// Aggregates the sweep in `dir` and writes the tables (and figures) of `opts`.
pub fn report(dir: &Path, opts: &Options) -> Result<Report, ReportError> {
    report_many(&[dir.to_path_buf()], opts)
}

/// Aggregates the runs of one or more results folders (sweeps, or folders of single runs) in
/// one table and writes the tables (and figures) of `opts`.
pub fn report_many(dirs: &[PathBuf], opts: &Options) -> Result<Report, ReportError> {
    let sources = source::open_all(dirs)?;
    if !opts.partial {
        for sweep in sources.iter().filter_map(|s| s.sweep.as_ref()) {
            check_matches(sweep)?;
        }
    }
    let Some(data) = SweepData::load(&sources, &opts.conditions)? else {
        let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        let filtered = if opts.conditions.is_empty() {
            ""
        } else {
            " that --where selects"
        };
        return Err(ReportError::NoRuns(names.join(", "), filtered));
    };
    let swept = swept_keys(&sources, &data.runs);
    let by = opts.check(&swept, &data.runs)?;
    let complete = data.runs.height();
    let expected = complete + data.missing;
    let table = aggregate(&data.runs, &by)?;
    // The task, if every run has the same (the metric's name and the success plots depend on it).
    let tasks: BTreeSet<String> = strings(&data.runs, "task")?.into_iter().collect();
    let task: Option<TaskKind> = match tasks.iter().next() {
        Some(t) if tasks.len() == 1 => t.parse().ok(),
        _ => None,
    };
    let out = opts.out.clone().unwrap_or_else(|| dirs[0].join("report"));
    let pooled: Vec<(String, Vec<String>)> = swept
        .iter()
        .filter(|k| !by.contains(k))
        .map(|k| {
            let mut seen: Vec<String> = Vec::new();
            for v in strings(&data.runs, k)? {
                if !seen.contains(&v) {
                    seen.push(v);
                }
            }
            Ok((k.clone(), seen))
        })
        .collect::<PolarsResult<_>>()?;
    let seeds: BTreeSet<String> = strings(&data.runs, "seed")?.into_iter().collect();
    let names: Vec<String> = sources
        .iter()
        .map(|s| match &s.sweep {
            Some(sweep) => format!("`{}`", sweep.spec.name),
            None => format!("`{}` (runs)", s.label),
        })
        .collect();
    let context = Context {
        what: format!(
            "{} {}",
            if names.len() > 1 { "Sweeps" } else { "Sweep" },
            names.join(", ")
        ),
        complete,
        expected,
        by: by.clone(),
        pooled: pooled.clone(),
        seeds: seeds.len(),
        conditions: opts
            .conditions
            .iter()
            .map(|c| format!("{}{}{}", c.key, c.op.as_str(), c.value))
            .collect(),
        criterion: task.and_then(|t| {
            t.criterion()
                .map(|c| format!("{} {} {}", t.metric_name(), c.op(), c.threshold()))
        }),
    };
    let headline = context.headline();
    let metrics = opts.metrics.clone().unwrap_or_else(|| {
        if task.is_some_and(TaskKind::metric_is_loss) {
            vec!["metric".into()]
        } else {
            vec!["metric".into(), "final_loss".into()]
        }
    });
    let metric_name = task.map_or("task metric", TaskKind::metric_name);
    let cells = Cells::new(&table, &by, metric_name)?;
    let md_columns = opts
        .columns
        .clone()
        .unwrap_or_else(|| cells.markdown_columns(&metrics));
    let tex_columns = opts
        .columns
        .clone()
        .unwrap_or_else(|| Cells::latex_columns(&metrics));
    let markdown = format!("{headline}\n\n{}", cells.markdown(&md_columns));
    let label = format!(
        "tab:gradlab-{}",
        sources
            .iter()
            .map(|s| s
                .sweep
                .as_ref()
                .map_or(s.label.as_str(), |w| w.spec.name.as_str()))
            .collect::<Vec<_>>()
            .join("-")
    );
    std::fs::create_dir_all(&out).map_err(|source| ReportError::Write {
        path: out.clone(),
        source,
    })?;
    let mut files = Vec::new();
    for format in &opts.formats {
        let (name, text) = match format {
            Format::Markdown => ("summary.md", markdown.clone() + "\n"),
            Format::Latex => (
                "summary.tex",
                cells.latex(&tex_columns, &context.caption(metric_name), &label),
            ),
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
            dirs: &sources.iter().map(|s| s.dir.clone()).collect::<Vec<_>>(),
            runs: &data.runs,
            steps: &data.steps,
            table: &table,
            by: &by,
            planned: &data.planned,
            task,
        };
        files.extend(figures::draw_all(&figures, &out, &opts.figures)?);
    }
    Ok(Report {
        table,
        markdown,
        by,
        pooled,
        expected,
        complete,
        files,
    })
}

/// What a table shows, for its headline (Markdown) and caption (LaTeX).
struct Context {
    /// "Sweep `demo`".
    what: String,
    complete: usize,
    expected: usize,
    by: Vec<String>,
    pooled: Vec<(String, Vec<String>)>,
    seeds: usize,
    conditions: Vec<String>,
    /// "MSE < 0.01".
    criterion: Option<String>,
}

impl Context {
    fn pooled_text(&self) -> String {
        self.pooled
            .iter()
            .map(|(k, v)| format!("{k} ({})", v.join(", ")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn scope(&self) -> String {
        let mut parts = Vec::new();
        if !self.conditions.is_empty() {
            parts.push(format!("runs where {}", self.conditions.join(", ")));
        }
        if !self.pooled.is_empty() {
            parts.push(format!("pooled over {}", self.pooled_text()));
        }
        parts.join("; ")
    }

    fn headline(&self) -> String {
        let missing = self.expected - self.complete;
        let mut line = format!(
            "{}: {} of {} runs complete{}; mean ± std over seeds, grouped by {}",
            self.what,
            self.complete,
            self.expected,
            if missing > 0 {
                format!(" ({missing} missing)")
            } else {
                String::new()
            },
            if self.by.is_empty() {
                "nothing (all runs)".to_string()
            } else {
                self.by.join(", ")
            }
        );
        let scope = self.scope();
        if !scope.is_empty() {
            line += &format!("; {scope}");
        }
        line + "."
    }

    fn caption(&self, metric: &str) -> String {
        let mut text = format!(
            "{} ({} runs): {metric} as mean ± std over {} seed{}",
            self.what.replace('`', ""),
            self.complete,
            self.seeds,
            if self.seeds == 1 { "" } else { "s" }
        );
        let scope = self.scope();
        if !scope.is_empty() {
            text += &format!(", {scope}");
        }
        text += ".";
        if let Some(c) = &self.criterion {
            text += &format!(
                " Success: final {c}, with its 95% Wilson interval; median steps to success over the runs that succeeded."
            );
        }
        text
    }
}
