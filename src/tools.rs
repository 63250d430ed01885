//! `gradlab sample` and `gradlab grad`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use gradlab_experiments::config::{CellKind, Nonlinearity};
use gradlab_experiments::model::sample::{sample, Decoding};
use gradlab_experiments::model::{checkpoint, grad, kernel_cell};
use gradlab_kernels::{Par, StackShape};

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A checkpoint of a charlm or hello run.
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// Text to start from [default: the first character of the vocabulary].
    #[arg(long, value_name = "TEXT")]
    prime: Option<String>,
    /// Sample from softmax(logits / T).
    #[arg(
        long,
        value_name = "T",
        conflicts_with = "argmax",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    temperature: f32,
    /// Always take the most likely character.
    #[arg(long)]
    argmax: bool,
    /// Characters to generate.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 200,
        allow_negative_numbers = true
    )]
    len: usize,
    /// Seed of the sampling.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
}

pub fn sample_cmd(a: SampleArgs) -> Result<()> {
    let ck = checkpoint::load(&a.checkpoint)?;
    let prime = match a.prime {
        Some(p) => p,
        None => ck
            .vocab
            .as_ref()
            .and_then(|v| v.first())
            .map(|c| c.to_string())
            .unwrap_or_default(),
    };
    let decoding = if a.argmax {
        Decoding::Argmax
    } else {
        Decoding::Temperature(a.temperature)
    };
    let text = sample(&ck, &prime, a.len, decoding, a.seed)
        .with_context(|| format!("sampling from {}", a.checkpoint.display()))?;
    println!("{text}");
    Ok(())
}

#[derive(Args, Debug)]
pub struct GradArgs {
    /// Recurrent cell: rnn | lstm | gru (gates in PyTorch's order: LSTM i, f, g, o; GRU r, z, n).
    #[arg(long, value_name = "CELL")]
    cell: CellKind,
    /// Stacked layers.
    #[arg(long, value_name = "L", allow_negative_numbers = true)]
    layers: usize,
    /// Width of an input vector.
    #[arg(long = "input-size", value_name = "I", allow_negative_numbers = true)]
    input_size: usize,
    /// Hidden units per layer.
    #[arg(long, value_name = "H", allow_negative_numbers = true)]
    hidden: usize,
    /// Non-linearity of an RNN: tanh | relu.
    #[arg(long, value_name = "NAME", default_value = "tanh")]
    nonlinearity: Nonlinearity,
    /// PyTorch-named weights (weight_ih_l0, ...), safetensors.
    #[arg(long, value_name = "W.safetensors")]
    weights: PathBuf,
    /// `input` (T,B,I), `grad_output` (T,B,H); optionally `h0`, `c0`, `grad_h_n`, `grad_c_n` (L,B,H).
    #[arg(long, value_name = "X.safetensors")]
    input: PathBuf,
    /// Where to write `output`, `h_n`, `c_n` and the `grad.*` tensors.
    #[arg(long, value_name = "G.safetensors")]
    out: PathBuf,
    /// Threads [default: every core].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

pub fn grad_cmd(a: GradArgs) -> Result<()> {
    anyhow::ensure!(
        a.layers > 0 && a.input_size > 0 && a.hidden > 0,
        "--layers, --input-size and --hidden must be at least 1"
    );
    let shape = StackShape {
        cell: kernel_cell(a.cell, a.nonlinearity),
        input: a.input_size,
        hidden: a.hidden,
        layers: a.layers,
    };
    crate::with_threads(a.threads, "--threads", |n| {
        grad::grad(shape, &a.weights, &a.input, &a.out, Par::rayon(n))
    })??;
    println!("wrote {}", a.out.display());
    Ok(())
}
