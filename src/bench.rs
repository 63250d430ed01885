//! `gradlab bench`: forward+backward of the benchmark shapes, timed against a 1024³ sgemm.
//!
//! Each figure is the median of `--repeats` timed runs after warm-up runs. The reference is a
//! 1024 × 1024 × 1024 `matrixmultiply` sgemm split over the same threads, timed alternately with
//! the shape (one sgemm, one forward+backward, and again), so "% sgemm" compares two medians taken
//! under the same load: on a shared machine the absolute figures drift, the ratio much less. For
//! careful statistics use `cargo bench` (criterion).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use gradlab_kernels::bench::{find, BenchCase, BenchShape, SplitMix64, SHAPES};
use gradlab_kernels::gemm::{sgemm, GemmShape, Mat, MatMut};
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

/// Median wall times of `repeats` alternating runs of `a` and `b`, after `warmup` of each.
///
/// `b` runs twice per repeat and only the second run is timed: `a` (a 12 MiB sgemm) evicts the
/// caches, and a small shape timed right after it would be measured cold.
fn paired_medians(
    warmup: usize,
    repeats: usize,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> (Duration, Duration) {
    for _ in 0..warmup {
        a();
        b();
    }
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        start.elapsed()
    };
    let (mut ta, mut tb): (Vec<Duration>, Vec<Duration>) = (0..repeats)
        .map(|_| {
            let ta = time(&mut a);
            b();
            (ta, time(&mut b))
        })
        .unzip();
    ta.sort();
    tb.sort();
    (ta[repeats / 2], tb[repeats / 2])
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
        println!("reference: 1024^3 sgemm (matrixmultiply) on the same threads, timed alternately with each shape\n");
        println!("| shape | T | B | I | H | L | ms | GFLOP/s | sgemm GFLOP/s | % sgemm |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    let mut reference = Sgemm::new();
    for shape in shapes {
        let mut case = BenchCase::new(shape);
        let (ts, t) = pool.install(|| {
            paired_medians(
                2,
                args.repeats,
                || reference.run(par),
                || {
                    std::hint::black_box(case.forward_backward(par));
                },
            )
        });
        let sgemm = Sgemm::FLOPS / ts.as_secs_f64() / 1e9;
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
