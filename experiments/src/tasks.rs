//! Seeded task generators and their metrics (DESIGN.md "Tasks").
//!
//! Every task draws from [`SplitMix64`], so the same seed gives the same sequences on any
//! machine. Inputs are time-major one-hot (or real) vectors `[T][B][I]`; targets are either one
//! regression value per sequence at its last step, or a class per step with [`NO_LABEL`] where
//! no loss is taken.

use std::path::Path;

use gradlab_kernels::rng::SplitMix64;

use crate::config::{RunConfig, TaskKind};
use crate::error::TaskError;

/// "No loss at this step" in [`Targets::Classes`].
pub const NO_LABEL: u32 = u32::MAX;

/// What the model's outputs are trained against.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// One value per sequence, read at the last step (MSE), `[B]`.
    Last(Vec<f32>),
    /// A class per step and sequence (softmax cross-entropy), `[T][B]`.
    Classes(Vec<u32>),
}

/// A batch of sequences.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub steps: usize,
    pub batch: usize,
    /// `[T][B][I]`.
    pub x: Vec<f32>,
    pub targets: Targets,
}

/// The loss a task trains with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    Mse,
    CrossEntropy,
}

/// Symbols of the copy task: 8 data symbols, then blank and delimiter.
const COPY_SYMBOLS: usize = 8;
const COPY_BLANK: usize = 8;
const COPY_DELIM: usize = 9;
/// Symbols to remember in the copy task.
const COPY_LEN: usize = 10;

/// Temporal order: distractors 0..4, relevant symbols A = 4 and B = 5.
const TO_DISTRACTORS: usize = 4;
const TO_A: usize = 4;

const HELLO: &str = "hello";

/// A text split into training and validation character ids.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub vocab: Vec<char>,
    pub train: Vec<u32>,
    pub valid: Vec<u32>,
}

