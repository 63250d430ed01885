//! gradlab against its PyTorch twin (`docs/pytorch-twin.md`): reads a folder that
//! `scripts/torch-twin-compare.sh` filled — `gradlab/` (the results of `gradlab run`, one run
//! per seed) and `torch-<init>-s<seed>.csv` and `.json` (`scripts/torch_twin.py`, `<init>`
//! `gradlab` or `torch`) — prints a Markdown table of every seed's final and best evaluation
//! loss and wall time, their mean ± std and the difference of the means against seed noise,
//! and draws the evaluation loss against updates (mean over seeds, band: min to max) with
//! gradlab's own plotting.
//!
//! ```sh
//! cargo run --release --example twin_report -- DIR OUT_DIR FIGURE_NAME [--log-y]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gradlab_experiments::report::plot::{
    draw, Chart, Facet, FigureOptions, FigureWidth, PlotFormat, Series,
};
use gradlab_experiments::store::read_table;
use polars::prelude::*;

/// One run's outcome and evaluation curve.
struct Run {
    final_loss: f64,
    best_loss: f64,
    /// The training loss at each logged update.
    losses: BTreeMap<i64, f64>,
    wall_seconds: f64,
    /// (update, evaluation loss).
    curve: Vec<(f64, f64)>,
}

/// The implementations compared: their label, and the twin's `--init` (None: gradlab).
const SOURCES: [(&str, Option<&str>); 3] = [
    ("gradlab", None),
    ("PyTorch, gradlab's init", Some("gradlab")),
    ("PyTorch, own init", Some("torch")),
];

fn f64s(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let c = df.column(name)?.cast(&DataType::Float64)?;
    Ok(c.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

fn strings(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    let c = df.column(name)?;
    Ok(c.str()?
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect())
}

/// gradlab's runs in `dir`, by seed.
fn gradlab_runs(dir: &Path) -> Result<BTreeMap<u64, Run>> {
    let runs = read_table(dir, "runs")?.with_context(|| format!("no runs in {}", dir.display()))?;
    let steps = read_table(dir, "steps")?.context("no steps")?;
    let (ids, step_ids) = (strings(&runs, "run_id")?, strings(&steps, "run_id")?);
    let (step, loss, eval) = (
        f64s(&steps, "step")?,
        f64s(&steps, "loss")?,
        f64s(&steps, "eval_loss")?,
    );
    let (seed, fin, best, wall) = (
        f64s(&runs, "seed")?,
        f64s(&runs, "final_loss")?,
        f64s(&runs, "best_loss")?,
        f64s(&runs, "wall_seconds")?,
    );
    let mut out = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let rows: Vec<usize> = (0..step.len()).filter(|&r| &step_ids[r] == id).collect();
        let losses = rows.iter().map(|&r| (step[r] as i64, loss[r])).collect();
        let mut curve: Vec<(f64, f64)> = rows
            .iter()
            .filter(|&&r| eval[r].is_finite())
            .map(|&r| (step[r] + 1.0, eval[r]))
            .collect();
        curve.sort_by(|a, b| a.0.total_cmp(&b.0));
        let run = Run {
            final_loss: fin[i],
            best_loss: best[i],
            losses,
            wall_seconds: wall[i],
            curve,
        };
        out.insert(seed[i] as u64, run);
    }
    Ok(out)
}

/// The twin's runs with `--init init` in `dir`, by seed.
fn twin_runs(dir: &Path, init: &str) -> Result<BTreeMap<u64, Run>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with(&format!("torch-{init}-s")) && name.ends_with(".json")) {
            continue;
        }
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let num = |k: &str| summary[k].as_f64().unwrap_or(f64::NAN);
        let csv = std::fs::read_to_string(path.with_extension("csv"))?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().context("an empty CSV")?.split(',').collect();
        let col = |n: &str| header.iter().position(|&h| h == n).context("a CSV column");
        let (step, loss, eval) = (col("step")?, col("loss")?, col("eval_loss")?);
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        let losses = rows
            .iter()
            .map(|f| Ok((f[step].parse::<i64>()?, f[loss].parse::<f64>()?)))
            .collect::<Result<_>>()?;
        let curve = rows
            .iter()
            .filter(|f| !f[eval].is_empty())
            .map(|f| Ok((f[step].parse::<f64>()? + 1.0, f[eval].parse::<f64>()?)))
            .collect::<Result<Vec<_>>>()?;
        let run = Run {
            final_loss: num("final_loss"),
            best_loss: num("best_loss"),
            losses,
            wall_seconds: num("wall_seconds"),
            curve,
        };
        out.insert(num("seed") as u64, run);
    }
    Ok(out)
}

