//! `gradlab data`: the batches a run trains on, its evaluation data and its initial parameters
//! as one safetensors file, so that another framework trains on the same sequences.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use gradlab_experiments::memory::Bytes;
use gradlab_experiments::sweep::run_id;
use gradlab_experiments::train::data::{export, DataError};

use crate::run::ConfigArgs;

/// Arguments of `gradlab data`.
#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(flatten)]
    cfg: ConfigArgs,
    /// Training batches to write, from the first [default: the run's steps]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    batches: Option<u64>,
    /// The file to write (safetensors), e.g. data.safetensors
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(args: DataArgs) -> Result<()> {
    let cfg = args.cfg.load()?;
    let (batches, flag) = match args.batches {
        Some(n) => (
            usize::try_from(n).unwrap_or(usize::MAX),
            format!("--batches {n}"),
        ),
        None => (
            cfg.steps,
            format!("--batches (default: steps = {})", cfg.steps),
        ),
    };
    let written = export(&cfg, batches, &args.out).map_err(|e| match e {
        e @ DataError::TooLarge { .. } => anyhow::Error::new(e).context(flag),
        e => anyhow::Error::new(e),
    })?;
    let (t, b, i) = written.shape;
    let (w, eb) = written.eval_shape;
    println!(
        "wrote {} ({}): {} training batches of {t} steps x {b} sequences x {i} inputs, \
         evaluation data of {w} x {eb} sequences, initial parameters; run {}",
        args.out.display(),
        Bytes(written.bytes as f64),
        written.batches,
        run_id(&cfg)
    );
    Ok(())
}
