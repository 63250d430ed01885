//! `gradlab run`: train one model from a TOML file, per-key flags and `--set key=value`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use gradlab_experiments::config::{key_help, thread_count, RunConfig, KEYS};
use gradlab_experiments::fs::prepare_output_dir;
use gradlab_experiments::interrupt::{self, Interrupted};
use gradlab_experiments::memory::{self, Bytes, MemoryBudget, MemoryLimit};
use gradlab_experiments::store::{self, checkpoint_path, Provenance, RUN_FOLDERS};
use gradlab_experiments::sweep::run_id;
use gradlab_experiments::train::resume::{self, Checkpointing};
use gradlab_experiments::train::{Control, RunEnd, Trainer};
use gradlab_kernels::Par;
use indicatif::{ProgressBar, ProgressStyle};

/// A run configuration from the command line: `--config FILE`, one flag per config key and
/// `--set KEY=VALUE` (`gradlab run`, `gradlab data`).
#[derive(Debug)]
pub struct ConfigArgs {
    config: Option<PathBuf>,
    /// (key, value) overrides in the order they apply: per-key flags, then `--set`.
    overrides: Vec<(String, String)>,
}

/// Arguments of `gradlab run`: the configuration's, and output options.
#[derive(Debug)]
pub struct RunArgs {
    cfg: ConfigArgs,
    out: Option<PathBuf>,
    threads: Option<usize>,
    /// `--resume DIR`: continue the run whose checkpoint is in DIR.
    resume: Option<PathBuf>,
    max_memory: Option<u64>,
}

fn flag(key: &str) -> &'static str {
    Box::leak(key.replace('_', "-").into_boxed_str())
}

