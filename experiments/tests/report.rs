//! The report against known synthetic runs: every number of its table equals a recomputation
//! from the Parquet files; the LaTeX is well formed; plots are written; bad folders are errors.

use std::path::{Path, PathBuf};

use gradlab_experiments::report::aggregate::wilson;
use gradlab_experiments::report::source::Condition;
use gradlab_experiments::report::table::{latex_escape, latex_number, num, pm};
use gradlab_experiments::report::{self, Format, Options};
use gradlab_experiments::store::{self, read_parquet, Provenance};
use gradlab_experiments::sweep::{PlannedRun, Spec};
use gradlab_experiments::train::record::{
    FlowRow, FlowSource, Outcome, RunRecord, Status, StepRow,
};
use polars::prelude::*;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradlab-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// temporal-order (success: error rate < 1%), 2 cells x 2 clips x 3 seeds.
const SPEC: &str = r#"
name = "synthetic"
seeds = [0, 1, 2]
[base]
task = "temporal-order"
seq_len = 20
steps = 300
[grid]
cell = ["rnn", "lstm"]
clip = ["none", "norm:1"]
"#;

/// A made-up but consistent record for run `i`: its metric falls from 0.5 to `final_metric`
/// over evaluations at steps 99, 199, 299; run 5 diverges at step 150.
fn record(i: usize) -> RunRecord {
    let final_metric = [
        0.0, 0.3, 0.005, 0.2, 0.0, 0.5, 0.4, 0.001, 0.002, 0.1, 0.2, 0.3,
    ][i];
    let diverged = i == 5;
    let mut steps = Vec::new();
    for (k, step) in [99usize, 199, 299].into_iter().enumerate() {
        let m = if k == 2 {
            final_metric
        } else {
            0.5 - 0.1 * k as f64 + final_metric * 0.0
        };
        steps.push(StepRow {
            step,
            loss: 1.0 / (1.0 + k as f64 + i as f64),
            grad_norm: 2.0,
            grad_norm_clipped: 1.0,
            clipped: true,
            lr: 0.01,
            grad_norm_layers: vec![2.0],
            eval_loss: Some(0.7 - 0.1 * k as f64),
            // Runs 0 and 1 meet the criterion at step 199; run 1 then fails it.
            eval_metric: Some(if i <= 1 && k == 1 { 0.0 } else { m }),
            trunc_cosine: Some(1.0 - 0.01 * i as f64 - 0.001 * k as f64),
            trunc_norm_ratio: Some(0.5),
            ..StepRow::default()
        });
    }
    let flow = (0..20)
        .map(|lag| FlowRow {
            step: 299,
            layer: 0,
            lag,
            source: FlowSource::Probe,
            grad_norm: (-(0.1 * (i + 1) as f64) * lag as f64).exp(),
        })
        .collect();
    RunRecord {
        outcome: Outcome {
            status: if diverged {
                Status::Diverged
            } else {
                Status::Ok
            },
            final_loss: if diverged {
                f64::NAN
            } else {
                0.1 * (i + 1) as f64
            },
            best_loss: 0.05 * (i + 1) as f64,
            metric: if diverged { f64::NAN } else { final_metric },
            success: if diverged {
                Some(false)
            } else {
                Some(final_metric < 0.01)
            },
            diverged_at_step: diverged.then_some(150),
            clip_fraction: 0.1 * (i % 4) as f64,
            decay_rate: Some(-0.1 * (i + 1) as f64),
            steps: if diverged { 151 } else { 300 },
            started_at: std::time::SystemTime::UNIX_EPOCH,
            wall_seconds: 1.0,
            steps_per_sec: 300.0,
        },
        logged: steps,
        flow,
        spectrum: Vec::new(),
    }
}

