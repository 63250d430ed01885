//! `gradlab sweep`, `gradlab status` and `gradlab compact`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use gradlab_experiments::config::{thread_count, ModelKind, RunConfig};
use gradlab_experiments::fs::{clean_temporaries, prepare_output_dir};
use gradlab_experiments::interrupt::{self, Interrupted};
use gradlab_experiments::memory::{self, MemoryBudget, MemoryLimit};
use gradlab_experiments::model::kernel_cell;
use gradlab_experiments::store::RUN_FOLDERS;
use gradlab_experiments::store::{self, Provenance};
use gradlab_experiments::sweep::status::{folders, write_spec_and_manifest, SPEC_FILE};
use gradlab_experiments::sweep::{
    self, Event, PlannedRun, RunnerOptions, Spec, SpecChange, SweepDir, SweepStatus,
};
use gradlab_experiments::task::Task;
use gradlab_experiments::train::resume;
use gradlab_kernels::StackShape;
use indicatif::{ProgressBar, ProgressStyle};

use crate::run::out_dir;
use crate::slurm::{self, SlurmArgs};

/// Arguments of `gradlab sweep`.
#[derive(Args, Debug, Default)]
pub struct SweepArgs {
    /// Sweep spec: TOML with name, seeds, [base], [grid] and optionally [random]; without one,
    /// the sweep is what --name, --seeds, --set, --grid and --random say
    pub spec: Option<PathBuf>,
    /// The sweep's name (replaces the spec's) [default without a spec: sweep]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Seeds of every combination (replace the spec's), e.g. --seeds 0,1,2 or 'range(0,10)'
    #[arg(long, value_name = "S1,S2,...")]
    pub seeds: Option<String>,
    /// Results folder [default: results/<name>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Threads; small models run one per thread [default: every core]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub jobs: Option<usize>,
    /// Override a [base] key (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE", allow_hyphen_values = true)]
    pub set: Vec<String>,
    /// Replace or add a grid axis (repeatable), e.g. --grid cell=rnn,lstm or
    /// --grid 'seq_len=range(50,201,50)' (Python's range: 50, 100, 150, 200)
    #[arg(
        long = "grid",
        value_name = "KEY=V1,V2,...",
        allow_hyphen_values = true
    )]
    pub grid: Vec<String>,
    /// Draw a key at random (repeatable; replaces its [random] entry), e.g.
    /// --random 'lr=log_uniform(1e-4,1e-1)'; also uniform(lo,hi), int(lo,hi), choice(a,b)
    #[arg(
        long = "random",
        value_name = "KEY=DIST(..)",
        allow_hyphen_values = true
    )]
    pub random: Vec<String>,
    /// Draws of the random keys (replaces [random]'s n), each run with every grid point and seed
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub samples: Option<usize>,
    /// Print the expanded runs and how many are complete; run and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Run only part i of N (0 <= i < N); the N parts are disjoint and together the whole sweep
    #[arg(long, value_name = "i/N", conflicts_with = "slurm")]
    pub shard: Option<String>,
    /// Stop starting runs after the first failure
    #[arg(long)]
    pub fail_fast: bool,
    /// Keep each run's final parameters as checkpoints/<run_id>.safetensors (PyTorch names;
    /// `gradlab sample` and scripts/load_checkpoint.py read them)
    #[arg(long)]
    pub save_weights: bool,
    /// Memory the runs going at once may use, e.g. 8G: a run starts when its estimate fits
    /// beside theirs, and one that cannot fit alone fails [default: what the machine has
    /// available, or its cgroup limit]
    #[arg(long, value_name = "SIZE", value_parser = crate::parse_max_memory)]
    pub max_memory: Option<u64>,
    /// Make this spec the results folder's even though it drops complete runs of the spec
    /// already there (kept as sweep.toml.replaced-<time>; no result file is removed)
    #[arg(long)]
    pub replace_spec: bool,
    #[command(flatten)]
    pub slurm: SlurmArgs,
}

fn key_value<'a>(flag: &str, kv: &'a str, example: &str) -> Result<(&'a str, &'a str)> {
    crate::split_key_value(kv).with_context(|| format!("{flag} '{kv}': expected {example}"))
}

