//! gradlab-experiments: models, tasks, training, diagnostics, sweeps, storage and reports.
//!
//! - [`config`]: the run configuration (DESIGN.md keys), parsing and validation;
//! - [`tasks`]: the seeded task generators and their metrics;
//! - [`model`]: the recurrent stack with its output head and loss;
//! - [`init`]: parameter initialisations; [`optim`]: optimisers and learning-rate schedules;
//! - [`train`]: TBPTT training with clipping, evaluation, diagnostics and divergence;
//! - [`sweep`]: sweep specs, expansion, the parallel resumable runner and shards;
//! - [`store`]: Parquet results written atomically, read back and compacted; [`checkpoint`]: safetensors checkpoints;
//! - [`report`]: tables (Markdown, LaTeX, CSV) aggregated with polars; [`plot`]: its charts;
//! - [`sample`]: text from charlm/hello checkpoints; [`gradcheck`]: the `gradlab grad` tool.
//!
//! Built on [`gradlab_kernels`]; the only crate with `unsafe` is that one.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod gradcheck;
pub mod init;
pub mod model;
pub mod optim;
pub mod plot;
pub mod report;
pub mod sample;
pub mod store;
pub mod sweep;
pub mod tasks;
pub mod train;

pub use gradlab_kernels as kernels;
