//! The encoder-decoder at inference: the encoder's forward over a source gives the final
//! (h, c) of every layer, which starts the decoder; the decoder then runs one step at a time
//! from the start symbol, each chosen symbol (the most likely, or a draw at a temperature) fed
//! back as its next input, through the same head as training. The evaluation's exact match and
//! `gradlab sample --input` decode with it; there is no teacher forcing here.
//!
//! Conventions (`task::seq2seq`): the decoder's last input is the start symbol and the head's
//! last class the end symbol; target symbol k is decoder input k and class k.

use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::rnn::{self, Workspace};
use gradlab_kernels::{Cell, Par};

use super::checkpoint::Checkpoint;
use super::head::logits;
use super::sample::{check_decoding, choose, Decoding, SampleError};
use super::Model;
use crate::task::{seq2seq, Task};

/// Runs the encoder of `model` over `source` (`[T][B][I_src]`, the workspace's T and B) from
/// the zero state and copies its final state into `h` and `c` (`[L][B][H]`; `c` empty unless
/// LSTM).
///
/// # Panics
/// If `model` has no encoder.
pub fn encode(
    model: &Model,
    ws: &mut Workspace,
    source: &[f32],
    h: &mut [f32],
    c: &mut [f32],
    par: Par,
) {
    let params = model
        .encoder_params()
        .expect("encode: the model has no encoder");
    rnn::forward(params, source, None, None, ws, par);
    ws.state_into(ws.steps(), h, c);
}

/// The buffers of decoding batches of sequences, made for the first batch and reused.
#[derive(Debug, Default)]
pub struct Seq2SeqDecoder {
    encoder: Option<Workspace>,
    step: Option<Workspace>,
    /// The decoder's state, `[L][B][H]`.
    h: Vec<f32>,
    c: Vec<f32>,
    /// The decoder's input of the next step, `[B][I]`.
    x: Vec<f32>,
    logits: Vec<f32>,
    /// The chosen classes, `[T][B]`.
    ids: Vec<u32>,
    done: Vec<bool>,
}

impl Seq2SeqDecoder {
    /// Encodes the `b` sources of `source` (`[T_src][B][I_src]`) and decodes `steps` symbols of
    /// each (see [`Seq2SeqDecoder::decode_from`]).
    pub fn decode(
        &mut self,
        model: &Model,
        (source, t_src, b): (&[f32], usize, usize),
        steps: usize,
        decoding: Decoding,
        rng: &mut SplitMix64,
        par: Par,
    ) -> &[u32] {
        let enc = model.encoder.expect("decode: the model has no encoder");
        self.resize_state(model, b);
        let ws = self
            .encoder
            .get_or_insert_with(|| Workspace::new(enc, t_src, b));
        ws.resize(t_src, b);
        encode(model, ws, source, &mut self.h, &mut self.c, par);
        self.run(model, b, steps, decoding, rng, par)
    }

    /// Decodes `steps` symbols of each sequence from the decoder's initial state `(h, c)`
    /// (`[L][B][H]`, the encoder's final state): returns the chosen classes `[steps][B]`. A
    /// sequence is over at its end symbol: its later entries are the end symbol, and decoding
    /// stops when every sequence is over.
    pub fn decode_from(
        &mut self,
        model: &Model,
        (h, c): (&[f32], &[f32]),
        steps: usize,
        decoding: Decoding,
        rng: &mut SplitMix64,
        par: Par,
    ) -> &[u32] {
        let b = h.len() / (model.stack.layers * model.stack.hidden);
        self.resize_state(model, b);
        self.h.copy_from_slice(h);
        self.c.copy_from_slice(c);
        self.run(model, b, steps, decoding, rng, par)
    }

    fn resize_state(&mut self, model: &Model, b: usize) {
        let s = model.stack;
        let lbh = s.layers * b * s.hidden;
        self.h.resize(lbh, 0.0);
        self.c
            .resize(if s.cell == Cell::Lstm { lbh } else { 0 }, 0.0);
    }

