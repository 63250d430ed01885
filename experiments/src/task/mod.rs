//! Tasks (DESIGN.md "Tasks"): seeded generators of batches, their targets, and how a run is
//! scored on them (metric, metric name, success criterion).
//!
//! Every task draws from [`SplitMix64`], so the same seed gives the same sequences on any
//! machine. Inputs are time-major one-hot (or real) vectors `[T][B][I]`; targets are either one
//! regression value per sequence at its last time step, or a class per time step with
//! [`NO_LABEL`] where no loss is taken. The synthetic generators are in [`synthetic`], the text
//! ones in [`text`], the sequence-to-sequence ones (a source for the encoder, a target for the
//! decoder) in [`seq2seq`].

pub mod seq2seq;
pub mod synthetic;
pub mod text;

use std::path::Path;

use gradlab_kernels::rng::SplitMix64;
use serde::{Deserialize, Serialize};

pub use text::{Corpus, TextError, VALIDATION_STREAMS};

/// The task a run trains on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    Adding,
    /// Hochreiter & Schmidhuber 1997's adding problem (their experiment 4), scored per sequence.
    #[serde(rename = "adding-1997")]
    Adding1997,
    Copy,
    TemporalOrder,
    Charlm,
    Hello,
    Reverse,
    Addition,
    CopySeq,
}

impl TaskKind {
    /// The smallest `seq_len` the task can be generated with.
    pub fn min_seq_len(self) -> usize {
        match self {
            TaskKind::TemporalOrder => 10,
            TaskKind::Adding => 2,
            // Both marks among the first T/2 pairs, the first among the first ten.
            TaskKind::Adding1997 => 20,
            _ => 1,
        }
    }

    /// Whether the task reads a text file (`text = ...`).
    pub fn reads_text(self) -> bool {
        self == TaskKind::Charlm
    }

    /// The name of the task metric, for table headers.
    pub fn metric_name(self) -> &'static str {
        match self {
            TaskKind::Adding => "MSE",
            TaskKind::Copy | TaskKind::Hello => "accuracy",
            TaskKind::TemporalOrder | TaskKind::Adding1997 => "error rate",
            TaskKind::Charlm => "bits/char",
            TaskKind::Reverse | TaskKind::Addition | TaskKind::CopySeq => "exact match",
        }
    }

    /// Whether the task maps a source to a target (the encoder-decoder's tasks).
    pub fn is_seq2seq(self) -> bool {
        matches!(
            self,
            TaskKind::Reverse | TaskKind::Addition | TaskKind::CopySeq
        )
    }

    /// The task's success criterion on its metric (None: charlm has none): adding MSE < 0.01,
    /// copy accuracy >= 0.99, temporal-order error < 1%, hello all correct, the seq2seq tasks
    /// exact match >= 0.99, adding-1997 at most 1 wrong sequence in 2,560 (Hochreiter &
    /// Schmidhuber's test: a rate below 2 in 2,560).
    pub fn criterion(self) -> Option<Criterion> {
        match self {
            TaskKind::Adding1997 => Some(Criterion::Below(2.0 / 2560.0)),
            TaskKind::Adding | TaskKind::TemporalOrder => Some(Criterion::Below(0.01)),
            TaskKind::Copy | TaskKind::Reverse | TaskKind::Addition | TaskKind::CopySeq => {
                Some(Criterion::AtLeast(0.99))
            }
            TaskKind::Hello => Some(Criterion::AtLeast(1.0)),
            TaskKind::Charlm => None,
        }
    }

    /// Whether `metric` meets the task's [`criterion`](Self::criterion) (None: the task has
    /// none). A NaN metric (a diverged run) is no success.
    pub fn success(self, metric: f64) -> Option<bool> {
        self.criterion().map(|c| c.holds(metric))
    }

    /// Whether the task metric is the evaluation loss itself (the adding problem's MSE).
    pub fn metric_is_loss(self) -> bool {
        self == TaskKind::Adding
    }

    /// Whether the task has a success criterion (charlm has none).
    pub fn has_criterion(self) -> bool {
        self.criterion().is_some()
    }

    /// The absolute error below which a regression output counts as right (adding-1997: 0.04,
    /// Hochreiter & Schmidhuber's criterion); None where the metric is not per sequence.
    pub fn abs_tolerance(self) -> Option<f32> {
        (self == TaskKind::Adding1997).then_some(0.04)
    }

    /// The loss the task trains with.
    pub fn loss(self) -> LossKind {
        match self {
            TaskKind::Adding | TaskKind::Adding1997 => LossKind::Mse,
            _ => LossKind::CrossEntropy,
        }
    }
}

