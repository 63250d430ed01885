//! gradlab-experiments: models, tasks, training, diagnostics, sweeps, storage and reports.
//!
//! Built on [`gradlab_kernels`]. The training engine, sweeps and reports are the subject of the
//! next issues; until then this crate only fixes its place in the workspace.

#![forbid(unsafe_code)]

pub use gradlab_kernels as kernels;
