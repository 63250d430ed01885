//! `gradlab bench`: forward+backward of the benchmark shapes, timed against a 1024³ sgemm.
//!
//! Each figure is the median of `--repeats` timed runs after warm-up runs. The reference is a
//! 1024 × 1024 × 1024 `matrixmultiply` sgemm split over the same threads, measured right before
//! each shape, so "% sgemm" compares two measurements taken under the same load: on a shared
//! machine the absolute figures drift, the ratio much less. For careful statistics use
//! `cargo bench` (criterion).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use gradlab_kernels::bench::{find, BenchCase, BenchShape, SplitMix64, SHAPES};
use gradlab_kernels::gemm::{sgemm, Mat};
use gradlab_kernels::Par;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Shape to run (repeatable); `all` adds the DeepBench shapes to the default DESIGN.md set.
    #[arg(long = "shape", value_name = "NAME")]
    shapes: Vec<String>,
    /// Threads (default: every core of this machine).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Timed runs per shape; the median is reported.
    #[arg(long, default_value_t = 11, value_name = "R")]
    repeats: usize,
    /// Print one JSON object per shape instead of a table.
    #[arg(long)]
    json: bool,
}

/// Median wall time of `repeats` runs of `f` after `warmup` untimed ones.
fn median_time(warmup: usize, repeats: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<Duration> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn sgemm_gflops(par: Par, repeats: usize) -> f64 {
    let n = 1024;
    let mut rng = SplitMix64(1);
    let (a, b) = (rng.vec_f32(n * n, 1.0), rng.vec_f32(n * n, 1.0));
    let mut c = vec![0.0f32; n * n];
    let t = median_time(2, repeats, || {
        sgemm(
            n,
            n,
            n,
            Mat::rows(&a, n),
            Mat::rows(&b, n),
            0.0,
            &mut c,
            n,
            par,
        )
    });
    2.0 * (n * n * n) as f64 / t.as_secs_f64() / 1e9
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

pub fn run(args: BenchArgs) -> Result<()> {
    if args.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let shapes = selected(&args.shapes)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores);
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("could not start the thread pool")?;
    let par = Par::rayon(threads);
    let isa = gradlab_kernels::isa();
    if !args.json {
        println!("gradlab bench: forward+backward, f32, {threads} thread(s), isa {isa}, median of {} runs", args.repeats);
        println!("reference: 1024^3 sgemm (matrixmultiply) on the same threads, measured before each shape\n");
        println!("| shape | T | B | I | H | L | ms | GFLOP/s | sgemm GFLOP/s | % sgemm |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    for shape in shapes {
        let sgemm = pool.install(|| sgemm_gflops(par, args.repeats));
        let mut case = BenchCase::new(shape);
        let t = pool.install(|| {
            median_time(2, args.repeats, || {
                std::hint::black_box(case.forward_backward(par));
            })
        });
        let ms = t.as_secs_f64() * 1e3;
        let gflops = shape.train_flops() / t.as_secs_f64() / 1e9;
        if args.json {
            let row = serde_json::json!({
                "shape": shape.name, "ms": ms, "gflops": gflops, "sgemm_gflops": sgemm,
                "threads": threads, "isa": isa, "t": shape.t, "b": shape.b,
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
            let pct = 100.0 * gflops / sgemm;
            println!("| {name} | {t} | {b} | {input} | {hidden} | {layers} | {ms:.2} | {gflops:.1} | {sgemm:.1} | {pct:.0}% |");
        }
    }
    Ok(())
}