impl Args for ConfigArgs {
    fn augment_args(cmd: Command) -> Command {
        let cmd = cmd
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("Run configuration (TOML, the keys of a sweep's [base])"),
            )
            .arg(
                Arg::new("set")
                    .long("set")
                    .value_name("KEY=VALUE")
                    .action(ArgAction::Append)
                    .help("Override one key (after --config and the per-key flags)"),
            );
        let defaults = RunConfig::default().to_table();
        KEYS.iter().fold(cmd, |cmd, &key| {
            let help = key_help(key).unwrap_or_default();
            let help = match defaults.get(key) {
                Some(v) => format!("{help} [default: {v}]"),
                None => help.to_string(),
            };
            cmd.arg(
                Arg::new(key)
                    .long(flag(key))
                    .alias(key)
                    .value_name("VALUE")
                    // `--truncation -3` is a value (and a range error), not an unknown flag.
                    .allow_negative_numbers(true)
                    .help(help)
                    .help_heading("Config keys (as in a TOML file)"),
            )
        })
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for ConfigArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = ConfigArgs {
            config: m.get_one::<PathBuf>("config").cloned(),
            overrides: Vec::new(),
        };
        for &key in KEYS.iter() {
            if let Some(v) = m.get_one::<String>(key) {
                args.overrides.push((key.into(), v.clone()));
            }
        }
        for kv in m.get_many::<String>("set").into_iter().flatten() {
            let Some((k, v)) = crate::split_key_value(kv) else {
                return Err(clap::Error::raw(
                    clap::error::ErrorKind::InvalidValue,
                    format!("--set '{kv}': expected KEY=VALUE, e.g. --set hidden=64\n"),
                ));
            };
            args.overrides.push((k.into(), v.into()));
        }
        Ok(args)
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl ConfigArgs {
    /// The configuration from the file (or the defaults) and the overrides, validated.
    pub fn load(&self) -> Result<RunConfig> {
        self.over(None)
    }

    /// [`ConfigArgs::load`] over `base` instead of the defaults when there is no file.
    fn over(&self, base: Option<RunConfig>) -> Result<RunConfig> {
        let mut cfg = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the config file {}", path.display()))?;
                RunConfig::from_toml(&text)
                    .with_context(|| format!("in the config file {}", path.display()))?
            }
            None => base.unwrap_or_default(),
        };
        for (k, v) in &self.overrides {
            cfg.set(k, v)
                .with_context(|| format!("in the override {k}={v}"))?;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

impl Args for RunArgs {
    fn augment_args(cmd: Command) -> Command {
        ConfigArgs::augment_args(cmd)
            .arg(
                Arg::new("out")
                    .long("out")
                    .value_name("DIR")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("Results folder [default: results/<name>]"),
            )
            .arg(
                Arg::new("resume")
                    .long("resume")
                    .value_name("DIR")
                    .value_parser(clap::value_parser!(PathBuf))
                    .conflicts_with_all(["config", "out"])
                    .help("Continue the run whose mid-run checkpoint is in the results folder DIR: its configuration comes from the checkpoint (other checkpoint_* or labels may be set; a key that changes the run is refused)"),
            )
            .arg(
                Arg::new("threads")
                    .long("threads")
                    .value_name("N")
                    .value_parser(clap::value_parser!(usize))
                    .allow_negative_numbers(true)
                    .help("Threads [default: every core]"),
            )
            .arg(
                Arg::new("max-memory")
                    .long("max-memory")
                    .value_name("SIZE")
                    .value_parser(crate::parse_max_memory)
                    .help(crate::MAX_MEMORY_HELP),
            )
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for RunArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(RunArgs {
            cfg: ConfigArgs::from_arg_matches(m)?,
            out: m.get_one::<PathBuf>("out").cloned(),
            threads: m.get_one::<usize>("threads").copied(),
            max_memory: m.get_one::<u64>("max-memory").copied(),
            resume: m.get_one::<PathBuf>("resume").cloned(),
        })
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// The output folder: `--out`, or `results/<name>`.
pub fn out_dir(out: &Option<PathBuf>, name: &str) -> PathBuf {
    out.clone()
        .unwrap_or_else(|| Path::new("results").join(name))
}

/// `--resume DIR`: the configuration of the one run with a mid-run checkpoint in `dir`.
fn resumed_config(dir: &Path) -> Result<RunConfig> {
    let ids = resume::checkpointed(dir).with_context(|| {
        format!(
            "cannot list the checkpoints in {}",
            dir.join("checkpoints").display()
        )
    })?;
    let id = match ids.len() {
        0 => anyhow::bail!(
            "{} has no mid-run checkpoint (checkpoints/<run_id>.partial): its run completed, or \
             stopped before its first checkpoint; run it again with the same configuration",
            dir.display()
        ),
        1 => ids.first().expect("one").clone(),
        n => anyhow::bail!(
            "{} holds mid-run checkpoints of {n} runs ({}); it is a sweep's folder: continue it \
             with gradlab sweep {}/sweep.toml --out {}",
            dir.display(),
            ids.iter().cloned().collect::<Vec<_>>().join(", "),
            dir.display(),
            dir.display()
        ),
    };
    if let Some(cfg) = resume::config_of(&resume::resume_path(dir, &id)) {
        return Ok(cfg);
    }
    anyhow::bail!(
        "the checkpoint of run {id} in {} is damaged (and so is the one before it); run it \
         again from the start with its configuration",
        dir.display()
    )
}

pub fn run(args: RunArgs) -> Result<()> {
    let (cfg, dir) = match &args.resume {
        Some(dir) => {
            let saved = resumed_config(dir)?;
            let cfg = args.cfg.over(Some(saved.clone()))?;
            if cfg.identity_toml() != saved.identity_toml() {
                anyhow::bail!(
                    "--resume {}: the overrides change the run (only checkpoint_every, \
                     checkpoint_seconds, tags and note may change); run it under a new \
                     configuration without --resume",
                    dir.display()
                );
            }
            (cfg, dir.clone())
        }
        None => {
            let cfg = args.cfg.load()?;
            let dir = out_dir(&args.out, &cfg.name);
            (cfg, dir)
        }
    };
    let threads = thread_count(args.threads, "--threads")?.get();
    let budget = MemoryBudget::new(MemoryLimit::resolve(args.max_memory));
    let estimate = memory::estimate(&cfg)?;
    let _memory = budget.reserve_estimate(estimate)?;
    prepare_output_dir(
        &dir,
        args.out.is_none() && args.resume.is_none(),
        &RUN_FOLDERS,
    )?;
    let id = run_id(&cfg);
    let checkpoint = Checkpointing::of(&cfg, resume::resume_path(&dir, &id));
    let (mut trainer, from, skipped) =
        Trainer::resumed(cfg.clone(), Par::rayon(threads), &checkpoint.path)?;
    for e in &skipped {
        eprintln!("warning: {e}; not used");
    }
    if let Some(step) = from {
        eprintln!("run {id}: continues from its checkpoint at update {step}");
    }
    interrupt::install().context("cannot install the signal handlers")?;
    let steps = cfg.steps as u64;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} updates  loss {msg}  {per_sec}  eta {eta}",
            )
            .expect("valid template"),
        );
        Some(bar)
    } else {
        None
    };
    if let Some(bar) = &bar {
        bar.set_position(from.unwrap_or(0) as u64);
    }
    let every = (steps / 10).max(1);
    let ctl = Control::until_signal(&checkpoint);
    let end = crate::with_threads(Some(threads), "--threads", |_| {
        trainer.run_with(&ctl, |step, loss| {
            let done = step as u64 + 1;
            match &bar {
                Some(bar) => {
                    bar.set_position(done);
                    bar.set_message(format!("{loss:.4}"));
                }
                None if done.is_multiple_of(every) || done == steps => {
                    eprintln!("update {done}/{steps}: loss {loss:.4}")
                }
                None => {}
            }
        })
    })?
    .with_context(|| format!("cannot write the checkpoint {}", checkpoint.path.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let record = match end {
        RunEnd::Finished(record) => record,
        RunEnd::Interrupted { next_step, .. } => {
            return Err(Interrupted {
                signal: interrupt::requested().unwrap_or(0),
                what: format!(
                    "run {id} checkpointed at update {next_step} of {steps} in {}",
                    checkpoint.path.display()
                ),
                resume: format!("gradlab run --resume {}", dir.display()),
            }
            .into())
        }
    };
    store::write_run(&dir, &id, &cfg, &record, &Provenance::current(&cfg.name))
        .with_context(|| format!("cannot write the results to {}", dir.display()))?;
    resume::remove(&checkpoint.path).with_context(|| {
        format!(
            "cannot remove the finished run's {}",
            checkpoint.path.display()
        )
    })?;
    let ck = checkpoint_path(&dir, &id);
    trainer
        .save_weights(&ck)
        .with_context(|| format!("cannot write the checkpoint {}", ck.display()))?;
    let o = &record.outcome;
    println!(
        "run {id}: {} after {} updates in {:.1} s ({:.0} updates/s)",
        o.status.as_str(),
        o.steps,
        o.wall_seconds,
        o.steps_per_sec
    );
    if let Some(step) = o.diverged_at_step {
        println!("diverged at step {step} (non-finite loss or gradient)");
    } else {
        let success = o.success.map_or("no criterion".to_string(), |s| {
            if s {
                "yes".into()
            } else {
                "no".into()
            }
        });
        println!(
            "final loss {:.5}, best {:.5}, metric {:.5}, success: {success}",
            o.final_loss, o.best_loss, o.metric
        );
    }
    let decay = o.decay_rate.map_or_else(
        || "undefined (fewer than two lags with a gradient; see results/README.md)".into(),
        |r| format!("{r:.4} per step of lag"),
    );
    println!(
        "clip fraction {:.3}, gradient decay rate {decay}",
        o.clip_fraction
    );
    if let Some(peak) = memory::peak_rss() {
        println!(
            "peak memory {} (estimated {} before the run)",
            Bytes(peak as f64),
            estimate.describe()
        );
    }
    println!(
        "results: {}/{{runs,steps,layers,flow,spectrum}}/{id}.parquet, checkpoint: {}",
        dir.display(),
        ck.display()
    );
    Ok(())
}