/// A success criterion: the task metric below, or at least, a threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Criterion {
    Below(f64),
    AtLeast(f64),
}

impl Criterion {
    /// Whether `metric` meets the criterion (never for NaN).
    pub fn holds(self, metric: f64) -> bool {
        match self {
            Criterion::Below(t) => metric < t,
            Criterion::AtLeast(t) => metric >= t,
        }
    }

    /// The comparison, as written in the `runs` table's `success_op` column.
    pub fn op(self) -> &'static str {
        match self {
            Criterion::Below(_) => "<",
            Criterion::AtLeast(_) => ">=",
        }
    }

    pub fn threshold(self) -> f64 {
        match self {
            Criterion::Below(t) | Criterion::AtLeast(t) => t,
        }
    }
}

/// "No loss at this time step" in [`Targets::Classes`].
pub const NO_LABEL: u32 = u32::MAX;

/// What the model's outputs are trained against.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// One value per sequence, read at the last time step (MSE), `[B]`.
    Last(Vec<f32>),
    /// A class per time step and sequence (softmax cross-entropy), `[T][B]`.
    Classes(Vec<u32>),
}

impl Targets {
    /// The time steps of a `t`-step window of batch `b` whose targets carry a loss.
    pub fn loss_range(&self, t: usize, b: usize) -> std::ops::Range<usize> {
        match self {
            Targets::Last(_) => t - 1..t,
            Targets::Classes(labels) => {
                let has = |s: usize| labels[s * b..(s + 1) * b].iter().any(|&l| l != NO_LABEL);
                let first = (0..t).find(|&s| has(s)).unwrap_or(t);
                let last = (0..t).rev().find(|&s| has(s)).map_or(first, |s| s + 1);
                first..last
            }
        }
    }

    /// Loss terms of the time steps `range` of batch `b` (the mean's denominator).
    pub fn terms(&self, range: std::ops::Range<usize>, b: usize) -> usize {
        match self {
            Targets::Last(y) => y.len(),
            Targets::Classes(labels) => labels[range.start * b..range.end * b]
                .iter()
                .filter(|&&l| l != NO_LABEL)
                .count(),
        }
    }
}

/// A batch of sequences.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Time steps T of each sequence (or window).
    pub time_steps: usize,
    /// Sequences B.
    pub batch: usize,
    /// `[T][B][I]`.
    pub x: Vec<f32>,
    pub targets: Targets,
    /// The encoder's input of a seq2seq task (`x` and `targets` are then the decoder's, under
    /// teacher forcing); `None` for the other tasks.
    pub source: Option<Source>,
}

/// The source sequences of a seq2seq batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// Time steps T_src.
    pub time_steps: usize,
    /// `[T_src][B][I_src]`.
    pub x: Vec<f32>,
}

impl Batch {
    /// Loss terms of the whole batch.
    pub fn loss_terms(&self) -> usize {
        self.targets.terms(0..self.time_steps, self.batch)
    }

    /// The inputs of time steps `range`, `[len][B][I]`.
    pub fn x_range(&self, range: std::ops::Range<usize>) -> &[f32] {
        let row = self.x.len() / self.time_steps.max(1);
        &self.x[range.start * row..range.end * row]
    }
}

/// The loss a task trains with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    Mse,
    CrossEntropy,
}

/// A task ready to produce batches.
#[derive(Clone, Debug)]
pub struct Task {
    pub kind: TaskKind,
    /// The configured `seq_len` (T of the adding and temporal-order sequences, the delay of the
    /// copy task, the window of charlm).
    pub seq_len: usize,
    pub corpus: Option<Corpus>,
    /// seq2seq tasks: feed the source reversed (Sutskever et al. 2014).
    pub reverse_source: bool,
    /// charlm: the position of each training stream in the training text.
    streams: Vec<usize>,
}

impl Task {
    /// Sets up task `kind` (reads the text of charlm from `text`).
    pub fn new(kind: TaskKind, seq_len: usize, text: Option<&Path>) -> Result<Self, TextError> {
        let corpus = match (kind, text) {
            (TaskKind::Charlm, Some(path)) => Some(Corpus::load(path, seq_len)?),
            (TaskKind::Charlm, None) => return Err(TextError::Missing),
            (TaskKind::Hello, _) => Some(synthetic::hello_corpus()),
            _ => None,
        };
        Ok(Task {
            kind,
            seq_len,
            corpus,
            reverse_source: false,
            streams: Vec::new(),
        })
    }

