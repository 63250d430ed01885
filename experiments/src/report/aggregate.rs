//! Aggregation over seeds: the complete runs of the sources joined with what their logged updates
//! say (steps to success, truncation bias), grouped by the swept keys (polars' group_by), one
//! row of statistics per group: mean ± std of the losses and the metric, success count and rate
//! with a 95% Wilson interval, median updates to success, divergences, clip fraction, decay
//! rate, truncation bias.

use std::collections::{BTreeMap, BTreeSet};

use polars::prelude::*;

use super::source::{Condition, Source};
use super::{f64s, strings, values, ReportError};
use crate::store;
use crate::sweep::PlannedRun;
use crate::task::TaskKind;

/// z of a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The complete runs a report covers, with the per-run columns the report adds (`source`,
/// `steps_to_success`, `trunc_cosine`, `trunc_norm_ratio`, `order`), and their logged updates.
pub struct SweepData {
    pub runs: DataFrame,
    pub steps: DataFrame,
    /// The runs the sources' sweeps plan (those `--where` selects by configuration), in order.
    pub planned: Vec<PlannedRun>,
    /// Planned runs that are not complete yet.
    pub missing: usize,
}

impl SweepData {
    /// Reads the `runs` and `steps` tables of every source: of a sweep, the runs of its current
    /// spec; of a folder of single runs, all of them; then keeps the runs that meet every
    /// condition. `None` when no run is left.
    pub fn load(
        sources: &[Source],
        conditions: &[Condition],
    ) -> Result<Option<SweepData>, ReportError> {
        let (mut frames, mut planned, mut missing) = (Vec::new(), Vec::new(), 0);
        for (s, source) in sources.iter().enumerate() {
            // Only complete runs: a damaged run's `runs` row may be readable while its steps
            // are not (reported with --partial only).
            let complete = store::completed_ids(&source.dir)?;
            let complete: BTreeSet<&str> = complete.iter().map(String::as_str).collect();
            let runs = store::read_table(&source.dir, "runs")?
                .map(|r| only_ids(r, &complete))
                .transpose()?;
            let selected = source.planned(conditions);
            let done: BTreeSet<String> = match &runs {
                Some(r) => strings(r, "run_id")?.into_iter().collect(),
                None => BTreeSet::new(),
            };
            missing += selected.iter().filter(|r| !done.contains(&r.id)).count();
            planned.extend(selected);
            let Some(runs) = runs else { continue };
            let (mut runs, order) = match &source.sweep {
                Some(sweep) => {
                    let runs = only_planned(runs, &sweep.runs)?;
                    let index_of: BTreeMap<&str, i64> = sweep
                        .runs
                        .iter()
                        .map(|r| (r.id.as_str(), r.index as i64))
                        .collect();
                    let order = strings(&runs, "run_id")?
                        .iter()
                        .map(|id| index_of[id.as_str()])
                        .collect::<Vec<_>>();
                    (runs, order)
                }
                None => {
                    let order = (0..runs.height() as i64).collect();
                    (runs, order)
                }
            };
            // Sources in the order given, each in its spec's order.
            let order: Vec<i64> = order.into_iter().map(|o| ((s as i64) << 32) + o).collect();
            runs.with_column(Column::new("order".into(), order))?;
            let label = vec![source.label.as_str(); runs.height()];
            runs.with_column(Column::new("source".into(), label))?;
            let steps = store::read_table(&source.dir, "steps")?.unwrap_or_default();
            frames.push((runs, steps));
        }
        let (runs, steps): (Vec<_>, Vec<_>) = frames.into_iter().unzip();
        let Some(runs) = store::concat_aligned(runs)? else {
            return Ok(None);
        };
        let mut names: Vec<&str> = runs
            .get_column_names()
            .into_iter()
            .map(|n| n.as_str())
            .collect();
        names.retain(|n| *n != "order");
        for c in conditions {
            c.check_key(names.iter().copied())?;
        }
        let runs = select(runs, conditions)?;
        if runs.height() == 0 {
            return Ok(None);
        }
        let ids = strings(&runs, "run_id")?;
        let kept: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        let steps = store::concat_aligned(steps.into_iter().filter(|s| s.height() > 0).collect())?
            .map(|s| only_ids(s, &kept))
            .transpose()?
            .unwrap_or_default();
        let run_tasks: BTreeMap<String, TaskKind> = ids
            .iter()
            .cloned()
            .zip(strings(&runs, "task")?)
            .filter_map(|(id, t)| Some((id, t.parse().ok()?)))
            .collect();
        let (firsts, bias) = if steps.height() > 0 {
            (
                steps_to_success(&steps, &run_tasks)?,
                truncation_bias(&steps)?,
            )
        } else {
            Default::default()
        };
        let to_success: Vec<Option<i64>> = ids.iter().map(|id| firsts.get(id).copied()).collect();
        let mut runs = runs;
        runs.with_column(Column::new("steps_to_success".into(), to_success))?;
        let (cos, ratio): (Vec<f64>, Vec<f64>) = ids
            .iter()
            .map(|id| bias.get(id).copied().unwrap_or((f64::NAN, f64::NAN)))
            .unzip();
        runs.with_column(Column::new("trunc_cosine".into(), cos))?;
        runs.with_column(Column::new("trunc_norm_ratio".into(), ratio))?;
        // In the specs' order, so that sums over a group never depend on file names.
        let runs = runs.sort(["order"], SortMultipleOptions::default())?;
        Ok(Some(SweepData {
            runs,
            steps,
            planned,
            missing,
        }))
    }
}

