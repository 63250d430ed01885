//! gradlab-kernels: the compute of gradlab, on slices, with no I/O.
//!
//! - [`isa`]: the instruction set the kernels run on (AVX-512, AVX2 + FMA or portable), chosen
//!   once at run time, and the dispatcher into each kernel's copy for it; [`vec`]: the 16-lane
//!   vector of each, on which every kernel is written;
//! - [`simd`]: `exp`, `tanh`, `sigmoid`, `axpy`, `scale`, `dot` on 16-lane vectors, each with a
//!   scalar twin;
//! - [`gates`]: the element-wise RNN/LSTM/GRU gate math of one step, forward and backward;
//! - [`norm`]: overflow-safe global L2 norm, clipping by global norm and by value;
//! - [`gemm`]: `matrixmultiply` for large products and a packed microkernel for the recurrent one;
//! - [`rnn`]: multi-layer vanilla RNN, LSTM and GRU forward and backward (BPTT, truncated or full),
//!   with gradient-flow capture;
//! - [`omega`]: Pascanu et al. (2013)'s vanishing-gradient regulariser Ω of a vanilla RNN and its
//!   gradient, from what backward leaves in the workspace;
//! - [`bench`]: the benchmark shapes of DESIGN.md and ready-to-time cases;
//! - [`rng`]: SplitMix64, the seeded generator of benchmark, test and task data;
//! - [`reference`]: a plain scalar implementation, generic over f32/f64, that the tests check the
//!   kernels and finite differences against;
//! - [`missing_cpu_features`]: the instruction sets this build was compiled for that the CPU it
//!   runs on lacks, for `main` to check before any kernel runs.
//!
//! This is the only crate of the workspace with `unsafe`; every block says why it is sound
//! (enforced by clippy).

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod bench;
mod cpu;
pub mod gates;
pub mod gemm;
pub mod isa;
pub mod norm;
pub mod omega;
mod par;
pub mod reference;
pub mod rng;
pub mod rnn;
pub mod simd;
pub mod vec;

pub use cpu::{compiled_features, missing_cpu_features, portable_build_hint};
pub use gates::Activation;
pub use par::Par;
pub use rnn::{Cell, StackShape};

/// The instruction set the kernels run on, with how they use it, for the record of every
/// result, e.g. `avx512 (avx512f+fma, f32x16 in zmm, 6x64 tiles)`: chosen at run time
/// ([`isa::isa`]).
pub fn isa() -> &'static str {
    isa::isa().describe()
}

/// The SIMD features of the CPU this process runs on (detected at run time), for the record
/// of where results were computed; [`isa`] is what the kernels use.
pub fn cpu_features() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut found = Vec::new();
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if std::arch::is_x86_feature_detected!($f) {
                    found.push($f);
                }
            )*};
        }
        probe!("sse2", "sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl");
        found
    }
    #[cfg(target_arch = "aarch64")]
    {
        vec!["neon"]
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Vec::new()
    }
}