/// The spec with the command line's overrides, and its runs.
fn with_overrides(mut spec: Spec, args: &SweepArgs) -> Result<(Spec, Vec<PlannedRun>)> {
    if let Some(name) = &args.name {
        spec.set_name(name)?;
    }
    if let Some(seeds) = &args.seeds {
        spec.set_seeds(seeds)?;
    }
    for kv in &args.set {
        let (k, v) = key_value("--set", kv, "KEY=VALUE, e.g. --set hidden=64")?;
        spec.set(k, v)?;
    }
    for kv in &args.grid {
        let (k, v) = key_value("--grid", kv, "KEY=V1,V2,..., e.g. --grid hidden=32,64")?;
        spec.set_axis(k, v)?;
    }
    for kv in &args.random {
        let example = "KEY=DIST(...), e.g. --random 'lr=log_uniform(1e-4,1e-1)'";
        let (k, v) = key_value("--random", kv, example)?;
        spec.set_random(k, v)?;
    }
    if let Some(n) = args.samples {
        spec.set_samples(n)?;
    }
    spec.check_overrides()?;
    let runs = spec.expand()?;
    // A missing text file would fail every charlm run: say so before any starts.
    spec.check_texts(&runs)?;
    Ok((spec, runs))
}

pub fn run(args: SweepArgs) -> Result<()> {
    let spec = match &args.spec {
        Some(path) => Spec::load(path)?,
        None => Spec::new(args.name.as_deref().unwrap_or("sweep"))?,
    };
    run_spec(spec, &args).map(|_| ())
}