    /// Time steps T of one sequence (one window for charlm; the decoder's T_dec for seq2seq).
    pub fn time_steps(&self) -> usize {
        match self.kind {
            TaskKind::Copy => self.seq_len + 2 * synthetic::COPY_LEN,
            TaskKind::Hello => synthetic::HELLO.len() - 1,
            k if k.is_seq2seq() => seq2seq::target_steps(k, self.seq_len),
            _ => self.seq_len,
        }
    }

    /// Width of an input vector (the decoder's for seq2seq: the target symbols and the start
    /// symbol).
    pub fn input_size(&self) -> usize {
        match self.kind {
            TaskKind::Adding | TaskKind::Adding1997 => 2,
            TaskKind::Copy => synthetic::COPY_SYMBOLS + 2,
            TaskKind::TemporalOrder => synthetic::TO_DISTRACTORS + 2,
            TaskKind::Charlm | TaskKind::Hello => self.vocab_len(),
            k => seq2seq::target_symbols(k).len() + 1,
        }
    }

    /// Width of an output vector (classes, or 1 for regression; seq2seq: the target symbols and
    /// the end symbol).
    pub fn output_size(&self) -> usize {
        match self.kind {
            TaskKind::Adding | TaskKind::Adding1997 => 1,
            TaskKind::Copy => synthetic::COPY_SYMBOLS + 1,
            TaskKind::TemporalOrder => 4,
            TaskKind::Charlm | TaskKind::Hello => self.vocab_len(),
            k => seq2seq::target_symbols(k).len() + 1,
        }
    }

    /// seq2seq: the encoder's time steps T_src and input width (0 and 0 for the other tasks).
    pub fn source_shape(&self) -> (usize, usize) {
        match self.kind {
            k if k.is_seq2seq() => (
                seq2seq::source_steps(k, self.seq_len),
                seq2seq::source_symbols(k).chars().count(),
            ),
            _ => (0, 0),
        }
    }

    /// seq2seq: the symbols of the source and of the target (None for the other tasks).
    pub fn seq2seq_symbols(&self) -> Option<(&'static str, &'static str)> {
        self.kind.is_seq2seq().then(|| {
            (
                seq2seq::source_symbols(self.kind),
                seq2seq::target_symbols(self.kind),
            )
        })
    }

    fn vocab_len(&self) -> usize {
        self.corpus.as_ref().map_or(0, |c| c.vocab.len())
    }