fn write_sweep(dir: &Path, skip: &[usize]) -> Vec<PlannedRun> {
    let spec = Spec::parse(SPEC, "spec.toml").unwrap();
    std::fs::write(dir.join("sweep.toml"), spec.to_toml()).unwrap();
    let runs = spec.expand().unwrap();
    let prov = Provenance {
        sweep: "synthetic".into(),
        isa: "test".into(),
        gradlab_version: "0".into(),
        git_commit: "x".into(),
    };
    for (i, run) in runs.iter().enumerate() {
        if !skip.contains(&i) {
            store::write_run(dir, &run.id, &run.config, &record(i), &prov).unwrap();
        }
    }
    runs
}

/// Independent recomputation: the `runs` part files, read one by one, grouped in plain Rust.
fn recompute(dir: &Path, planned: &[PlannedRun]) -> Vec<(String, Vec<f64>)> {
    let mut groups: Vec<(String, Vec<DataFrame>)> = Vec::new();
    for run in planned {
        let path = dir.join("runs").join(format!("{}.parquet", run.id));
        if !path.exists() {
            continue;
        }
        let df = read_parquet(&path).unwrap();
        let key = format!("{:?}", &run.swept[..2]);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(df),
            None => groups.push((key, vec![df])),
        }
    }
    let get = |df: &DataFrame, c: &str| {
        df.column(c)
            .unwrap()
            .cast(&DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
    };
    groups
        .into_iter()
        .map(|(k, dfs)| {
            let finals: Vec<f64> = dfs
                .iter()
                .filter_map(|d| get(d, "final_loss"))
                .filter(|x| x.is_finite())
                .collect();
            let n = finals.len() as f64;
            let mean = finals.iter().sum::<f64>() / n;
            let std = (finals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            let succ = dfs
                .iter()
                .filter(|d| d.column("success").unwrap().bool().unwrap().get(0) == Some(true))
                .count() as f64;
            let div = dfs
                .iter()
                .filter(|d| d.column("status").unwrap().str().unwrap().get(0) == Some("diverged"))
                .count() as f64;
            let clip = dfs
                .iter()
                .map(|d| get(d, "clip_fraction").unwrap())
                .sum::<f64>()
                / dfs.len() as f64;
            (k, vec![dfs.len() as f64, mean, std, succ, div, clip])
        })
        .collect()
}

fn col(t: &DataFrame, name: &str) -> Vec<f64> {
    t.column(name)
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect()
}

#[test]
fn success_against_the_sequence_length_where_it_is_swept() {
    let dir = tmpdir("success-vs-t");
    let spec = Spec::parse(
        &SPEC
            .replace("seq_len = 20\n", "")
            .replace("cell = [\"rnn\", \"lstm\"]", "seq_len = [20, 40]"),
        "spec.toml",
    )
    .unwrap();
    std::fs::write(dir.join("sweep.toml"), spec.to_toml()).unwrap();
    let runs = spec.expand().unwrap();
    assert_eq!(runs.len(), 12);
    let prov = Provenance {
        sweep: "synthetic".into(),
        isa: "test".into(),
        gradlab_version: "0".into(),
        git_commit: "x".into(),
    };
    // What the plot must show: per (clip, seq_len), the share of the runs' records that succeed.
    let mut want: Vec<((String, String), (usize, usize))> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let rec = record(i);
        store::write_run(&dir, &run.id, &run.config, &rec, &prov).unwrap();
        let value = |k: &str| {
            run.swept
                .iter()
                .find(|(key, _)| key == k)
                .unwrap()
                .1
                .clone()
        };
        let key = (value("clip"), value("seq_len"));
        let ok = usize::from(rec.outcome.success == Some(true));
        match want.iter_mut().find(|(k, _)| *k == key) {
            Some((_, (k, n))) => (*k, *n) = (*k + ok, *n + 1),
            None => want.push((key, (ok, 1))),
        }
    }
    report::report(&dir, &Options::default()).unwrap();
    let path = dir.join("report").join("success_vs_seq_len.csv");
    let mut r = csv::Reader::from_path(&path).unwrap();
    let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (clip, t, rate) = (col("clip"), col("seq_len"), col("success_rate"));
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), want.len(), "{rows:?}");
    for row in rows {
        let key = (row[clip].to_string(), row[t].to_string());
        let (_, (k, n)) = want
            .iter()
            .find(|(w, _)| *w == key)
            .unwrap_or_else(|| panic!("unexpected row {row:?}"));
        let got: f64 = row[rate].parse().unwrap();
        assert!(
            (got - *k as f64 / *n as f64).abs() < 1e-12,
            "{row:?}: want {k}/{n}"
        );
    }
    assert!(dir.join("report").join("success_vs_seq_len.png").exists());
}