    /// Decodes from the state in `self.h` and `self.c`.
    fn run(
        &mut self,
        model: &Model,
        b: usize,
        steps: usize,
        decoding: Decoding,
        rng: &mut SplitMix64,
        par: Par,
    ) -> &[u32] {
        let s = model.stack;
        let (i, o) = (s.input, model.output);
        let (start, end) = (i - 1, o - 1);
        let step_ws = self.step.get_or_insert_with(|| Workspace::new(s, 1, b));
        step_ws.resize(1, b);
        self.x.clear();
        self.x.resize(b * i, 0.0);
        for row in 0..b {
            self.x[row * i + start] = 1.0;
        }
        self.ids.clear();
        self.ids.resize(steps * b, end as u32);
        self.done.clear();
        self.done.resize(b, false);
        for t in 0..steps {
            let c = (s.cell == Cell::Lstm).then_some(&self.c[..]);
            rnn::forward(
                model.stack_params(),
                &self.x,
                Some(&self.h),
                c,
                step_ws,
                par,
            );
            step_ws.state_into(1, &mut self.h, &mut self.c);
            logits(model, step_ws.output(), b, &mut self.logits, par);
            self.x.fill(0.0);
            for row in 0..b {
                if self.done[row] {
                    continue;
                }
                let next = choose(&self.logits[row * o..][..o], decoding, rng);
                self.ids[t * b + row] = next as u32;
                if next == end {
                    self.done[row] = true;
                } else {
                    self.x[row * i + next] = 1.0;
                }
            }
            if self.done.iter().all(|&d| d) {
                break;
            }
        }
        &self.ids
    }
}

/// What `gradlab sample --input` decodes from a seq2seq checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The source as the model read it (addition's final `=` added).
    pub source: String,
    /// The decoded target, without the end symbol.
    pub target: String,
    /// Whether the decoder emitted the end symbol within the length limit.
    pub ended: bool,
}

/// Decodes the target of `input` with a seq2seq checkpoint, at most `max_len` symbols (default:
/// the task's longest target and its end symbol), greedily or at a temperature (`seed` seeds
/// the draws). The task, its length and `reverse_source` come from the checkpoint's
/// configuration.
pub fn sample_target(
    ck: &Checkpoint,
    input: &str,
    max_len: Option<usize>,
    decoding: Decoding,
    seed: u64,
) -> Result<Decoded, SampleError> {
    check_decoding(decoding)?;
    let cfg = ck.config.as_ref().ok_or(SampleError::NoConfig)?;
    if !cfg.task.is_seq2seq() {
        return Err(SampleError::NotSeq2seq(cfg.task.to_string()));
    }
    let mut task = Task::new(cfg.task, cfg.seq_len, None).expect("a seq2seq task reads no file");
    task.reverse_source = cfg.reverse_source;
    let m = &ck.model;
    let (t_src, i_src) = task.source_shape();
    let fits = m.encoder.is_some_and(|e| e.input == i_src)
        && m.stack.input == task.input_size()
        && m.output == task.output_size();
    if !fits {
        return Err(SampleError::TaskMismatch {
            task: format!("{} with seq_len {}", cfg.task, cfg.seq_len),
            shapes: format!(
                "encoder input {}, decoder input {}, output {}",
                i_src,
                task.input_size(),
                task.output_size()
            ),
        });
    }
    let source = seq2seq::parse_source(cfg.task, cfg.seq_len, input)?;
    let batch = seq2seq::encode(
        cfg.task,
        cfg.seq_len,
        cfg.reverse_source,
        &[(source.clone(), String::new())],
    );
    let x = &batch
        .source
        .as_ref()
        .expect("a seq2seq batch has a source")
        .x;
    let steps = max_len.unwrap_or_else(|| task.time_steps());
    let mut rng = SplitMix64(seed);
    let mut decoder = Seq2SeqDecoder::default();
    let ids = decoder.decode(m, (x, t_src, 1), steps, decoding, &mut rng, Par::Seq);
    let (_, symbols) = task.seq2seq_symbols().expect("a seq2seq task");
    let symbols: Vec<char> = symbols.chars().collect();
    let end = symbols.len() as u32;
    let target = ids
        .iter()
        .take_while(|&&id| id != end)
        .map(|&id| symbols[id as usize])
        .collect();
    Ok(Decoded {
        source,
        target,
        ended: ids.contains(&end),
    })
}
