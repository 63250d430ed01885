//! Sampling text from a `charlm` or `hello` checkpoint, one character at a time, with the
//! state carried: the stack's forward step and the head's [`logits`], as in training. How the
//! next symbol is chosen ([`choose`]) is shared with the encoder-decoder's decoding
//! ([`super::seq2seq`]).

use std::io::Write;

use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::rnn::{self, Workspace};
use gradlab_kernels::Par;

use super::checkpoint::Checkpoint;
use super::head::logits;

/// How the next character is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decoding {
    /// The most likely character.
    Argmax,
    /// A draw from softmax(logits / temperature).
    Temperature(f32),
}

/// Why sampling cannot start.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SampleError {
    #[error(
        "the checkpoint has no vocabulary: it needs a character model, trained on charlm or hello"
    )]
    NoVocab,
    #[error("the checkpoint's vocabulary has {vocab} characters but the model reads {input} and predicts {output}")]
    Mismatch {
        vocab: usize,
        input: usize,
        output: usize,
    },
    #[error("'{0}' in the prime text is not in the model's vocabulary")]
    UnknownChar(char),
    #[error("the prime text is empty: give at least one character to start from")]
    EmptyPrime,
    #[error("temperature must be a finite number > 0, got {0}")]
    Temperature(f32),
    #[error("the checkpoint has no gradlab.config metadata: decoding a seq2seq model needs its task (symbols and lengths)")]
    NoConfig,
    #[error("the checkpoint's task {0} is not a seq2seq task (reverse, addition, copy-seq)")]
    NotSeq2seq(String),
    #[error("the checkpoint's model does not fit its task {task} ({shapes})")]
    TaskMismatch { task: String, shapes: String },
    #[error(transparent)]
    Source(#[from] crate::task::seq2seq::SourceError),
    #[error("cannot write the sample: {0}")]
    Write(String),
}

/// Refuses a temperature that is not finite and positive.
pub fn check_decoding(decoding: Decoding) -> Result<(), SampleError> {
    match decoding {
        Decoding::Temperature(t) if !(t.is_finite() && t > 0.0) => Err(SampleError::Temperature(t)),
        _ => Ok(()),
    }
}

/// The class chosen from logits `z`: the most likely (the first of equals), or a draw from
/// softmax(z / T).
pub fn choose(z: &[f32], decoding: Decoding, rng: &mut SplitMix64) -> usize {
    match decoding {
        Decoding::Argmax => (0..z.len()).fold(0, |best, o| if z[o] > z[best] { o } else { best }),
        Decoding::Temperature(t) => {
            let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let p: Vec<f64> = z
                .iter()
                .map(|&zi| (f64::from(zi - max) / f64::from(t)).exp())
                .collect();
            let mut u = rng.uniform(0.0, p.iter().sum());
            p.iter()
                .position(|&pi| {
                    u -= pi;
                    u < 0.0
                })
                .unwrap_or(z.len() - 1)
        }
    }
}

/// The vocabulary of a character model (charlm, hello): the characters the one-hot inputs
/// and the head's classes stand for, in order. Refuses a checkpoint without one, or whose
/// model reads or predicts another number of classes.
pub fn text_vocab(ck: &Checkpoint) -> Result<&[char], SampleError> {
    let vocab = ck.vocab.as_deref().ok_or(SampleError::NoVocab)?;
    let m = &ck.model;
    if m.stack.input != vocab.len() || m.output != vocab.len() {
        return Err(SampleError::Mismatch {
            vocab: vocab.len(),
            input: m.stack.input,
            output: m.output,
        });
    }
    Ok(vocab)
}

/// Writes `prime`, then `len` sampled characters to `out`, each written and flushed as soon as
/// it is chosen: a long sample streams, and a closed output ends it.
pub fn sample(
    ck: &Checkpoint,
    prime: &str,
    len: usize,
    decoding: Decoding,
    seed: u64,
    out: &mut dyn Write,
) -> Result<(), SampleError> {
    let vocab = text_vocab(ck)?;
    let m = &ck.model;
    let v = vocab.len();
    check_decoding(decoding)?;
    let ids: Vec<usize> = prime
        .chars()
        .map(|c| {
            vocab
                .iter()
                .position(|&x| x == c)
                .ok_or(SampleError::UnknownChar(c))
        })
        .collect::<Result<_, _>>()?;
    let (&first, rest) = ids.split_first().ok_or(SampleError::EmptyPrime)?;
    let s = m.stack;
    let mut ws = Workspace::new(s, 1, 1);
    let lh = s.layers * s.hidden;
    let (mut h, mut c) = (
        vec![0.0f32; lh],
        vec![0.0f32; if s.cell.has_cell_state() { lh } else { 0 }],
    );
    let mut rng = SplitMix64(seed);
    let write_err = |e: std::io::Error| SampleError::Write(e.to_string());
    out.write_all(prime.as_bytes()).map_err(write_err)?;
    let mut x = vec![0.0f32; v];
    let mut z = Vec::with_capacity(v);
    // One character in, the logits of the next out (f32, as training computes them).
    let mut feed = |id: usize, z: &mut Vec<f32>| {
        x.fill(0.0);
        x[id] = 1.0;
        let cs = s.cell.has_cell_state().then_some(&c[..]);
        rnn::forward(m.stack_params(), &x, Some(&h), cs, &mut ws, Par::Seq);
        ws.state_into(1, &mut h, &mut c);
        logits(m, ws.output(), 1, z, Par::Seq);
    };
    feed(first, &mut z);
    for &id in rest {
        feed(id, &mut z);
    }
    let mut utf8 = [0u8; 4];
    for _ in 0..len {
        let next = choose(&z, decoding, &mut rng);
        out.write_all(vocab[next].encode_utf8(&mut utf8).as_bytes())
            .and_then(|()| out.flush())
            .map_err(write_err)?;
        feed(next, &mut z);
    }
    Ok(())
}
