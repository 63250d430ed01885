//! `gradlab report` and `gradlab demo`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use gradlab_experiments::report::plot::{Facet, FigureOptions, FigureWidth, PlotFormat};
use gradlab_experiments::report::source::Condition;
use gradlab_experiments::report::{self, Format, Options};
use gradlab_experiments::sweep::Spec;

use crate::sweep::{run_spec, SweepArgs};

/// Arguments of `gradlab report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Results folders: a sweep's (with its sweep.toml; complete or not, compacted or not) or
    /// one of single runs (`gradlab run --out`); several are compared in one table
    #[arg(required = true, num_args = 1..)]
    dirs: Vec<PathBuf>,
    /// Group by these config keys (and `source`, the folder) [default: the swept keys, and
    /// the folder when there are several]
    #[arg(long, value_name = "KEY,KEY", value_delimiter = ',')]
    by: Option<Vec<String>>,
    /// Only runs that meet every condition: KEY=V, KEY!=V, KEY<V, KEY<=V, KEY>V, KEY>=V on any
    /// column of the runs table, e.g. "cell=lstm,seq_len>=100" (tags=V: has tag V)
    #[arg(long = "where", value_name = "CONDITIONS")]
    conditions: Option<String>,
    /// Columns of the Markdown and LaTeX tables: final_loss, best_loss, metric [default: the
    /// task metric, and the final loss unless the metric is that loss]
    #[arg(long, value_name = "NAME,NAME", value_delimiter = ',')]
    metric: Option<Vec<String>>,
    /// Statistic columns of the Markdown and LaTeX tables, after the keys: runs, metric,
    /// final_loss, best_loss, success, median_steps_to_success, diverged, clip_fraction,
    /// decay_rate, trunc_cosine, trunc_norm_ratio [default: all in Markdown; metric, success,
    /// median_steps_to_success in LaTeX]
    #[arg(long, value_name = "NAME,NAME", value_delimiter = ',')]
    columns: Option<Vec<String>>,
    /// Tables to write: md, tex, csv
    #[arg(
        long,
        value_name = "FMT,FMT",
        value_delimiter = ',',
        default_value = "md,tex,csv"
    )]
    format: Vec<Format>,
    /// Output folder [default: DIR/report]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Tables only, no plots
    #[arg(long)]
    no_plots: bool,
    /// Figure files to write beside each figure's CSV data: pdf (vector, fonts embedded, for
    /// \includegraphics), svg, png (300 dpi)
    #[arg(
        long,
        value_name = "FMT,FMT",
        value_delimiter = ',',
        default_value = "pdf,svg,png"
    )]
    plot_format: Vec<PlotFormat>,
    /// One panel per value of this key, axes shared; `none` for one panel [default: cell, when
    /// the runs differ in it]
    #[arg(long, value_name = "KEY")]
    facet: Option<Facet>,
    /// Report what is there even where the folder holds complete runs its sweep.toml does not
    /// plan, or damaged runs (by default such a folder is refused, as its report would leave
    /// them out without a word)
    #[arg(long)]
    partial: bool,
    /// Width of each figure, in in, cm, mm or pt (3.4in: one column of a two-column paper)
    #[arg(long, value_name = "WIDTH", default_value = "3.4in")]
    figure_width: FigureWidth,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let conditions = match &args.conditions {
        Some(text) => Condition::parse_all(text)?,
        None => Vec::new(),
    };
    let opts = Options {
        by: args.by,
        metrics: args.metric,
        columns: args.columns,
        conditions,
        formats: args.format,
        out: args.out,
        plots: !args.no_plots,
        figures: FigureOptions {
            formats: args.plot_format,
            facet: args.facet.unwrap_or_default(),
            width: args.figure_width,
        },
        partial: args.partial,
    };
    write(&args.dirs, &opts)
}

fn write(dirs: &[PathBuf], opts: &Options) -> Result<()> {
    let r = report::report_many(dirs, opts)?;
    println!("{}\n", r.markdown);
    if r.missing() > 0 {
        let folders: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        println!(
            "{} of {} runs are missing: `gradlab status {}` says which",
            r.missing(),
            r.expected,
            folders.join(" / ")
        );
    }
    println!("wrote:");
    for f in &r.files {
        println!("  {}", f.display());
    }
    Ok(())
}

/// The built-in demonstration sweep.
const DEMO: &str = include_str!("../experiments/configs/demo.toml");

/// Arguments of `gradlab demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Results folder [default: results/demo]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Threads [default: every core]
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Override a key of the demo's [base], e.g. --set steps=200 for a quick look
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Replace the spec of a results folder that holds an earlier demo with other settings
    #[arg(long)]
    replace_spec: bool,
}

pub fn demo(args: DemoArgs) -> Result<()> {
    let spec = Spec::parse(DEMO, "experiments/configs/demo.toml (built in)")
        .context("the built-in demo spec")?;
    println!(
        "gradlab demo: tanh RNN against LSTM on the adding problem, truncation x clipping x seeds \
         (the spec: experiments/configs/demo.toml)"
    );
    let sweep = SweepArgs {
        out: args.out,
        jobs: args.jobs,
        set: args.set,
        replace_spec: args.replace_spec,
        ..SweepArgs::default()
    };
    let dir = run_spec(spec, &sweep)?;
    write(std::slice::from_ref(&dir), &Options::default())?;
    println!(
        "\nthe report is in {}: summary.md, summary.tex, summary.csv and the figures (PDF, SVG, PNG, \
         each with its data as CSV)",
        dir.join("report").display()
    );
    Ok(())
}
