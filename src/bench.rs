//! `gradlab bench`: forward+backward of the benchmark shapes, timed against a 1024³ sgemm and
//! the machine's FMA peak; `--train`: whole training runs, phase by phase.
//!
//! Each figure is the median of `--repeats` timed runs after a warm-up. The references are a
//! 1024 × 1024 × 1024 `matrixmultiply` sgemm split over the same threads and a register-only FMA
//! loop on every thread ([`FmaPeak`]), timed in turn with the shape (sgemm, shape, FMA loop, and
//! again), so "% sgemm" and "% peak" compare medians taken under the same load: on a shared
//! machine the absolute figures drift, the ratios much less. For careful statistics use
//! `cargo bench` (criterion).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use gradlab_experiments::train::bench::{find_train_case, TrainCase, TRAIN_CASES};
use gradlab_kernels::bench::{
    find, fma_peak_gflops, BenchCase, BenchShape, FmaPeak, SplitMix64, SHAPES,
};
use gradlab_kernels::gemm::{sgemm, GemmShape, Mat, MatMut};
use gradlab_kernels::Par;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Shape to run (repeatable); `all` adds the DeepBench shapes to the default DESIGN.md set.
    #[arg(long = "shape", value_name = "NAME", conflicts_with = "train")]
    shapes: Vec<String>,
    /// Threads (default: every core of this machine).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Timed runs per shape (default 11) or training case (default 3); the median is reported.
    #[arg(long, value_name = "R")]
    repeats: Option<usize>,
    /// Print one JSON object per shape (or training case) instead of a table.
    #[arg(long)]
    json: bool,
    /// Time whole training runs (forward, backward, clipping, optimiser, diagnostics,
    /// evaluation) instead of the kernel shapes, phase by phase.
    #[arg(long)]
    train: bool,
    /// With --train: the case to run (repeatable; default all).
    #[arg(long = "case", value_name = "NAME", requires = "train")]
    cases: Vec<String>,
    /// With --train: the text file the char-LM case trains on (it is skipped without one).
    #[arg(long, value_name = "FILE", requires = "train")]
    text: Option<std::path::PathBuf>,
}

/// Median wall times of `repeats` rounds that run each of `fs` in turn, after `warmup` rounds.
///
/// Each function runs twice per round and only its second run is timed: the sgemm (12 MiB)
/// evicts the caches, and a small shape timed right after it would be measured cold. Timing the
/// three in turn makes their ratios compare medians taken under the same load.
fn round_robin_medians<const N: usize>(
    warmup: usize,
    repeats: usize,
    mut fs: [&mut dyn FnMut(); N],
) -> [Duration; N] {
    for _ in 0..warmup {
        fs.iter_mut().for_each(|f| f());
    }
    let mut times: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::with_capacity(repeats));
    for _ in 0..repeats {
        for (f, t) in fs.iter_mut().zip(&mut times) {
            f();
            let start = Instant::now();
            f();
            t.push(start.elapsed());
        }
    }
    times.map(|mut t| {
        t.sort();
        t[repeats / 2]
    })
}

/// A 1024³ sgemm on `par`, and its FLOPs.
struct Sgemm {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl Sgemm {
    const N: usize = 1024;
    const FLOPS: f64 = 2.0 * (Self::N * Self::N * Self::N) as f64;

    fn new() -> Self {
        let n = Self::N;
        let mut rng = SplitMix64(1);
        Sgemm {
            a: rng.vec_f32(n * n, 1.0),
            b: rng.vec_f32(n * n, 1.0),
            c: vec![0.0; n * n],
        }
    }

    fn run(&mut self, par: Par) {
        let n = Self::N;
        let (a, b) = (Mat::rows(&self.a, n), Mat::rows(&self.b, n));
        let dims = GemmShape { m: n, k: n, n };
        sgemm(dims, a, b, 0.0, MatMut::rows(&mut self.c, n), par);
    }
}

fn selected(names: &[String]) -> Result<Vec<&'static BenchShape>> {
    if names.is_empty() {
        return Ok(SHAPES.iter().filter(|s| s.default).collect());
    }
    if names.iter().any(|n| n == "all") {
        return Ok(SHAPES.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            find(n).with_context(|| {
                let known: Vec<_> = SHAPES.iter().map(|s| s.name).collect();
                format!(
                    "unknown shape '{n}'; expected one of: all, {}",
                    known.join(", ")
                )
            })
        })
        .collect()
}

/// A rayon pool of `threads` threads.
fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("could not start the thread pool")
}

/// Repeats of the FMA peak loop behind the peak of a training case.
const PEAK_REPEATS: usize = 5;