    /// The loss this task trains with.
    pub fn loss(&self) -> LossKind {
        self.kind.loss()
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
                corpus.next_train_windows(&mut self.streams, rng, b, self.seq_len)
            }
            _ => self.fresh_batch(rng, b),
        }
    }

    /// Updates in one epoch, one pass over the training text, of batches of `b` windows
    /// (charlm; 1 for the other tasks, whose sequences are fresh).
    pub fn updates_per_epoch(&self, b: usize) -> usize {
        match (&self.corpus, self.kind) {
            (Some(c), TaskKind::Charlm) => (c.train.len() / (b * self.seq_len)).max(1),
            _ => 1,
        }
    }

    /// charlm: where each training stream stands in the training text (empty before the first
    /// batch, and for other tasks).
    pub fn stream_positions(&self) -> &[usize] {
        &self.streams
    }

    /// Puts back what [`Task::stream_positions`] returned (a resumed run's).
    pub fn set_stream_positions(&mut self, streams: Vec<usize>) {
        self.streams = streams;
    }

    /// Fresh sequences of the synthetic tasks (and the hello sequence).
    ///
    /// # Panics
    /// For charlm, whose batches are windows of its text streams.
    pub fn fresh_batch(&self, rng: &mut SplitMix64, b: usize) -> Batch {
        let (t, i) = (self.time_steps(), self.input_size());
        match self.kind {
            TaskKind::Adding => synthetic::adding(rng, t, b),
            TaskKind::Adding1997 => synthetic::adding_1997(rng, t, b),
            TaskKind::Copy => synthetic::copy(rng, t, b, i),
            TaskKind::TemporalOrder => synthetic::temporal_order(rng, t, b, i),
            TaskKind::Hello => {
                synthetic::hello(self.corpus.as_ref().expect("hello has a corpus"), b)
            }
            TaskKind::Charlm => {
                panic!("charlm batches come from train_batch and validation_windows")
            }
            k => seq2seq::batch(k, self.seq_len, self.reverse_source, rng, b),
        }
    }

    /// The batches of one evaluation on `n` sequences, generated one at a time: `n` fresh
    /// sequences of a synthetic task in batches of `b` (the same sequences at every evaluation
    /// of a run with `seed`), the validation text of charlm as consecutive windows of
    /// [`VALIDATION_STREAMS`] streams (the state carries from one to the next), the hello
    /// sequence once.
    pub fn evaluation_batches(
        &self,
        n: usize,
        b: usize,
        seed: u64,
    ) -> Box<dyn Iterator<Item = Batch> + '_> {
        match self.kind {
            TaskKind::Charlm => {
                let corpus = self.corpus.as_ref().expect("charlm has a corpus");
                Box::new(corpus.validation_windows(VALIDATION_STREAMS, self.seq_len))
            }
            TaskKind::Hello => Box::new(std::iter::once(self.fresh_batch(&mut SplitMix64(0), 1))),
            _ => {
                let mut rng = SplitMix64(seed ^ EVAL_SEED);
                Box::new(
                    (0..n.div_ceil(b)).map(move |k| self.fresh_batch(&mut rng, b.min(n - k * b))),
                )
            }
        }
    }

    /// [`Task::evaluation_batches`] of `n` sequences as one tensor: (windows, sequences per
    /// window). charlm: the consecutive windows of [`VALIDATION_STREAMS`] streams; hello: one
    /// sequence; the synthetic and seq2seq tasks: all `n` in one window (they carry no state
    /// from batch to batch, and each sequence is drawn in turn, so how they are batched changes
    /// none of them).
    pub fn evaluation_shape(&self, n: usize) -> (usize, usize) {
        match (self.kind, &self.corpus) {
            (TaskKind::Charlm, Some(corpus)) => (
                corpus.validation_shape(VALIDATION_STREAMS, self.seq_len).1,
                VALIDATION_STREAMS,
            ),
            (TaskKind::Hello, _) => (1, 1),
            _ => (1, n),
        }
    }

    /// Whether a prediction at time step `step` counts towards the metric (copy: the recall
    /// steps; seq2seq: none, its metric is per sequence, counted by the greedy decoding).
    pub fn scored(&self, step: usize) -> bool {
        match self.kind {
            TaskKind::Copy => step >= self.time_steps() - synthetic::COPY_LEN,
            k if k.is_seq2seq() => false,
            _ => true,
        }
    }

    /// The task metric from accumulated evaluation: adding MSE, adding-1997's fraction of
    /// sequences with an absolute error of at least 0.04, copy accuracy on the recalled
    /// symbols, temporal-order error rate, charlm validation bits per character, hello accuracy,
    /// the seq2seq tasks' exact-match rate of greedy decoding. NaN when nothing was scored.
    pub fn metric(&self, acc: &MetricAcc) -> f64 {
        let accuracy = if acc.scored == 0 {
            f64::NAN
        } else {
            acc.correct as f64 / acc.scored as f64
        };
        match self.kind {
            TaskKind::Adding => acc.loss(),
            TaskKind::Copy | TaskKind::Hello => accuracy,
            TaskKind::Reverse | TaskKind::Addition | TaskKind::CopySeq => accuracy,
            // Counted, not 1 - accuracy, so that 2 in 2,560 is exactly 2 / 2560.
            TaskKind::TemporalOrder | TaskKind::Adding1997 if acc.scored > 0 => {
                (acc.scored - acc.correct) as f64 / acc.scored as f64
            }
            TaskKind::TemporalOrder | TaskKind::Adding1997 => f64::NAN,
            TaskKind::Charlm => acc.loss() / std::f64::consts::LN_2,
        }
    }

    /// Whether the metric meets the task's success criterion (None: the task has none).
    pub fn success(&self, metric: f64) -> Option<bool> {
        self.kind.success(metric)
    }
}

/// Mixed into a run's seed for its evaluation sequences, so they differ from its training ones.
const EVAL_SEED: u64 = 0xE7A1_5EED_0000_0001;

/// Accumulates a task's loss and metric over evaluation batches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricAcc {
    /// Σ loss over loss terms, and their count.
    pub loss_sum: f64,
    pub loss_terms: usize,
    /// Correct predictions (classification) over scored predictions; for seq2seq, sequences
    /// decoded exactly over sequences decoded.
    pub correct: usize,
    pub scored: usize,
}

impl MetricAcc {
    /// The mean loss (MSE, or cross-entropy in nats); NaN when there was no loss term (never 0).
    pub fn loss(&self) -> f64 {
        if self.loss_terms == 0 {
            f64::NAN
        } else {
            self.loss_sum / self.loss_terms as f64
        }
    }
}