/// Runs `spec` with the overrides and options of `args` (its `spec` path aside); returns the
/// results folder.
pub fn run_spec(spec: Spec, args: &SweepArgs) -> Result<PathBuf> {
    let (spec, runs) = with_overrides(spec, args)?;
    let (shard_i, shard_n) = match &args.shard {
        Some(s) => sweep::parse_shard(s)?,
        None => (0, 1),
    };
    let jobs = thread_count(args.jobs, "--jobs")?.get();
    let dir = out_dir(&args.out, &spec.name);
    let mine = sweep::shard(&runs, shard_i, shard_n);

    if args.dry_run && !args.slurm.slurm {
        dry_run(&dir, &spec, &runs, &mine, args)?;
        return Ok(dir);
    }
    if !args.dry_run {
        prepare_output_dir(&dir, args.out.is_none(), &RUN_FOLDERS)?;
        match sweep::check_spec_change(&dir, &runs, args.replace_spec)? {
            SpecChange::None => {}
            SpecChange::Extends { added } => {
                println!(
                    "the spec extends the sweep in {} by {added} runs",
                    dir.display()
                )
            }
            SpecChange::Replaces { kept } => {
                std::fs::rename(dir.join(SPEC_FILE), &kept)
                    .with_context(|| format!("cannot keep the old spec as {}", kept.display()))?;
                println!(
                    "the spec replaces the sweep in {}; the old spec is kept as {}",
                    dir.display(),
                    kept.display()
                );
            }
        }
        let removed = clean_temporaries(&folders(&dir))
            .with_context(|| format!("cannot clean up {}", dir.display()))?;
        if removed > 0 {
            eprintln!("removed {removed} temporary files left by an interrupted sweep");
        }
        write_spec_and_manifest(&dir, &spec, jobs, args.shard.as_deref()).with_context(|| {
            format!(
                "cannot write sweep.toml and manifest.json in {}",
                dir.display()
            )
        })?;
    }
    if args.slurm.slurm {
        let flags = if args.save_weights {
            " --save-weights"
        } else {
            ""
        };
        slurm::submit(&args.slurm, &dir, &runs, flags, args.dry_run)?;
        return Ok(dir);
    }

    let health = store::health(&dir)
        .with_context(|| format!("cannot read the results in {}", dir.display()))?;
    set_aside_damaged(&dir, &health)?;
    let done = health.complete;
    resume::remove_stale(&dir, &done)
        .with_context(|| format!("cannot remove old checkpoints in {}", dir.display()))?;
    let checkpointed = resume::checkpointed(&dir)
        .with_context(|| format!("cannot list the checkpoints in {}", dir.display()))?;
    let todo: Vec<&PlannedRun> = mine
        .iter()
        .copied()
        .filter(|r| !done.contains(&r.id))
        .collect();
    let part = match &args.shard {
        Some(s) => format!(" (shard {s}: {} runs)", mine.len()),
        None => String::new(),
    };
    let resuming = todo.iter().filter(|r| checkpointed.contains(&r.id)).count();
    println!(
        "sweep {}: {} runs{part}, {} already complete, {} to run{} on {jobs} threads -> {}",
        spec.name,
        runs.len(),
        mine.len() - todo.len(),
        todo.len(),
        if resuming > 0 {
            format!(" ({resuming} from their checkpoints)")
        } else {
            String::new()
        },
        dir.display()
    );
    if todo.is_empty() {
        return Ok(dir);
    }
    let opts = RunnerOptions {
        jobs,
        fail_fast: args.fail_fast,
        save_weights: args.save_weights,
        memory: MemoryLimit::resolve(args.max_memory),
    };
    interrupt::install().context("cannot install the signal handlers")?;
    let report = Reporter::new(&todo);
    let summary = sweep::execute(&dir, &todo, &opts, &Provenance::current(&spec.name), &|e| {
        report.event(e)
    })
    .context("could not start the sweep's threads")?;
    report.finish();
    if let Some(signal) =
        interrupt::requested().filter(|_| summary.interrupted + summary.not_started > 0)
    {
        let shard = match &args.shard {
            Some(s) => format!(" --shard {s}"),
            None => String::new(),
        };
        return Err(Interrupted {
            signal,
            what: format!(
                "{} runs finished, {} checkpointed mid-run, {} not started; every finished run \
                 and checkpoint is kept in {}",
                summary.finished,
                summary.interrupted,
                summary.not_started,
                dir.display()
            ),
            resume: format!(
                "gradlab sweep {} --out {}{shard}",
                dir.join(SPEC_FILE).display(),
                dir.display(),
            ),
        }
        .into());
    }
    let why_stopped = match summary.fault {
        Some(_) => "the results folder",
        None => "--fail-fast",
    };
    println!(
        "{} runs finished ({} diverged), {} failed{} in {:.1} s; results in {}",
        summary.finished,
        summary.diverged,
        summary.failed,
        if summary.not_started > 0 {
            format!(", {} not started ({why_stopped})", summary.not_started)
        } else {
            String::new()
        },
        report.start.elapsed().as_secs_f64(),
        dir.display()
    );
    let elsewhere = summary.claimed_elsewhere + summary.completed_elsewhere;
    if elsewhere > 0 {
        println!(
            "{} runs are being run by other processes ({} of them completed meanwhile); \
             `gradlab status {}` shows the whole sweep",
            elsewhere,
            summary.completed_elsewhere,
            dir.display()
        );
    }
    if !summary.unrecorded.is_empty() {
        eprintln!(
            "could not record the failures of {} runs in {}: {}",
            summary.unrecorded.len(),
            dir.join("failed").display(),
            summary.unrecorded.join(", ")
        );
    }
    if let Some(fault) = summary.fault {
        bail!(
            "{}; stopped starting runs ({} not started). Every completed run is kept; run the \
             same command again once fixed to finish the sweep",
            fault.message(&dir),
            summary.not_started
        );
    }
    if summary.failed > 0 {
        bail!(
            "{} runs failed (see {}); run the same command again to retry them",
            summary.failed,
            dir.join("failed").display()
        );
    }
    Ok(dir)
}

/// Moves the damaged files of `health`'s damaged runs aside, so that no reader takes them for
/// results, and says so; the runs are then not complete and run again.
fn set_aside_damaged(dir: &Path, health: &store::Health) -> Result<()> {
    if health.damaged.is_empty() {
        return Ok(());
    }
    let moved = store::check::set_aside(dir, &health.damaged)
        .with_context(|| format!("cannot move the damaged files in {} aside", dir.display()))?;
    eprintln!(
        "{} runs have damaged or missing files; {} damaged files moved to {}; those runs run again:",
        health.damaged.len(),
        moved,
        dir.join(store::check::DAMAGED).display()
    );
    print_damaged(&health.damaged, &mut std::io::stderr());
    Ok(())
}