impl Corpus {
    /// Reads `path`, builds the sorted vocabulary, splits 95/5.
    pub fn load(path: &Path, seq_len: usize) -> Result<Self, TaskError> {
        let text = std::fs::read_to_string(path).map_err(|source| TaskError::Text {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_text(&text, seq_len).map_err(|(chars, need)| TaskError::TextTooShort {
            path: path.display().to_string(),
            chars,
            need,
            seq_len,
        })
    }

    /// A corpus from text; `Err((chars, needed))` if too short for two windows of each split.
    pub fn from_text(text: &str, seq_len: usize) -> Result<Self, (usize, usize)> {
        let chars: Vec<char> = text.chars().collect();
        let need = 40 * (seq_len + 1);
        if chars.len() < need {
            return Err((chars.len(), need));
        }
        let mut vocab = chars.clone();
        vocab.sort_unstable();
        vocab.dedup();
        let ids: Vec<u32> = chars
            .iter()
            .map(|c| vocab.binary_search(c).unwrap() as u32)
            .collect();
        let split = ids.len() * 95 / 100;
        Ok(Corpus {
            vocab,
            train: ids[..split].to_vec(),
            valid: ids[split..].to_vec(),
        })
    }

    /// The id of `c`, if it is in the vocabulary.
    pub fn id(&self, c: char) -> Option<u32> {
        self.vocab.binary_search(&c).ok().map(|i| i as u32)
    }
}

/// A task ready to produce batches.
#[derive(Clone, Debug)]
pub struct Task {
    pub kind: TaskKind,
    /// The `seq_len` of the configuration (T of the adding and temporal-order sequences, the
    /// delay of the copy task, the window of charlm).
    pub seq_len: usize,
    pub corpus: Option<Corpus>,
    /// charlm: the position of each training stream in the training text.
    streams: Vec<usize>,
}

impl Task {
    /// Sets up the task of `cfg` (reads the text of charlm).
    pub fn new(cfg: &RunConfig) -> Result<Self, TaskError> {
        let corpus = match (cfg.task, &cfg.text) {
            (TaskKind::Charlm, Some(path)) => Some(Corpus::load(path, cfg.seq_len)?),
            (TaskKind::Hello, _) => {
                Some(Corpus::from_text(&HELLO.repeat(20), 1).expect("long enough"))
            }
            _ => None,
        };
        Ok(Task {
            kind: cfg.task,
            seq_len: cfg.seq_len,
            corpus,
            streams: Vec::new(),
        })
    }

    /// Steps T of one sequence (one window for charlm).
    pub fn steps(&self) -> usize {
        match self.kind {
            TaskKind::Copy => self.seq_len + 2 * COPY_LEN,
            TaskKind::Hello => HELLO.len() - 1,
            _ => self.seq_len,
        }
    }

    /// Width of an input vector.
    pub fn input_size(&self) -> usize {
        match self.kind {
            TaskKind::Adding => 2,
            TaskKind::Copy => COPY_SYMBOLS + 2,
            TaskKind::TemporalOrder => TO_DISTRACTORS + 2,
            TaskKind::Charlm | TaskKind::Hello => self.vocab_len(),
        }
    }

    /// Width of an output vector (classes, or 1 for regression).
    pub fn output_size(&self) -> usize {
        match self.kind {
            TaskKind::Adding => 1,
            TaskKind::Copy => COPY_SYMBOLS + 1,
            TaskKind::TemporalOrder => 4,
            TaskKind::Charlm | TaskKind::Hello => self.vocab_len(),
        }
    }

    fn vocab_len(&self) -> usize {
        self.corpus.as_ref().map_or(0, |c| c.vocab.len())
    }

    /// The loss this task trains with.
    pub fn loss(&self) -> LossKind {
        match self.kind {
            TaskKind::Adding => LossKind::Mse,
            _ => LossKind::CrossEntropy,
        }
    }

    /// Whether the recurrent state carries from one training batch to the next (a text stream).
    pub fn carries_state(&self) -> bool {
        self.kind == TaskKind::Charlm
    }

    /// The next training batch of `b` sequences.
    pub fn train_batch(&mut self, rng: &mut SplitMix64, b: usize) -> Batch {
        match self.kind {
            TaskKind::Charlm => {
                let corpus = self.corpus.as_ref().expect("charlm has a corpus");
                let n = corpus.train.len();
                if self.streams.len() != b {
                    // B streams spread evenly over the text from a random start.
                    let start = rng.below(n);
                    self.streams = (0..b).map(|i| (start + i * n / b) % n).collect();
                }
                let t = self.seq_len;
                let batch = text_batch(&corpus.train, &self.streams, t, corpus.vocab.len());
                for s in &mut self.streams {
                    *s = (*s + t) % n;
                }
                batch
            }
            _ => self.fresh_batch(rng, b),
        }
    }

    /// Fresh sequences of the synthetic tasks (and the hello sequence).
    pub fn fresh_batch(&self, rng: &mut SplitMix64, b: usize) -> Batch {
        let (t, i) = (self.steps(), self.input_size());
        let mut x = vec![0.0f32; t * b * i];
        let at = |step: usize, row: usize| (step * b + row) * i;
        let targets = match self.kind {
            TaskKind::Adding => {
                let mut y = vec![0.0; b];
                for (row, y) in y.iter_mut().enumerate() {
                    let (m1, m2) = (rng.below(t / 2), t / 2 + rng.below(t - t / 2));
                    for step in 0..t {
                        let v = rng.uniform(0.0, 1.0) as f32;
                        x[at(step, row)] = v;
                        if step == m1 || step == m2 {
                            x[at(step, row) + 1] = 1.0;
                            *y += v;
                        }
                    }
                }
                Targets::Last(y)
            }
            TaskKind::Copy => {
                let mut labels = vec![COPY_BLANK as u32; t * b];
                for row in 0..b {
                    for step in 0..t {
                        let sym = if step < COPY_LEN {
                            let s = rng.below(COPY_SYMBOLS);
                            labels[(t - COPY_LEN + step) * b + row] = s as u32;
                            s
                        } else if step == t - COPY_LEN - 1 {
                            COPY_DELIM
                        } else {
                            COPY_BLANK
                        };
                        x[at(step, row) + sym] = 1.0;
                    }
                }
                Targets::Classes(labels)
            }
            TaskKind::TemporalOrder => {
                let mut labels = vec![NO_LABEL; t * b];
                let window = |lo: f64, hi: f64| {
                    (
                        (lo * t as f64) as usize,
                        ((hi * t as f64) as usize).max((lo * t as f64) as usize + 1),
                    )
                };
                let ((a0, a1), (b0, b1)) = (window(0.1, 0.2), window(0.5, 0.6));
                for row in 0..b {
                    let (p1, p2) = (a0 + rng.below(a1 - a0), b0 + rng.below(b1 - b0));
                    let (s1, s2) = (rng.below(2), rng.below(2));
                    for step in 0..t {
                        let sym = match step {
                            _ if step == p1 => TO_A + s1,
                            _ if step == p2 => TO_A + s2,
                            _ => rng.below(TO_DISTRACTORS),
                        };
                        x[at(step, row) + sym] = 1.0;
                    }
                    labels[(t - 1) * b + row] = (2 * s1 + s2) as u32;
                }
                Targets::Classes(labels)
            }
            TaskKind::Charlm => {
                unreachable!("charlm batches come from train_batch and validation_windows")
            }
            TaskKind::Hello => {
                let corpus = self.corpus.as_ref().expect("hello has a corpus");
                let ids: Vec<u32> = HELLO.chars().map(|c| corpus.id(c).unwrap_or(0)).collect();
                let streams = vec![0; b];
                return text_batch(&ids, &streams, t, corpus.vocab.len());
            }
        };
        Batch {
            steps: t,
            batch: b,
            x,
            targets,
        }
    }

    /// The validation windows of charlm: the validation text cut into `b` contiguous streams,
    /// as consecutive windows (the state carries from one to the next).
    pub fn validation_windows(&self, b: usize) -> Vec<Batch> {
        let corpus = self.corpus.as_ref().expect("charlm has a corpus");
        let t = self.seq_len;
        let per_stream = (corpus.valid.len() - 1) / b;
        let streams: Vec<usize> = (0..b).map(|i| i * per_stream).collect();
        (0..per_stream / t)
            .map(|w| {
                text_batch(
                    &corpus.valid,
                    &streams.iter().map(|s| s + w * t).collect::<Vec<_>>(),
                    t,
                    corpus.vocab.len(),
                )
            })
            .collect()
    }
}

/// One-hot windows of `t` characters from each stream position, with next-character targets.
fn text_batch(ids: &[u32], streams: &[usize], t: usize, vocab: usize) -> Batch {
    let b = streams.len();
    let n = ids.len();
    let mut x = vec![0.0f32; t * b * vocab];
    let mut labels = vec![NO_LABEL; t * b];
    for (row, &start) in streams.iter().enumerate() {
        for step in 0..t {
            let (c, next) = (ids[(start + step) % n], ids[(start + step + 1) % n]);
            x[(step * b + row) * vocab + c as usize] = 1.0;
            labels[step * b + row] = next;
        }
    }
    Batch {
        steps: t,
        batch: b,
        x,
        targets: Targets::Classes(labels),
    }
}

/// Accumulates a task's metric over evaluation batches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricAcc {
    /// Σ loss over loss terms, and their count.
    pub loss_sum: f64,
    pub loss_terms: usize,
    /// Correct predictions (classification) over scored predictions.
    pub correct: usize,
    pub scored: usize,
}

impl MetricAcc {
    /// The mean loss (MSE, or cross-entropy in nats).
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.loss_terms.max(1) as f64
    }
}

