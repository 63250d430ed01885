//! The `gradlab` command line: parses and validates arguments, then calls the library crates.

#![forbid(unsafe_code)]

mod bench;
mod data;
mod report;
mod run;
mod slurm;
mod sweep;
mod tools;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Version line with the instruction set the kernels run on.
fn long_version() -> &'static str {
    let v = format!(
        "{} (isa: {}, chosen at run time: the best this CPU has, or GRADLAB_ISA)",
        env!("CARGO_PKG_VERSION"),
        gradlab_kernels::isa()
    );
    Box::leak(v.into_boxed_str())
}

#[derive(Parser, Debug)]
#[command(name = "gradlab", version, long_version = long_version(), about = "Fast, reproducible experiments on how recurrent networks train")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train one model and write its results (Parquet) and checkpoint (safetensors).
    Run(run::RunArgs),
    /// Write the batches a run trains on (and its evaluation data) for another framework.
    Data(data::DataArgs),
    /// Run the built-in demonstration sweep (vanishing and exploding gradients) and report it.
    Demo(report::DemoArgs),
    /// Run a sweep spec: every combination of its grid and seeds, in parallel, resumably.
    Sweep(Box<sweep::SweepArgs>),
    /// Show how many runs of a sweep are complete, failed and missing.
    Status(sweep::StatusArgs),
    /// Merge a results folder's per-run files into one file per table.
    Compact(sweep::CompactArgs),
    /// Tables (Markdown, LaTeX, CSV) and plots of a sweep, aggregated over seeds.
    Report(report::ReportArgs),
    /// Generate text from a charlm or hello checkpoint, or decode a source with a seq2seq one.
    Sample(tools::SampleArgs),
    /// Forward and backward of a stack on given tensors, to cross-check against any framework.
    Grad(tools::GradArgs),
    /// What a character model's units do over a text: a table of every activation, units
    /// ranked by text features (quotes, brackets, line position, ...), and a coloured page.
    Activations(tools::ActivationsArgs),
    /// Time forward+backward of the benchmark shapes against the same run's large sgemm.
    Bench(bench::BenchArgs),
}

/// Help of `--max-memory` (`gradlab run` and `gradlab sweep`).
const MAX_MEMORY_HELP: &str = "Memory runs may use, e.g. 8G or 512M: a run whose estimate \
     exceeds it is refused [default: what the machine has available, or its cgroup limit]";

/// `--max-memory SIZE`.
fn parse_max_memory(text: &str) -> Result<u64, String> {
    gradlab_experiments::memory::parse_size(text).map_err(|e| e.to_string())
}

/// `KEY=VALUE` as its trimmed parts (`--set`, `--grid`).
fn split_key_value(kv: &str) -> Option<(&str, &str)> {
    kv.split_once('=').map(|(k, v)| (k.trim(), v.trim()))
}

/// Runs `f` on a pool of `threads` threads (every core when not given), so that no kernel uses
/// more; `flag` names the option in errors.
fn with_threads<T: Send>(
    threads: Option<usize>,
    flag: &str,
    f: impl FnOnce(usize) -> T + Send,
) -> Result<T> {
    let n = gradlab_experiments::config::thread_count(threads, flag)?.get();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(|e| anyhow::anyhow!("could not start the thread pool: {e}"))?;
    Ok(pool.install(|| f(n)))
}

/// Exits with a clear message, before any SIMD code runs, when this CPU lacks an instruction set
/// the binary was compiled for (otherwise it would die of SIGILL mid-run), or `GRADLAB_ISA`
/// names kernels it cannot run.
fn check_cpu() {
    let missing = gradlab_kernels::missing_cpu_features();
    if !missing.is_empty() {
        eprintln!(
            "error: this gradlab was built for CPU features this machine lacks: {}.\n{}",
            missing.join(", "),
            gradlab_kernels::portable_build_hint()
        );
        std::process::exit(2);
    }
    if let Err(e) = gradlab_kernels::isa::isa_from_env() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

/// The error and its causes as one line, `outer: inner: ...`, leaving out a cause whose text
/// its parent already printed (an error that shows its source in its own message).
fn error_message(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message += ": ";
        }
        message += &text;
    }
    message
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so a closed stdout (`gradlab sweep ... --dry-run | head`) would make
    // every println! panic; with the default action the process ends quietly, as Unix tools do.
    sigpipe::reset();
    check_cpu();
    let cli = Cli::parse();
    let result: Result<()> = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Data(args) => data::run(args),
        Command::Demo(args) => report::demo(args),
        Command::Sweep(args) => sweep::run(*args),
        Command::Status(args) => sweep::status(args),
        Command::Compact(args) => sweep::compact(args),
        Command::Report(args) => report::run(args),
        Command::Sample(args) => tools::sample_cmd(args),
        Command::Grad(args) => tools::grad_cmd(args),
        Command::Activations(args) => tools::activations_cmd(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<gradlab_experiments::interrupt::Interrupted>() => {
            let i = e
                .downcast_ref::<gradlab_experiments::interrupt::Interrupted>()
                .expect("checked");
            eprintln!("{i}");
            ExitCode::from(gradlab_experiments::interrupt::exit_code(i.signal) as u8)
        }
        Err(e) => {
            eprintln!("error: {}", error_message(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read f: {source}")]
    struct Outer {
        source: std::io::Error,
    }

    /// A source that its parent's message already shows is printed once, not twice.
    #[test]
    fn a_cause_shown_by_its_parent_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Outer { source: io }).context("loading the checkpoint");
        assert_eq!(
            error_message(&e),
            "loading the checkpoint: cannot read f: no such file"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_message(&plain), "outer: inner");
    }
}