#[test]
fn the_table_equals_a_recomputation_from_the_parquet_files() {
    let dir = tmpdir("numbers");
    let planned = write_sweep(&dir, &[]);
    let r = report::report(&dir, &Options::default()).unwrap();
    assert_eq!((r.expected, r.complete, r.missing()), (12, 12, 0));
    assert_eq!(r.by, ["cell", "clip"]);
    let t = &r.table;
    assert_eq!(t.height(), 4);
    let expected = recompute(&dir, &planned);
    let close =
        |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0) || (a.is_nan() && b.is_nan());
    for (row, (key, want)) in expected.iter().enumerate() {
        let got = [
            col(t, "runs")[row],
            col(t, "final_loss_mean")[row],
            col(t, "final_loss_std")[row],
            col(t, "successes")[row],
            col(t, "diverged")[row],
            col(t, "clip_fraction")[row],
        ];
        for (g, w) in got.iter().zip(want) {
            assert!(close(*g, *w), "group {key}: {got:?} against {want:?}");
        }
        let (lo, hi) = wilson(want[3], 3.0, 1.959963984540054);
        assert!(close(col(t, "success_lo95")[row], lo) && close(col(t, "success_hi95")[row], hi));
    }
    // Runs 0, 2, 4, 7, 8 succeed: groups (rnn, none) = runs 0-2, (rnn, norm:1) = 3-5, ...
    assert_eq!(col(t, "successes"), [2.0, 1.0, 2.0, 0.0]);
    assert_eq!(col(t, "diverged"), [0.0, 1.0, 0.0, 0.0]);
    // Steps to success, over the runs that succeeded: run 0 at 199 (an intermediate
    // evaluation), run 2 at 299: median 249. Run 1 met the criterion at 199 too but failed at
    // the end: counting it (as the report once did) gives 199.
    assert_eq!(col(t, "median_steps_to_success")[0], 249.0);
    assert_eq!(col(t, "median_steps_to_success")[1], 299.0);
    assert!(col(t, "median_steps_to_success")[3].is_nan());
    // Wilson at k = 2, n = 3 (textbook value).
    assert!((col(t, "success_lo95")[0] - 0.2077).abs() < 1e-4);
    assert!((col(t, "success_hi95")[0] - 0.9385).abs() < 1e-4);
    // Decay rate: mean of -0.1 (i + 1) over runs 0, 1, 2.
    assert!((col(t, "decay_rate")[0] + 0.2).abs() < 1e-12);
    // Truncation bias: per run the mean over its logged steps, then over the group's runs.
    assert!((col(t, "trunc_cosine")[0] - (1.0 - 0.01 - 0.001)).abs() < 1e-12);
    assert!((col(t, "trunc_norm_ratio")[0] - 0.5).abs() < 1e-12);
    // The CSV holds the same numbers at full precision.
    let csv = std::fs::read_to_string(dir.join("report").join("summary.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let i = header.iter().position(|h| *h == "final_loss_mean").unwrap();
    let first: f64 = csv
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(i)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(first, col(t, "final_loss_mean")[0]);
    // The Markdown table shows them, one row per group in the spec's order.
    assert!(r.markdown.contains("| rnn | none | 3 |"), "{}", r.markdown);
    assert!(r.markdown.contains("2/3 [0.21, 0.94]"), "{}", r.markdown);
}

#[test]
fn latex_is_booktabs_and_balanced_and_plots_are_written() {
    let dir = tmpdir("files");
    write_sweep(&dir, &[]);
    let r = report::report(&dir, &Options::default()).unwrap();
    let tex = std::fs::read_to_string(dir.join("report").join("summary.tex")).unwrap();
    // The default LaTeX selection: keys, the metric, success and median steps to success.
    for rule in [
        "\\toprule",
        "\\midrule",
        "\\bottomrule",
        "\\begin{tabular}{llrrr}",
        "\\end{tabular}",
        "\\caption{",
        "\\label{tab:gradlab-synthetic}",
    ] {
        assert_eq!(tex.matches(rule).count(), 1, "{rule} in {tex}");
    }
    let body: Vec<&str> = tex.lines().filter(|l| l.ends_with("\\\\")).collect();
    assert_eq!(body.len(), 6, "two header lines and 4 rows");
    for line in &body {
        assert_eq!(line.matches(" & ").count(), 4, "{line}");
        assert_eq!(
            line.matches('{').count(),
            line.matches('}').count(),
            "{line}"
        );
        assert_eq!(line.matches('$').count() % 2, 0, "{line}");
    }
    // No successful run in (lstm, norm:1): its median is missing, an en dash.
    assert!(body[5].ends_with("& -- \\\\"), "{}", body[5]);
    assert!(tex.contains("$\\pm$") && tex.contains("norm:1"));
    assert_eq!(
        latex_escape("a_b 50% & $x# {y} ~^\\"),
        "a\\_b 50\\% \\& \\$x\\# \\{y\\} \\textasciitilde{}\\textasciicircum{}\\textbackslash{}"
    );
    for plot in ["loss", "gradient_vs_lag", "success_vs_clip"] {
        for ext in ["pdf", "svg", "png", "csv"] {
            let path = dir.join("report").join(format!("{plot}.{ext}"));
            assert!(r.files.contains(&path), "{} not written", path.display());
            let bytes = std::fs::read(&path).unwrap();
            let least = if ext == "csv" { 200 } else { 5000 };
            assert!(bytes.len() > least, "{} is nearly empty", path.display());
            if ext == "png" {
                assert_eq!(&bytes[1..4], b"PNG");
            } else if ext == "pdf" {
                assert!(bytes.starts_with(b"%PDF-"));
            } else if ext == "svg" {
                let svg = String::from_utf8(bytes).unwrap();
                assert!(svg.contains("<svg") && svg.contains("</svg>"));
                // Faceted by cell (swept): one panel each.
                assert!(svg.contains("\ncell=rnn\n") && svg.contains("\ncell=lstm\n"));
            }
        }
    }
    // No truncation axis: no success-against-truncation plot.
    assert!(!dir
        .join("report")
        .join("success_vs_truncation.svg")
        .exists());
}

#[test]
fn loss_csv_beside_the_figure_is_the_mean_over_seeds_of_the_logged_loss() {
    let dir = tmpdir("figure-csv");
    let planned = write_sweep(&dir, &[4]);
    report::report(&dir, &Options::default()).unwrap();
    let mut csv = csv::Reader::from_path(dir.join("report").join("loss.csv")).unwrap();
    assert_eq!(
        csv.headers().unwrap().iter().collect::<Vec<_>>(),
        ["cell", "clip", "step", "loss_mean", "loss_min", "loss_max"]
    );
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4 * 3, "4 groups x 3 logged steps");
    for row in &rows {
        let step: usize = row[2].parse().unwrap();
        // Every complete run of the group, recomputed from the records written.
        let losses: Vec<f64> = planned
            .iter()
            .enumerate()
            .filter(|(i, r)| *i != 4 && r.swept[0].1 == row[0] && r.swept[1].1 == row[1])
            .flat_map(|(i, _)| record(i).logged)
            .filter(|s| s.step == step)
            .map(|s| s.loss)
            .collect();
        assert!(!losses.is_empty(), "{row:?}");
        let mean = losses.iter().sum::<f64>() / losses.len() as f64;
        let num = |j: usize| row[j].parse::<f64>().unwrap();
        assert!((num(3) - mean).abs() < 1e-12, "{row:?}: {mean}");
        assert_eq!(num(4), losses.iter().copied().fold(f64::INFINITY, f64::min));
        assert_eq!(num(5), losses.iter().copied().fold(0.0, f64::max));
    }
}