/// The rows of `runs` that meet every condition.
fn select(runs: DataFrame, conditions: &[Condition]) -> PolarsResult<DataFrame> {
    let mut keep = vec![true; runs.height()];
    for c in conditions {
        if c.key == "tags" && runs.column("tags")?.dtype().is_list() {
            let tags = runs.column("tags")?.list()?.clone();
            for (i, k) in keep.iter_mut().enumerate() {
                let row: Vec<String> = match tags.get_as_series(i) {
                    Some(s) => s.str()?.iter().flatten().map(String::from).collect(),
                    None => Vec::new(),
                };
                *k &= c.holds_for_tags(&row);
            }
        } else {
            for (k, v) in keep.iter_mut().zip(values(&runs, &c.key)?) {
                *k &= c.holds(v.as_deref());
            }
        }
    }
    runs.filter(&keep.into_iter().collect())
}

/// The rows of a table whose run is in `ids`.
fn only_ids(df: DataFrame, ids: &BTreeSet<&str>) -> PolarsResult<DataFrame> {
    let keep: BooleanChunked = df
        .column("run_id")?
        .str()?
        .iter()
        .map(|id| id.is_some_and(|id| ids.contains(id)))
        .collect();
    df.filter(&keep)
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
        if task.success(metric) == Some(true) {
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

/// Keeps the rows of runs in the sweep's current spec (a folder may hold runs of an earlier one).
fn only_planned(runs: DataFrame, planned: &[PlannedRun]) -> PolarsResult<DataFrame> {
    only_ids(runs, &planned.iter().map(|r| r.id.as_str()).collect())
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
pub fn aggregate(runs: &DataFrame, by: &[String]) -> PolarsResult<DataFrame> {
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
        // Over the runs that succeeded (their final evaluation met the criterion), not every run
        // that met it at some evaluation and lost it again.
        let to_success = g.column("steps_to_success")?.cast(&DataType::Float64)?;
        let of_successes: Float64Chunked = to_success
            .f64()?
            .iter()
            .zip(success.iter())
            .map(|(steps, ok)| steps.filter(|_| ok == Some(true)))
            .collect();
        push(
            "median_steps_to_success",
            of_successes.median().unwrap_or(f64::NAN),
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
