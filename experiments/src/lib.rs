//! gradlab-experiments: everything between the kernels and the command line, one module per
//! stage of the data flow (DESIGN.md "Layout"):
//!
//! [`config`] → [`task`] (seeded generators, targets, metrics, success criteria) → [`model`]
//! (stack and head, initialisation, checkpoints, sampling) → [`train`] (the loop, the TBPTT
//! engine, optimisers, diagnostics, the records it emits) → [`sweep`] (spec, expansion and run
//! identity, runner, status) → [`store`] (Parquet writing, reading, compaction) → [`report`]
//! (aggregation, tables, plots). [`fs`], at the bottom, writes every file atomically;
//! [`memory`] estimates what a run will hold, so that one too large is refused before it starts.
//!
//! Built on [`gradlab_kernels`]; the only crate with `unsafe` is that one.

#![forbid(unsafe_code)]

pub mod config;
pub mod fs;
pub mod interrupt;
pub mod memory;
pub mod model;
pub mod report;
pub mod store;
pub mod sweep;
pub mod task;
pub mod train;

pub use gradlab_kernels as kernels;

/// gradlab's version, as recorded with every result.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit this build was made from ("unknown" outside a checkout).
pub const GIT_COMMIT: &str = env!("GRADLAB_GIT_COMMIT");
/// The compiler that made this build.
pub const RUSTC: &str = env!("GRADLAB_RUSTC");
