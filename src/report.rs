//! `gradlab report` and `gradlab demo`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use gradlab_experiments::report::plot::{Facet, FigureOptions, FigureWidth, PlotFormat};
use gradlab_experiments::report::{self, Format, Options};
use gradlab_experiments::sweep::Spec;

use crate::sweep::{run_spec, SweepArgs};

/// Arguments of `gradlab report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A sweep's results folder (with its sweep.toml), complete or not, compacted or not
    dir: PathBuf,
    /// Group by these config keys [default: the swept keys]
    #[arg(long, value_name = "KEY,KEY", value_delimiter = ',')]
    by: Option<Vec<String>>,
    /// Columns of the Markdown and LaTeX tables: final_loss, best_loss, metric [default: the
    /// task metric, and the final loss unless the metric is that loss]
    #[arg(long, value_name = "NAME,NAME", value_delimiter = ',')]
    metric: Option<Vec<String>>,
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
    /// Width of each figure, in in, cm, mm or pt (3.4in: one column of a two-column paper)
    #[arg(long, value_name = "WIDTH", default_value = "3.4in")]
    figure_width: FigureWidth,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let opts = Options {
        by: args.by,
        metrics: args.metric,
        formats: args.format,
        out: args.out,
        plots: !args.no_plots,
        figures: FigureOptions {
            formats: args.plot_format,
            facet: args.facet.unwrap_or_default(),
            width: args.figure_width,
        },
    };
    write(&args.dir, &opts)
}

fn write(dir: &std::path::Path, opts: &Options) -> Result<()> {
    let r = report::report(dir, opts)?;
    println!("{}\n", r.markdown);
    if r.missing() > 0 {
        println!(
            "{} of {} runs are missing: `gradlab status {}` says which",
            r.missing(),
            r.expected,
            dir.display()
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
        ..SweepArgs::default()
    };
    let dir = run_spec(spec, &sweep)?;
    write(&dir, &Options::default())?;
    println!(
        "\nthe report is in {}: summary.md, summary.tex, summary.csv and the figures (PDF, SVG, PNG, \
         each with its data as CSV)",
        dir.join("report").display()
    );
    Ok(())
}
