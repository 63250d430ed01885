//! Criterion benches: every kernel against its scalar twin, and the whole-window RNN/LSTM/GRU
//! forward and forward+backward against the same run's 1024³ sgemm.
//!
//! Throughput is declared in FLOPs (`Elements`), so criterion's "elem/s" reads as FLOP/s.
//! `cargo bench -- activations`, `-- rnn-small`, `-- sgemm`, `-- train-step` select
//! groups.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gradlab_kernels::bench::{BenchCase, SplitMix64, SHAPES};
use gradlab_kernels::Par;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

mod activations {
    use super::*;
    use gradlab_kernels::simd;

    type InPlace = fn(&mut [f32]);

    pub fn bench(c: &mut Criterion) {
        let n = 4096;
        let x = SplitMix64(3).vec_f32(n, 8.0);
        let kernels: [(&str, InPlace, InPlace); 3] = [
            ("exp", simd::exp_inplace, simd::exp_inplace_scalar),
            ("tanh", simd::tanh_inplace, simd::tanh_inplace_scalar),
            (
                "sigmoid",
                simd::sigmoid_inplace,
                simd::sigmoid_inplace_scalar,
            ),
        ];
        for (name, vector, scalar) in kernels {
            let mut g = c.benchmark_group(format!("activations/{name}"));
            g.throughput(Throughput::Elements(n as u64));
            let mut buf = x.clone();
            g.bench_function(BenchmarkId::new("simd", n), |b| {
                b.iter(|| {
                    buf.copy_from_slice(&x);
                    vector(black_box(&mut buf));
                })
            });
            g.bench_function(BenchmarkId::new("scalar", n), |b| {
                b.iter(|| {
                    buf.copy_from_slice(&x);
                    scalar(black_box(&mut buf));
                })
            });
            g.finish();
        }
    }
}

mod cells {
    use super::*;

    /// The scalar twin runs only where one iteration takes well under a second.
    const SCALAR_MAX_FLOPS: f64 = 0.5e9;

    pub fn bench(c: &mut Criterion) {
        for shape in SHAPES.iter().filter(|s| s.default) {
            let mut case = BenchCase::new(shape);
            let large = shape.forward_flops() > 5e9;
            for (pass, flops) in [
                ("fwd", shape.forward_flops()),
                ("fwd+bwd", shape.train_flops()),
            ] {
                let mut g = c.benchmark_group(format!("{pass}/{}", shape.name));
                g.throughput(Throughput::Elements(flops as u64));
                if large {
                    g.sample_size(10);
                }
                for (label, par) in [("simd-seq", Par::Seq), ("simd-par", Par::rayon(cores()))] {
                    g.bench_function(BenchmarkId::new(label, shape.name), |b| {
                        b.iter(|| match pass {
                            "fwd" => case.forward(par),
                            _ => {
                                black_box(case.forward_backward(par));
                            }
                        })
                    });
                }
                if shape.forward_flops() <= SCALAR_MAX_FLOPS {
                    g.sample_size(10);
                    g.bench_function(BenchmarkId::new("scalar", shape.name), |b| {
                        b.iter(|| match pass {
                            "fwd" => black_box(case.forward_scalar()),
                            _ => black_box(case.forward_backward_scalar()),
                        })
                    });
                }
                g.finish();
            }
        }
    }
}

mod sgemm {
    use super::*;
    use gradlab_kernels::gemm::{sgemm, GemmShape, Mat, MatMut};

    /// The in-run reference: a 1024³ matrixmultiply sgemm, one thread and all cores.
    pub fn bench(c: &mut Criterion) {
        let n = 1024;
        let mut rng = SplitMix64(1);
        let (a, b) = (rng.vec_f32(n * n, 1.0), rng.vec_f32(n * n, 1.0));
        let mut out = vec![0.0f32; n * n];
        let mut g = c.benchmark_group("sgemm");
        g.throughput(Throughput::Elements(2 * (n * n * n) as u64));
        g.sample_size(20);
        let dims = GemmShape { m: n, k: n, n };
        for (label, par) in [("seq", Par::Seq), ("par", Par::rayon(cores()))] {
            g.bench_function(BenchmarkId::new(label, "1024^3"), |bch| {
                bch.iter(|| {
                    let c = MatMut::rows(black_box(&mut out), n);
                    sgemm(dims, Mat::rows(&a, n), Mat::rows(&b, n), 0.0, c, par)
                })
            });
        }
        g.finish();
    }
}

mod train {
    use super::*;
    use gradlab_experiments::train::bench::TRAIN_CASES;
    use gradlab_experiments::train::Trainer;

    /// The text of the char-LM case: `GRADLAB_BENCH_TEXT`, or the project's shared corpus.
    fn text() -> Option<std::path::PathBuf> {
        std::env::var_os("GRADLAB_BENCH_TEXT")
            .map(Into::into)
            .or_else(|| Some("../shared/data/tinyshakespeare.txt".into()))
            .filter(|p: &std::path::PathBuf| p.is_file())
    }

    /// One update (forward, backward, clipping, optimiser step) of each `gradlab bench
    /// --train` case on its threads; whole runs with their diagnostics and evaluations are
    /// `gradlab bench --train`'s.
    pub fn bench(c: &mut Criterion) {
        let text = text();
        for case in &TRAIN_CASES {
            let cfg = match case.run_config(text.as_deref()) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!(
                        "skipping train-step/{}: {e} (set GRADLAB_BENCH_TEXT)",
                        case.name
                    );
                    continue;
                }
            };
            let par = Par::rayon(case.threads.unwrap_or_else(cores));
            let mut trainer = Trainer::new(cfg, par).expect("the bench cases are valid");
            let mut rng = SplitMix64(7);
            let batches: Vec<_> = (0..8)
                .map(|_| trainer.task.train_batch(&mut rng, trainer.cfg.batch))
                .collect();
            let mut g = c.benchmark_group(format!("train-step/{}", case.name));
            g.throughput(Throughput::Elements(trainer.flops_per_update() as u64));
            let mut step = 0;
            g.bench_function(BenchmarkId::new("update", case.name), |b| {
                b.iter(|| {
                    let (_, grads) = trainer.loss_and_gradient(&batches[step % batches.len()]);
                    let norm = gradlab_kernels::norm::global_norm(&[grads]);
                    black_box(trainer.clip_and_update(step, norm));
                    step += 1;
                })
            });
            g.finish();
        }
    }
}

criterion_group!(
    benches,
    sgemm::bench,
    activations::bench,
    cells::bench,
    train::bench
);
criterion_main!(benches);