/// One line per damaged file: run_id, path, what is wrong.
fn print_damaged<'a>(
    damaged: impl IntoIterator<Item = (&'a String, &'a Vec<store::Damage>)>,
    out: &mut dyn std::io::Write,
) {
    for (id, damage) in damaged {
        for d in damage {
            // A closed stream has nowhere to report to.
            let _ = writeln!(out, "  damaged {id}: {}: {}", d.path.display(), d.problem);
        }
    }
}

fn dry_run(
    dir: &Path,
    spec: &Spec,
    runs: &[PlannedRun],
    mine: &[&PlannedRun],
    args: &SweepArgs,
) -> Result<()> {
    // A folder that does not exist yet holds no runs.
    let complete = store::completed_ids(dir)?;
    let p = SweepStatus::of(dir, runs, &complete);
    let failed: std::collections::BTreeSet<&str> =
        p.failed.iter().map(|(r, _)| r.id.as_str()).collect();
    let budget = MemoryBudget::new(MemoryLimit::resolve(args.max_memory));
    let mut tasks = HashMap::new();
    let mut refused = Vec::new();
    for run in mine {
        let too_large = !complete.contains(&run.id) && {
            let c = &run.config;
            let task = tasks
                .entry((c.task, c.seq_len, c.text.clone()))
                .or_insert_with(|| Task::new(c.task, c.seq_len, c.text.as_deref()).ok());
            task.as_ref().is_some_and(|task| {
                budget
                    .fits(memory::estimate_for(c, task))
                    .map_err(|e| refused.push((run, e)))
                    .is_err()
            })
        };
        let state = if complete.contains(&run.id) {
            "complete"
        } else if too_large {
            "too big"
        } else if failed.contains(run.id.as_str()) {
            "failed"
        } else {
            "to run"
        };
        println!(
            "{:>5}  {}  {:<8}  {}",
            run.index,
            run.id,
            state,
            run.label()
        );
    }
    let part = match &args.shard {
        Some(s) => format!("; shard {s} holds {}", mine.len()),
        None => String::new(),
    };
    println!(
        "sweep {}: {} runs{part}; in {}: {} complete, {} failed, {} missing (dry run: nothing run or written)",
        spec.name,
        p.total,
        dir.display(),
        p.complete,
        p.failed.len(),
        p.missing
    );
    if let Some((run, e)) = refused.first() {
        println!(
            "{} runs are too big and would fail, e.g. {} ({}): {e}",
            refused.len(),
            run.id,
            run.label()
        );
    }
    Ok(())
}

/// The work of a run, in floating-point operations: its updates (forward and backward of
/// `batch` sequences) and its evaluations (forward only; the last one of at least 10,000
/// sequences). The input width is taken as `hidden` (a text's vocabulary is not read here);
/// the recurrent weights dominate. Only ratios between runs matter: they weight the ETA.
fn run_cost(cfg: &RunConfig) -> f64 {
    let stack = StackShape {
        cell: kernel_cell(cfg.cell, cfg.nonlinearity),
        input: cfg.hidden,
        hidden: cfg.hidden,
        layers: cfg.depth,
    };
    // seq2seq: an encoder over the source and a decoder over the target, about seq_len each.
    let t = match cfg.model {
        ModelKind::Stack => cfg.seq_len,
        ModelKind::Seq2seq => 2 * cfg.seq_len + 1,
    };
    let evals = (cfg.steps / cfg.eval_every.max(1)) as f64;
    let eval = stack.forward_flops(t, cfg.eval_sequences) * evals
        + stack.forward_flops(t, cfg.eval_sequences.max(10_000));
    stack.train_flops(t, cfg.batch) * cfg.steps as f64 + eval
}

/// The work done and to do, to estimate the time left from the time spent.
#[derive(Debug)]
struct Work {
    total: f64,
    done: f64,
}

impl Work {
    /// Seconds left after `elapsed` seconds, assuming the remaining work goes as fast as the
    /// work done did (`None` before any is done).
    fn eta(&self, elapsed: f64) -> Option<f64> {
        (self.done > 0.0).then(|| elapsed / self.done * (self.total - self.done).max(0.0))
    }
}