impl Task {
    /// Whether a prediction at step `step` counts towards the metric (copy: the recall steps).
    pub fn scored(&self, step: usize) -> bool {
        match self.kind {
            TaskKind::Copy => step >= self.steps() - COPY_LEN,
            _ => true,
        }
    }

    /// The task metric from accumulated evaluation: adding MSE, copy accuracy on the recalled
    /// symbols, temporal-order error rate, charlm validation bits per character, hello accuracy.
    pub fn metric(&self, acc: &MetricAcc) -> f64 {
        let accuracy = acc.correct as f64 / acc.scored.max(1) as f64;
        match self.kind {
            TaskKind::Adding => acc.loss(),
            TaskKind::Copy | TaskKind::Hello => accuracy,
            TaskKind::TemporalOrder => 1.0 - accuracy,
            TaskKind::Charlm => acc.loss() / std::f64::consts::LN_2,
        }
    }

    /// Whether the metric meets the task's success criterion (None: charlm has none).
    pub fn success(&self, metric: f64) -> Option<bool> {
        success(self.kind, metric)
    }
}

/// Whether `metric` meets the success criterion of task `kind` (None: charlm has none):
/// adding MSE < 0.01, copy accuracy >= 0.99, temporal-order error < 1%, hello all correct.
pub fn success(kind: TaskKind, metric: f64) -> Option<bool> {
    match kind {
        TaskKind::Adding => Some(metric < 0.01),
        TaskKind::Copy => Some(metric >= 0.99),
        TaskKind::TemporalOrder => Some(metric < 0.01),
        TaskKind::Hello => Some(metric == 1.0),
        TaskKind::Charlm => None,
    }
}