#[test]
fn a_facet_must_be_a_grouping_key() {
    let dir = tmpdir("facet");
    write_sweep(&dir, &[]);
    let mut opts = Options::default();
    opts.figures.facet = "seq_len".parse().unwrap();
    let e = report::report(&dir, &opts).unwrap_err().to_string();
    assert!(
        e.contains("--facet seq_len") && e.contains("cell, clip"),
        "{e}"
    );
}

#[test]
fn partial_compacted_and_foreign_folders() {
    let dir = tmpdir("partial");
    write_sweep(&dir, &[1, 4]);
    let opts = Options {
        by: Some(vec!["cell".into()]),
        metrics: Some(vec!["best_loss".into()]),
        formats: vec![Format::Markdown],
        out: Some(dir.join("elsewhere")),
        plots: false,
        ..Options::default()
    };
    let r = report::report(&dir, &opts).unwrap();
    assert_eq!((r.expected, r.complete, r.missing()), (12, 10, 2));
    assert!(
        r.markdown.contains("10 of 12 runs complete (2 missing)"),
        "{}",
        r.markdown
    );
    assert_eq!(col(&r.table, "runs"), [4.0, 6.0]);
    assert_eq!(r.files, [dir.join("elsewhere").join("summary.md")]);
    assert!(r.markdown.contains("best loss"));

    let before = report::report(&dir, &Options::default()).unwrap().table;
    store::compact(&dir, &|| false).unwrap();
    let after = report::report(&dir, &Options::default()).unwrap().table;
    assert!(
        before.equals_missing(&after),
        "compaction changed the report"
    );

    let err = |d: &Path, o: &Options| report::report(d, o).unwrap_err().to_string();
    assert!(err(&dir.join("nope"), &Options::default()).contains("does not exist"));
    let empty = tmpdir("empty");
    assert!(err(&empty, &Options::default()).contains("no sweep.toml"));
    let bad_by = Options {
        by: Some(vec!["colour".into()]),
        ..Options::default()
    };
    assert!(err(&dir, &bad_by).contains("--by colour"));
    let bad_metric = Options {
        metrics: Some(vec!["accuracy".into()]),
        ..Options::default()
    };
    assert!(err(&dir, &bad_metric).contains("--metric accuracy"));
}