/// Mean and sample standard deviation.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Mean over seeds of the curves, with the band (min, max), at the updates all of them have.
fn mean_curve(label: &str, runs: &BTreeMap<u64, Run>) -> Series {
    let mut at: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for run in runs.values() {
        for &(x, y) in &run.curve {
            at.entry(x as i64).or_default().push(y);
        }
    }
    let mut s = Series::new(vec![label.to_string()]);
    for (x, ys) in at.into_iter().filter(|(_, ys)| ys.len() == runs.len()) {
        let (mean, _) = mean_std(&ys);
        let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        s.points.push((x as f64, mean));
        s.band.push((x as f64, lo, hi));
    }
    s
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, out, name) = match &args[..] {
        [d, o, n, ..] => (PathBuf::from(d), PathBuf::from(o), n.clone()),
        _ => bail!("usage: twin_report DIR OUT_DIR FIGURE_NAME [--log-y]"),
    };
    let log_y = args.iter().any(|a| a == "--log-y");
    let mut all = Vec::new();
    for (label, init) in SOURCES {
        let runs = match init {
            None => gradlab_runs(&dir.join("gradlab"))?,
            Some(init) => twin_runs(&dir, init)?,
        };
        if runs.is_empty() {
            bail!("no runs of {label} in {}", dir.display());
        }
        all.push((label, runs));
    }
    let seeds: Vec<u64> = all[0].1.keys().copied().collect();
    // Four significant digits, whatever the scale of the loss.
    let g = |x: f64| match x.abs() {
        a if a != 0.0 && a < 0.01 => format!("{x:.3e}"),
        _ => format!("{x:.4}"),
    };
    println!(
        "| seed | {} |",
        all.iter()
            .map(|(l, _)| format!("{l}: final | best | wall s"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---:|{}", "---:|---:|---:|".repeat(all.len()));
    for seed in &seeds {
        let cells: Vec<String> = all
            .iter()
            .map(|(label, runs)| {
                let r = runs
                    .get(seed)
                    .with_context(|| format!("{label}: no seed {seed}"))?;
                Ok(format!(
                    "{} | {} | {:.1}",
                    g(r.final_loss),
                    g(r.best_loss),
                    r.wall_seconds
                ))
            })
            .collect::<Result<_>>()?;
        println!("| {seed} | {} |", cells.join(" | "));
    }
    let stats = |runs: &BTreeMap<u64, Run>, f: fn(&Run) -> f64| {
        mean_std(&runs.values().map(f).collect::<Vec<_>>())
    };
    let cells: Vec<String> = all
        .iter()
        .map(|(_, runs)| {
            let (fm, fs) = stats(runs, |r| r.final_loss);
            let (bm, bs) = stats(runs, |r| r.best_loss);
            let (wm, ws) = stats(runs, |r| r.wall_seconds);
            format!(
                "{} ± {} | {} ± {} | {wm:.1} ± {ws:.1}",
                g(fm),
                g(fs),
                g(bm),
                g(bs)
            )
        })
        .collect();
    println!("| mean ± std | {} |", cells.join(" | "));
    println!();
    let (gm, gs) = stats(&all[0].1, |r| r.final_loss);
    for (label, runs) in &all[1..] {
        let (m, s) = stats(runs, |r| r.final_loss);
        let n = seeds.len() as f64;
        let se = (gs * gs / n + s * s / n).sqrt();
        let diff = m - gm;
        println!(
            "- {label} − gradlab, final loss: {diff:+.3e} (standard error of the difference \
             {se:.3e}, |t| = {:.2}): {}",
            (diff / se).abs(),
            if diff.abs() <= 2.0 * se {
                "within seed noise (|t| <= 2)"
            } else {
                "beyond seed noise (|t| > 2)"
            }
        );
    }
    // The twin from gradlab's initial parameters computes the same function on the same
    // batches: how long do the two training losses agree?
    for seed in &seeds {
        let (a, b) = (&all[0].1[seed].losses, &all[1].1[seed].losses);
        let rel: Vec<(i64, f64)> = a
            .iter()
            .filter_map(|(s, x)| b.get(s).map(|y| (*s, ((x - y) / x).abs())))
            .collect();
        let apart = rel.iter().find(|(_, r)| *r > 1e-3).map(|(s, _)| *s);
        let before = rel
            .iter()
            .filter(|(s, _)| apart.is_none_or(|a| *s < a))
            .map(|(_, r)| *r)
            .fold(0.0, f64::max);
        println!(
            "- seed {seed}, PyTorch with gradlab's init against gradlab, training loss at the \
             logged updates: relative difference {:.1e} at update 0, at most {before:.1e} {}",
            rel.first().map_or(f64::NAN, |r| r.1),
            match apart {
                Some(s) => format!("before update {s}, the first above 1e-3"),
                None => "at every logged update".into(),
            }
        );
    }
    let chart = Chart {
        file: name,
        title: "Evaluation loss: gradlab and its PyTorch twin on the same batches".into(),
        x_label: "updates".into(),
        y_label: "evaluation loss".into(),
        log_x: false,
        log_y,
        reference_y: None,
        categories: None,
        keys: vec!["implementation".into()],
        columns: [
            "updates",
            "eval_loss_mean",
            "eval_loss_min",
            "eval_loss_max",
        ]
        .map(String::from),
        series: all.iter().map(|(l, runs)| mean_curve(l, runs)).collect(),
    };
    let opts = FigureOptions {
        formats: vec![PlotFormat::Png],
        facet: Facet::None,
        width: FigureWidth(5.0),
    };
    let files = draw(&chart, &out, &opts)?;
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}
