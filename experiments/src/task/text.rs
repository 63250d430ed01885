//! Character-level text (`charlm`): any text file, its sorted vocabulary, a 95/5 split into
//! training and validation text, training windows from streams that carry their state, and the
//! validation text cut into [`VALIDATION_STREAMS`] streams.

use std::path::{Path, PathBuf};

use gradlab_kernels::rng::SplitMix64;

use super::{Batch, Targets, NO_LABEL};

/// Streams the validation text is cut into; each must hold at least one window. (A cold start
/// costs under 2% of tinyshakespeare's 5% validation text.)
pub const VALIDATION_STREAMS: usize = 16;

/// Percent of the text that trains; the rest validates.
const TRAIN_PERCENT: usize = 95;

/// Why a text cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("charlm needs a text file: text = \"path.txt\"")]
    Missing,
    #[error("cannot read the text file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the text file {path} is too short: {chars} characters, need at least {need} for \
         seq_len {seq_len} (the 5% validation split must hold a window of seq_len + 1 \
         characters for each of its {VALIDATION_STREAMS} streams); use a longer text or a \
         smaller seq_len"
    )]
    TooShort {
        path: PathBuf,
        chars: usize,
        need: usize,
        seq_len: usize,
    },
}

/// A text split into training and validation character ids.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub vocab: Vec<char>,
    pub train: Vec<u32>,
    pub valid: Vec<u32>,
}

/// The fewest characters a text needs for windows of `seq_len`: every validation stream holds
/// one window (and its next character), and the training text at least one window.
pub fn min_chars(seq_len: usize) -> usize {
    let valid_need = VALIDATION_STREAMS * seq_len + 1;
    let valid = |n: usize| n - n * TRAIN_PERCENT / 100;
    // valid(n) grows by 0 or 1 per character: start just below the bound and step up.
    let mut n = (valid_need * 100 / (100 - TRAIN_PERCENT)).saturating_sub(100);
    while valid(n) < valid_need || n - valid(n) < seq_len + 1 {
        n += 1;
    }
    n
}

impl Corpus {
    /// Reads `path`, builds the sorted vocabulary, splits 95/5, and checks that the text is
    /// long enough for windows of `seq_len`.
    pub fn load(path: &Path, seq_len: usize) -> Result<Self, TextError> {
        let text = std::fs::read_to_string(path).map_err(|source| TextError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let chars = text.chars().count();
        let need = min_chars(seq_len);
        if chars < need {
            return Err(TextError::TooShort {
                path: path.to_path_buf(),
                chars,
                need,
                seq_len,
            });
        }
        Ok(Self::from_text(&text))
    }

    /// The corpus of `text`, of any length.
    pub fn from_text(text: &str) -> Self {
        let chars: Vec<char> = text.chars().collect();
        let mut vocab = chars.clone();
        vocab.sort_unstable();
        vocab.dedup();
        let ids: Vec<u32> = chars
            .iter()
            .map(|c| vocab.binary_search(c).expect("in the vocabulary") as u32)
            .collect();
        let split = ids.len() * TRAIN_PERCENT / 100;
        Corpus {
            vocab,
            train: ids[..split].to_vec(),
            valid: ids[split..].to_vec(),
        }
    }

    /// The id of `c`, if it is in the vocabulary.
    pub fn id(&self, c: char) -> Option<u32> {
        self.vocab.binary_search(&c).ok().map(|i| i as u32)
    }

    /// The next training windows of `t` characters: `b` streams spread evenly over the training
    /// text from a random start (drawn when `streams` is not yet of length `b`), each advanced
    /// by `t`.
    pub(super) fn next_train_windows(
        &self,
        streams: &mut Vec<usize>,
        rng: &mut SplitMix64,
        b: usize,
        t: usize,
    ) -> Batch {
        let n = self.train.len();
        if streams.len() != b {
            let start = rng.below(n);
            *streams = (0..b).map(|i| (start + i * n / b) % n).collect();
        }
        let batch = text_batch(&self.train, streams, t, self.vocab.len());
        for s in streams.iter_mut() {
            *s = (*s + t) % n;
        }
        batch
    }

    /// How [`Corpus::validation_windows`] cuts the validation text into `b` streams of windows
    /// of `t` characters: the characters per stream (stream `i` starts at `i` times it) and the
    /// windows per stream.
    pub fn validation_shape(&self, b: usize, t: usize) -> (usize, usize) {
        let per_stream = self.valid.len().saturating_sub(1) / b;
        (per_stream, per_stream / t)
    }

    /// The validation text cut into `b` contiguous streams, as consecutive windows of `t`
    /// characters (the state carries from one to the next), generated one at a time.
    pub(super) fn validation_windows(
        &self,
        b: usize,
        t: usize,
    ) -> impl Iterator<Item = Batch> + '_ {
        let (per_stream, windows) = self.validation_shape(b, t);
        (0..windows).map(move |w| {
            let starts: Vec<usize> = (0..b).map(|i| i * per_stream + w * t).collect();
            text_batch(&self.valid, &starts, t, self.vocab.len())
        })
    }
}

/// One-hot windows of `t` characters from each stream position, with next-character targets.
pub(super) fn text_batch(ids: &[u32], streams: &[usize], t: usize, vocab: usize) -> Batch {
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
        time_steps: t,
        batch: b,
        x,
        targets: Targets::Classes(labels),
        source: None,
    }
}