#[test]
fn numbers_are_formatted_for_papers() {
    assert_eq!(pm(0.16612, 0.0041), "0.1661 ± 0.0041");
    assert_eq!(pm(0.014, 0.018), "0.014 ± 0.018");
    assert_eq!(pm(12.345, 1.5), "12.3 ± 1.5");
    assert_eq!(pm(0.5, f64::NAN), "0.5000");
    assert_eq!(num(1234.5), "1234");
    assert_eq!(num(2.5e-5), "2.50e-5");
}

#[test]
fn latex_numbers_use_a_real_minus_and_times_ten() {
    assert_eq!(latex_number("-0.1426"), "$-0.1426$");
    assert_eq!(latex_number("2.50e-5"), "$2.50\\times10^{-5}$");
    assert_eq!(latex_number("-0.014 ± 0.018"), "$-0.014 \\pm 0.018$");
    assert_eq!(latex_escape("MSE < 0.01"), "MSE \\textless{} 0.01");
}

/// `--columns` picks the statistics of both tables; `--by cell` pools the other swept key and
/// the caption and headline say so; a bad column name lists the valid ones.
#[test]
fn columns_are_chosen_and_pooling_is_stated() {
    let dir = tmpdir("columns");
    write_sweep(&dir, &[]);
    let opts = Options {
        by: Some(vec!["cell".into()]),
        columns: Some(vec!["decay_rate".into(), "runs".into()]),
        plots: false,
        ..Options::default()
    };
    let r = report::report(&dir, &opts).unwrap();
    assert_eq!(
        r.pooled,
        [(
            "clip".to_string(),
            vec!["none".to_string(), "norm:1".to_string()]
        )]
    );
    assert!(
        r.markdown.starts_with("Sweep `synthetic`"),
        "{}",
        r.markdown
    );
    assert!(
        r.markdown.contains("pooled over clip (none, norm:1)"),
        "{}",
        r.markdown
    );
    assert!(
        r.markdown.contains("| cell | decay rate | runs |"),
        "{}",
        r.markdown
    );
    // rnn: runs 0-5, decay -0.1 (i + 1): mean -0.35, with a real minus in LaTeX.
    assert!(
        r.markdown.contains("| rnn | -0.3500 | 6 |"),
        "{}",
        r.markdown
    );
    let tex = std::fs::read_to_string(dir.join("report").join("summary.tex")).unwrap();
    assert!(tex.contains("rnn & $-0.3500$ & $6$ \\\\"), "{tex}");
    assert!(tex.contains("pooled over clip (none, norm:1)"), "{tex}");
    let bad = Options {
        columns: Some(vec!["sucess".into()]),
        ..Options::default()
    };
    let err = report::report(&dir, &bad).unwrap_err().to_string();
    assert!(
        err.contains("--columns sucess") && err.contains("median_steps_to_success"),
        "{err}"
    );
}