pub fn run(args: BenchArgs) -> Result<()> {
    let repeats = args.repeats.unwrap_or(if args.train { 3 } else { 11 });
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    if args.train {
        return train(&args, repeats, cores);
    }
    let shapes = selected(&args.shapes)?;
    let threads = args.threads.unwrap_or(cores);
    let pool = pool(threads)?;
    let par = Par::rayon(threads);
    let isa = gradlab_kernels::isa();
    if !args.json {
        println!("gradlab bench: forward+backward, f32, {threads} thread(s), isa {isa}, median of {repeats} runs");
        println!("reference: 1024^3 sgemm (matrixmultiply) and the kernels' FMA peak loop (their instruction set) on the same threads,");
        println!("timed in turn with each shape\n");
        println!("| shape | T | B | I | H | L | ms | GFLOP/s | sgemm GFLOP/s | % sgemm | peak GFLOP/s | % peak |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    let mut reference = Sgemm::new();
    for shape in shapes {
        let mut case = BenchCase::new(shape);
        let [ts, t, tp] = pool.install(|| {
            round_robin_medians(
                1,
                repeats,
                [
                    &mut || reference.run(par),
                    &mut || {
                        std::hint::black_box(case.forward_backward(par));
                    },
                    &mut || FmaPeak.run(),
                ],
            )
        });
        let peak = pool.install(|| FmaPeak.flops()) / tp.as_secs_f64() / 1e9;
        let sgemm = Sgemm::FLOPS / ts.as_secs_f64() / 1e9;
        let ms = t.as_secs_f64() * 1e3;
        let gflops = shape.train_flops() / t.as_secs_f64() / 1e9;
        if args.json {
            let row = serde_json::json!({
                "shape": shape.name, "ms": ms, "gflops": gflops, "sgemm_gflops": sgemm,
                "peak_gflops": peak, "threads": threads, "isa": isa, "t": shape.t, "b": shape.b,
                "input": shape.input, "hidden": shape.hidden, "layers": shape.layers,
            });
            println!("{row}");
        } else {
            let BenchShape {
                name,
                t,
                b,
                input,
                hidden,
                layers,
                ..
            } = *shape;
            let (pct, pct_peak) = (100.0 * gflops / sgemm, 100.0 * gflops / peak);
            println!("| {name} | {t} | {b} | {input} | {hidden} | {layers} | {ms:.2} | {gflops:.1} | {sgemm:.1} | {pct:.0}% | {peak:.1} | {pct_peak:.0}% |");
        }
    }
    Ok(())
}

/// The training cases `--case` names (all by default).
fn selected_cases(names: &[String]) -> Result<Vec<&'static TrainCase>> {
    if names.is_empty() {
        return Ok(TRAIN_CASES.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            find_train_case(n).with_context(|| {
                let known: Vec<_> = TRAIN_CASES.iter().map(|c| c.name).collect();
                format!("unknown case '{n}'; expected one of: {}", known.join(", "))
            })
        })
        .collect()
}

/// `--train`: each case `repeats` times; the run of median wall time is reported.
fn train(args: &BenchArgs, repeats: usize, cores: usize) -> Result<()> {
    let cases = selected_cases(&args.cases)?;
    if let Some(text) = &args.text {
        if !text.is_file() {
            bail!("--text {}: no such file", text.display());
        }
    }
    let isa = gradlab_kernels::isa();
    if !args.json {
        println!("gradlab bench --train: whole runs (default diagnostics and evaluations), isa {isa}, median of {repeats} runs");
        println!("peak: the kernels' FMA loop (their instruction set) on the case's threads; phases in % of the run's wall time\n");
        println!("| case | threads | updates | s | updates/s | fwd+bwd GFLOP/s | % peak | fwd+bwd | norms | diagnostics | spectrum | clip+optimizer | evaluation | batches+other | final loss |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    for case in cases {
        let cfg = match case.run_config(args.text.as_deref()) {
            Ok(cfg) => cfg,
            Err(e) if case.needs_text() && args.text.is_none() => {
                eprintln!("skipping {}: {e}", case.name);
                continue;
            }
            Err(e) => bail!("case {}: {e}", case.name),
        };
        let threads = args.threads.or(case.threads).unwrap_or(cores);
        let pool = pool(threads)?;
        // The peak is measured before each run, under the load the run will see.
        let (mut peaks, mut runs) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            peaks.push(pool.install(|| fma_peak_gflops(PEAK_REPEATS)));
            runs.push(
                pool.install(|| case.time(cfg.clone()))
                    .map_err(anyhow::Error::msg)?,
            );
        }
        peaks.sort_by(f64::total_cmp);
        runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        let (peak, r) = (peaks[repeats / 2], runs[repeats / 2]);
        let gflops = r.gradient_gflops();
        let pct = |d: std::time::Duration| 100.0 * d.as_secs_f64() / r.seconds;
        let p = r.phases;
        if args.json {
            let phases: serde_json::Map<_, _> = p
                .named()
                .iter()
                .map(|(name, d)| (name.to_string(), d.as_secs_f64().into()))
                .collect();
            let row = serde_json::json!({
                "case": case.name, "threads": threads, "isa": isa, "updates": r.steps,
                "seconds": r.seconds, "updates_per_sec": r.steps_per_sec(),
                "gradient_gflops": gflops, "peak_gflops": peak, "phases_seconds": phases,
                "final_loss": r.final_loss,
            });
            println!("{row}");
        } else {
            println!(
                "| {} | {threads} | {} | {:.2} | {:.1} | {gflops:.1} | {:.0}% | {:.0}% | {:.1}% | {:.1}% | {:.1}% | {:.1}% | {:.1}% | {:.1}% | {:.4} |",
                case.name,
                r.steps,
                r.seconds,
                r.steps_per_sec(),
                100.0 * gflops / peak,
                pct(p.gradient),
                pct(p.norms),
                pct(p.diagnostics),
                pct(p.spectrum),
                pct(p.update),
                pct(p.evaluation),
                pct(p.batches + p.checkpoints + p.other),
                r.final_loss,
            );
        }
    }
    Ok(())
}