/// Bar positions per unit of work (the bar counts in thousandths of the sweep).
const BAR_UNITS: f64 = 1000.0;

/// Progress of a sweep: a bar on a terminal, one line per finished run otherwise. The ETA
/// weights each run by its cost ([`run_cost`]), so cheap runs finishing first do not make it
/// promise too little.
struct Reporter {
    bar: Option<ProgressBar>,
    total: usize,
    cost: HashMap<String, f64>,
    work: Mutex<Work>,
    done: AtomicUsize,
    failed: AtomicUsize,
    start: Instant,
}

impl Reporter {
    fn new(todo: &[&PlannedRun]) -> Self {
        let cost: HashMap<String, f64> = todo
            .iter()
            .map(|r| (r.id.clone(), run_cost(&r.config)))
            .collect();
        let total_cost = cost.values().sum::<f64>();
        let total = todo.len();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(BAR_UNITS as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {msg}  eta {eta}").expect("valid template"),
            );
            bar.set_message(format!("0/{total} runs, 0 failed"));
            bar
        });
        Reporter {
            bar,
            total,
            cost,
            work: Mutex::new(Work {
                total: total_cost,
                done: 0.0,
            }),
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            start: Instant::now(),
        }
    }

    /// Prints a line above the bar (or on stderr without one).
    fn note(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn event(&self, e: Event) {
        let (run, line) = match e {
            Event::Started(_) => return,
            Event::Resumed(run, step) => {
                return self.note(format!(
                    "{} {}: continues from its checkpoint at update {step}",
                    run.id,
                    run.label()
                ))
            }
            Event::CheckpointSkipped(run, error) => {
                return self.note(format!("{} {}: {error}; not used", run.id, run.label()))
            }
            Event::Interrupted(run, step) => {
                return self.note(format!(
                    "{} {}: stopped; checkpoint at update {step}",
                    run.id,
                    run.label()
                ))
            }
            Event::Finished(run, o) => (
                run,
                format!(
                    "{:<8} final loss {:.5}  {:.1} s",
                    o.status.as_str(),
                    o.final_loss,
                    o.wall_seconds
                ),
            ),
            Event::Failed(run, error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                (run, format!("FAILED   {error}"))
            }
        };
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let failed = self.failed.load(Ordering::Relaxed);
        let (fraction, eta) = {
            let mut work = self.work.lock().unwrap_or_else(|e| e.into_inner());
            work.done += self.cost.get(&run.id).copied().unwrap_or(0.0);
            let fraction = work.done / work.total.max(f64::MIN_POSITIVE);
            (fraction, work.eta(self.start.elapsed().as_secs_f64()))
        };
        match &self.bar {
            Some(bar) => {
                bar.set_position((fraction * BAR_UNITS).round() as u64);
                bar.set_message(format!("{done}/{} runs, {failed} failed", self.total));
                if line.starts_with("FAILED") {
                    bar.println(format!("{} {}: {line}", run.id, run.label()));
                }
            }
            None => {
                eprintln!(
                    "[{done:>w$}/{}] {} {}  {line}  (eta {:.0} s)",
                    self.total,
                    run.id,
                    run.label(),
                    eta.unwrap_or(0.0),
                    w = self.total.to_string().len()
                );
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Arguments of `gradlab status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// A sweep's results folder (with its sweep.toml)
    dir: PathBuf,
}

pub fn status(args: StatusArgs) -> Result<()> {
    let sweep = SweepDir::open(&args.dir)?;
    let (dir, p) = (&sweep.dir, sweep.status()?);
    println!(
        "sweep {} in {}: {} runs: {} complete ({} diverged), {} failed, {} missing",
        sweep.spec.name,
        dir.display(),
        p.total,
        p.complete,
        p.diverged,
        p.failed.len(),
        p.missing
    );
    for (run, message) in &p.failed {
        println!("  failed {} {}: {message}", run.id, run.label());
    }
    if !p.damaged.is_empty() {
        println!(
            "{} runs have damaged or missing files (not counted as complete; `gradlab sweep` moves \
             the files aside and runs them again):",
            p.damaged.len()
        );
        print_damaged(
            p.damaged.iter().map(|(id, d)| (id, d)),
            &mut std::io::stdout(),
        );
    }
    let ids: std::collections::BTreeSet<&str> = sweep.runs.iter().map(|r| r.id.as_str()).collect();
    let checkpointed = resume::checkpointed(dir)
        .with_context(|| format!("cannot list the checkpoints in {}", dir.display()))?
        .into_iter()
        .filter(|id| ids.contains(id.as_str()))
        .count();
    if checkpointed > 0 {
        println!(
            "{checkpointed} unfinished runs have a mid-run checkpoint (in checkpoints/); they \
             continue from it"
        );
    }
    if p.extra > 0 {
        println!(
            "{} complete runs in the folder are not in its sweep.toml (an earlier spec)",
            p.extra
        );
    }
    if p.temporaries > 0 {
        println!(
            "{} temporary files (a sweep is writing, or was killed; the next start cleans them up)",
            p.temporaries
        );
    }
    if p.unfinished() {
        println!(
            "to finish it: gradlab sweep {} --out {}",
            dir.join(SPEC_FILE).display(),
            dir.display()
        );
    }
    Ok(())
}

/// Arguments of `gradlab compact`.
#[derive(Args, Debug)]
pub struct CompactArgs {
    /// A results folder (of a sweep or a run)
    dir: PathBuf,
}

pub fn compact(args: CompactArgs) -> Result<()> {
    let dir = &args.dir;
    if !dir.join("runs").is_dir() {
        bail!(
            "{} is not a results folder: it has no runs/ folder",
            dir.display()
        );
    }
    // SIGTERM or SIGINT: finish the table being merged, keep the others' parts, say so. A
    // second signal ends the process at once (nothing is lost: the parts are removed only
    // after the merged file is written and checked).
    interrupt::install().context("cannot install the signal handlers")?;
    let done = store::compact(dir, &|| interrupt::requested().is_some())?;
    if done.removed_temporaries > 0 {
        println!(
            "removed {} temporary files left by a killed compaction or writer",
            done.removed_temporaries
        );
    }
    if done.tables.is_empty() && done.stopped_before.is_empty() {
        println!("nothing to compact in {}: no part files", dir.display());
    }
    for c in &done.tables {
        println!(
            "{}: merged {} part files into {} ({} rows)",
            c.table,
            c.parts,
            dir.join(c.table).join(store::COMPACTED).display(),
            c.rows
        );
    }
    if let Some(signal) = interrupt::requested().filter(|_| !done.stopped_before.is_empty()) {
        return Err(Interrupted {
            signal,
            what: format!(
                "{} kept their part files as they were (every row is still there)",
                done.stopped_before.join(", "),
            ),
            resume: format!("gradlab compact {}", dir.display()),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo said "24 s left" at 4 s and took 45 s: counting runs, the cheap runs that finish
    /// first made the rest look cheap. Weighted by cost, a cheap run done says little.
    #[test]
    fn eta_weights_runs_by_their_cost() {
        let small = RunConfig {
            seq_len: 25,
            ..RunConfig::default()
        };
        let large = RunConfig {
            seq_len: 200,
            hidden: 100,
            ..RunConfig::default()
        };
        let (a, b) = (run_cost(&small), run_cost(&large));
        assert!(b > 20.0 * a, "a longer, wider run costs more: {a} vs {b}");
        let lstm = RunConfig {
            cell: gradlab_experiments::config::CellKind::Lstm,
            ..small.clone()
        };
        let ratio = run_cost(&lstm) / a;
        assert!((3.9..4.1).contains(&ratio), "an LSTM has 4 gates: {ratio}");
        // 3 small and 3 large runs; the 3 small ones took 3 s.
        let work = Work {
            total: 3.0 * (a + b),
            done: 3.0 * a,
        };
        let eta = work.eta(3.0).unwrap();
        let truth = 3.0 * b / a;
        assert!((eta - truth).abs() < 1e-6 * truth, "{eta} vs {truth}");
        // Counting runs would have said 3 s.
        assert!(eta > 20.0 * 3.0);
        assert_eq!(
            Work {
                total: 1.0,
                done: 0.0
            }
            .eta(1.0),
            None
        );
    }
}