/// Several folders in one table (a `source` column), a folder of single runs, and `--where`.
#[test]
fn several_folders_compare_in_one_table_and_where_filters() {
    let root = tmpdir("many");
    let (a, b) = (root.join("a"), root.join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        write_sweep(d, &[]);
    }
    let quiet = Options {
        plots: false,
        formats: vec![Format::Csv],
        ..Options::default()
    };
    let r = report::report_many(&[a.clone(), b.clone()], &quiet).unwrap();
    assert_eq!(r.by, ["source", "cell", "clip"]);
    assert_eq!((r.table.height(), r.complete, r.expected), (8, 24, 24));
    let lstm = Options {
        conditions: Condition::parse_all("cell=lstm,clip!=none").unwrap(),
        ..quiet.clone()
    };
    let r = report::report_many(&[a.clone(), b.clone()], &lstm).unwrap();
    assert_eq!((r.table.height(), r.complete, r.expected), (2, 6, 6));
    assert!(
        r.markdown.contains("runs where cell=lstm, clip!=none"),
        "{}",
        r.markdown
    );
    // A condition on an outcome: runs 0, 2, 4, 7, 8 succeed; the others are not "missing".
    let ok = Options {
        conditions: Condition::parse_all("success=true").unwrap(),
        ..quiet.clone()
    };
    let r = report::report(&a, &ok).unwrap();
    assert_eq!((r.complete, r.missing()), (5, 0));
    let typo = Options {
        conditions: Condition::parse_all("cel=lstm").unwrap(),
        ..quiet.clone()
    };
    let err = report::report(&a, &typo).unwrap_err().to_string();
    assert!(err.contains("did you mean `cell`"), "{err}");
    // A folder of single runs (no sweep.toml): all its runs, grouped by what differs.
    let single = root.join("single");
    let spec = Spec::parse(SPEC, "spec.toml").unwrap();
    let prov = Provenance {
        sweep: "single".into(),
        isa: "test".into(),
        gradlab_version: "0".into(),
        git_commit: "x".into(),
    };
    std::fs::create_dir(&single).unwrap();
    for (i, run) in spec.expand().unwrap().iter().enumerate().take(6) {
        store::write_run(&single, &run.id, &run.config, &record(i), &prov).unwrap();
    }
    let r = report::report(&single, &quiet).unwrap();
    assert_eq!(
        r.by,
        ["clip"],
        "the 6 runs are rnn runs differing in clip and seed"
    );
    assert_eq!((r.complete, r.expected), (6, 6));
}
