//! `gradlab sample`, `gradlab grad` and `gradlab activations`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use gradlab_experiments::config::{CellKind, Nonlinearity};
use gradlab_experiments::model::sample::{sample, Decoding};
use gradlab_experiments::model::seq2seq::sample_target;
use gradlab_experiments::model::{checkpoint, grad, kernel_cell};
use gradlab_experiments::report::activations;
use gradlab_experiments::task::seq2seq::example;
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::{Par, StackShape};

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A checkpoint of a charlm, hello or seq2seq (reverse, addition, copy-seq) run.
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// Text to continue (charlm, hello) [default: the first character of the vocabulary].
    #[arg(long, value_name = "TEXT")]
    prime: Option<String>,
    /// The source whose target a seq2seq model decodes, e.g. "123+4567=" (addition).
    #[arg(long, value_name = "SOURCE", conflicts_with = "prime")]
    input: Option<String>,
    /// Sample from softmax(logits / T) [default: 1 for text; seq2seq decodes greedily unless
    /// given].
    #[arg(
        long,
        value_name = "T",
        conflicts_with = "argmax",
        allow_negative_numbers = true
    )]
    temperature: Option<f32>,
    /// Always take the most likely character (seq2seq: what it does without --temperature).
    #[arg(long)]
    argmax: bool,
    /// Characters to generate [default: 200]; seq2seq: the most symbols to decode [default: the
    /// task's longest target and its end symbol].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    len: Option<usize>,
    /// Seed of the sampling.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
}

pub fn sample_cmd(a: SampleArgs) -> Result<()> {
    let ck = checkpoint::load(&a.checkpoint)?;
    let path = a.checkpoint.display();
    if ck.model.encoder.is_some() {
        anyhow::ensure!(
            a.prime.is_none(),
            "--prime continues a text, but {path} is a seq2seq checkpoint: give the source to \
             decode with --input SOURCE"
        );
        let Some(input) = &a.input else {
            let example = ck
                .config
                .as_ref()
                .filter(|c| c.task.is_seq2seq())
                .map(|c| {
                    let (source, _) = example(c.task, c.seq_len, &mut SplitMix64(a.seed));
                    format!(
                        ", e.g. --input '{source}' ({} with seq_len {})",
                        c.task, c.seq_len
                    )
                })
                .unwrap_or_default();
            anyhow::bail!(
                "{path} is a seq2seq checkpoint: give the source to decode with --input \
                 SOURCE{example}"
            );
        };
        let decoding = a
            .temperature
            .map_or(Decoding::Argmax, Decoding::Temperature);
        let out = sample_target(&ck, input, a.len, decoding, a.seed)
            .with_context(|| format!("decoding with {path}"))?;
        println!("{}", out.target);
        if !out.ended {
            eprintln!(
                "note: the decoder emitted no end symbol within {} symbols (--len)",
                out.target.chars().count()
            );
        }
        return Ok(());
    }
    anyhow::ensure!(
        a.input.is_none(),
        "--input is the source of a seq2seq model, but {path} is a one-stack model: continue a \
         text with --prime TEXT"
    );
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
        Decoding::Temperature(a.temperature.unwrap_or(1.0))
    };
    let mut stdout = std::io::stdout().lock();
    sample(
        &ck,
        &prime,
        a.len.unwrap_or(200),
        decoding,
        a.seed,
        &mut stdout,
    )
    .with_context(|| format!("sampling from {path}"))?;
    writeln!(stdout).context("cannot write the sample")?;
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

#[derive(Args, Debug)]
pub struct ActivationsArgs {
    /// A checkpoint of a charlm or hello run (a character model).
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// The text to run the model over (UTF-8, every character in the model's vocabulary).
    #[arg(long, value_name = "FILE")]
    text: PathBuf,
    /// Characters from the start of the text to run, write and rank [default: all].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    chars: Option<usize>,
    /// Only this layer, from 0 [default: every layer].
    #[arg(long, value_name = "L", allow_negative_numbers = true)]
    layer: Option<usize>,
    /// Units per feature in the printed table and on the page.
    #[arg(
        long,
        value_name = "K",
        default_value_t = 3,
        allow_negative_numbers = true
    )]
    top: usize,
    /// Characters the page shows, from the start.
    #[arg(
        long = "page-chars",
        value_name = "N",
        default_value_t = 10_000,
        allow_negative_numbers = true
    )]
    page_chars: usize,
    /// Folder for activations.parquet, ranking.csv and activations.html (made if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn activations_cmd(a: ActivationsArgs) -> Result<()> {
    for (flag, value) in [
        ("--chars", a.chars),
        ("--top", Some(a.top)),
        ("--page-chars", Some(a.page_chars)),
    ] {
        anyhow::ensure!(value != Some(0), "{flag} 0: give at least 1");
    }
    let ck = checkpoint::load(&a.checkpoint)?;
    let text = std::fs::read(&a.text)
        .with_context(|| format!("cannot read the text file {}", a.text.display()))?;
    let text = String::from_utf8(text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not UTF-8 text (invalid byte at offset {}); give a UTF-8 text file",
            a.text.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot make the output folder {}", a.out.display()))?;
    let options = activations::Options {
        chars: a.chars,
        layer: a.layer,
        top: a.top,
        page_chars: a.page_chars,
    };
    let found =
        activations::activations(&ck, &text, &a.text.display().to_string(), &options, &a.out)
            .with_context(|| format!("activations of {}", a.checkpoint.display()))?;
    println!(
        "{} characters; units ranked by Pearson r with each feature (top {}):\n",
        found.chars, a.top
    );
    println!("| feature | rank | layer | unit | state | r |\n|---|---:|---:|---:|---|---:|");
    for r in found.ranking.iter().filter(|r| r.rank <= a.top) {
        println!("| {} |", r.cells(|r| format!("{r:+.3}")).join(" | "));
    }
    if !found.constant.is_empty() {
        println!(
            "\nnot ranked, constant over the text: {}",
            found.constant.join(", ")
        );
    }
    println!();
    for f in &found.files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
