//! The sequence-to-sequence tasks of the encoder-decoder model (`model = "seq2seq"`): an
//! encoder reads the source, a decoder emits the target one symbol at a time.
//!
//! - `reverse`: L symbols from `abcdefgh`; the target is the source reversed.
//! - `copy-seq`: L symbols from `abcdefgh`; the target is the source itself (reproduced after
//!   the bottleneck of the encoder's final state).
//! - `addition`: `A+B=` with A and B of 1 to L digits each (the number of digits uniform, the
//!   leading digit not 0 unless the number is a single digit); the target is the sum's digits,
//!   most significant first: `123+4567=` → `4690`.
//!
//! Encoding, which `model::seq2seq` relies on: the source is one-hot over the task's source
//! symbols, `[T_src][B][I_src]`; addition's sources vary in length and are left-padded with
//! zero vectors to T_src = 2L + 2 steps, so that every source ends at the encoder's last step.
//! `reverse_source` feeds the symbols in reverse order (the padding stays in front). The target
//! ends with the end symbol; the head predicts one class per target symbol plus the end symbol,
//! last. The decoder reads one-hot target symbols plus one extra input, the start symbol, last:
//! under teacher forcing its input at step t is target symbol t − 1 (the start symbol at t = 0).
//! Target steps after the end symbol carry [`NO_LABEL`] and zero inputs (the decoder is causal,
//! so they change nothing). T_dec = the longest target + 1.
//!
//! Every draw comes from the caller's [`SplitMix64`], row after row, so the same seed gives the
//! same sequences on any machine.

use gradlab_kernels::rng::SplitMix64;

use super::{Batch, Source, Targets, TaskKind, NO_LABEL};

/// The data symbols of `reverse` and `copy-seq`.
pub const LETTERS: &str = "abcdefgh";
/// Addition's target symbols.
pub const DIGITS: &str = "0123456789";
/// Addition's source symbols.
const ADDITION_SOURCE: &str = "0123456789+=";

/// The symbols the encoder reads.
pub(super) fn source_symbols(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Addition => ADDITION_SOURCE,
        _ => LETTERS,
    }
}

/// The symbols of the target (without the end symbol).
pub(super) fn target_symbols(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Addition => DIGITS,
        _ => LETTERS,
    }
}

/// T_src: the encoder's steps for sources of length (addition: digits per number) `l`.
pub(super) fn source_steps(kind: TaskKind, l: usize) -> usize {
    match kind {
        TaskKind::Addition => 2 * l + 2,
        _ => l,
    }
}

/// T_dec: the decoder's steps, the longest target and its end symbol.
pub(super) fn target_steps(kind: TaskKind, l: usize) -> usize {
    match kind {
        TaskKind::Addition => l + 2,
        _ => l + 1,
    }
}

/// One example of task `kind` at length `l`, as text: the source (unpadded, in reading order)
/// and the target (without the end symbol).
pub fn example(kind: TaskKind, l: usize, rng: &mut SplitMix64) -> (String, String) {
    let letters: Vec<char> = LETTERS.chars().collect();
    match kind {
        TaskKind::Reverse | TaskKind::CopySeq => {
            let source: String = (0..l).map(|_| letters[rng.below(letters.len())]).collect();
            let target = match kind {
                TaskKind::Reverse => source.chars().rev().collect(),
                _ => source.clone(),
            };
            (source, target)
        }
        TaskKind::Addition => {
            let a = number(l, rng);
            let b = number(l, rng);
            let sum = add_decimal(&a, &b);
            (format!("{a}+{b}="), sum)
        }
        _ => panic!("{kind} is not a sequence-to-sequence task"),
    }
}

/// A number of 1 to `l` digits (the count uniform), without a leading zero unless it is 0.
fn number(l: usize, rng: &mut SplitMix64) -> String {
    let digits = 1 + rng.below(l);
    (0..digits)
        .map(|i| {
            let d = if i == 0 && digits > 1 {
                1 + rng.below(9)
            } else {
                rng.below(10)
            };
            char::from(b'0' + d as u8)
        })
        .collect()
}

/// The sum of two decimal digit strings, digit by digit (any length: no integer overflow).
fn add_decimal(a: &str, b: &str) -> String {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
    let mut carry = 0;
    for k in 0..a.len().max(b.len()) {
        let digit = |s: &[u8]| s.len().checked_sub(k + 1).map_or(0, |i| s[i] - b'0');
        let v = digit(a) + digit(b) + carry;
        out.push(b'0' + v % 10);
        carry = v / 10;
    }
    if carry > 0 {
        out.push(b'0' + carry);
    }
    out.iter().rev().map(|&d| char::from(d)).collect()
}

/// `b` fresh examples of task `kind` at length `l`, encoded (see the module's documentation).
pub(super) fn batch(
    kind: TaskKind,
    l: usize,
    reverse_source: bool,
    rng: &mut SplitMix64,
    b: usize,
) -> Batch {
    let examples: Vec<(String, String)> = (0..b).map(|_| example(kind, l, rng)).collect();
    encode(kind, l, reverse_source, &examples)
}

/// Encodes `(source, target)` texts as a batch of task `kind` at length `l` (every character
/// must be one of the task's symbols, and fit its lengths).
pub fn encode(
    kind: TaskKind,
    l: usize,
    reverse_source: bool,
    examples: &[(String, String)],
) -> Batch {
    let (ts, td) = (source_steps(kind, l), target_steps(kind, l));
    let targets = target_symbols(kind);
    let (n, b) = (targets.len(), examples.len());
    let mut source = vec![0.0f32; ts * b * source_symbols(kind).len()];
    let mut x = vec![0.0f32; td * b * (n + 1)];
    let mut labels = vec![NO_LABEL; td * b];
    for (row, (src, tgt)) in examples.iter().enumerate() {
        put_source(kind, l, reverse_source, src, row, b, &mut source);
        let ids: Vec<u32> = tgt
            .chars()
            .map(|c| symbol(targets, c))
            .chain([n as u32])
            .collect();
        assert!(
            ids.len() <= td,
            "target {tgt:?} longer than {} symbols",
            td - 1
        );
        for (step, &label) in ids.iter().enumerate() {
            labels[step * b + row] = label;
            let input = if step == 0 { n } else { ids[step - 1] as usize };
            x[(step * b + row) * (n + 1) + input] = 1.0;
        }
    }
    Batch {
        time_steps: td,
        batch: b,
        x,
        targets: Targets::Classes(labels),
        source: Some(Source {
            time_steps: ts,
            x: source,
        }),
    }
}

fn symbol(symbols: &str, c: char) -> u32 {
    symbols
        .chars()
        .position(|s| s == c)
        .unwrap_or_else(|| panic!("{c:?} is not one of the symbols {symbols}")) as u32
}

/// Writes source text `src` into row `row` of a `[T_src][b][I_src]` one-hot buffer: padded in
/// front, reversed if asked.
fn put_source(
    kind: TaskKind,
    l: usize,
    reverse: bool,
    src: &str,
    row: usize,
    b: usize,
    out: &mut [f32],
) {
    let (symbols, ts) = (source_symbols(kind), source_steps(kind, l));
    let i = symbols.len();
    let ids: Vec<u32> = src.chars().map(|c| symbol(symbols, c)).collect();
    assert!(ids.len() <= ts, "source {src:?} longer than {ts} symbols");
    let pad = ts - ids.len();
    let ordered: Box<dyn Iterator<Item = &u32>> = if reverse {
        Box::new(ids.iter().rev())
    } else {
        Box::new(ids.iter())
    };
    for (k, &id) in ordered.enumerate() {
        out[((pad + k) * b + row) * i + id as usize] = 1.0;
    }
}

/// A source text the model of a task cannot read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} with seq_len {l} reads {expected}; got {got:?}")]
pub struct SourceError {
    pub kind: TaskKind,
    pub l: usize,
    pub expected: String,
    pub got: String,
}

/// Checks a user's source text for task `kind` at length `l` (addition's final `=` may be left
/// out) and returns it in the form the generator writes.
pub fn parse_source(kind: TaskKind, l: usize, text: &str) -> Result<String, SourceError> {
    let err = |expected: String| SourceError {
        kind,
        l,
        expected,
        got: text.into(),
    };
    let cycle = |symbols: &str| symbols.chars().cycle().take(l).collect::<String>();
    match kind {
        TaskKind::Reverse | TaskKind::CopySeq => {
            if text.chars().count() == l && text.chars().all(|c| LETTERS.contains(c)) {
                Ok(text.into())
            } else {
                Err(err(format!(
                    "exactly {l} symbols from {LETTERS}, e.g. {}",
                    cycle(LETTERS)
                )))
            }
        }
        TaskKind::Addition => {
            let body = text.strip_suffix('=').unwrap_or(text);
            let ok = |n: &str| (1..=l).contains(&n.len()) && n.bytes().all(|d| d.is_ascii_digit());
            match body.split_once('+') {
                Some((a, b)) if ok(a) && ok(b) => Ok(format!("{a}+{b}=")),
                _ => Err(err(format!(
                    "A+B= with 1 to {l} digits in each number, e.g. {}+4=",
                    cycle("123456789")
                ))),
            }
        }
        _ => panic!("{kind} is not a sequence-to-sequence task"),
    }
}

/// The number of sequences among `b` whose decoded symbols `ids` (`[T][B]`) equal the target
/// `labels` (`[T_dec][B]`, T ≥ T_dec: the target symbols, the end symbol, then [`NO_LABEL`])
/// up to and including the end symbol; what is decoded after it does not count.
///
/// # Panics
/// If `ids` holds fewer steps than `labels`.
pub fn exact_matches(ids: &[u32], labels: &[u32], b: usize) -> usize {
    assert!(
        ids.len() >= labels.len(),
        "exact_matches: {} decoded ids for {} labels",
        ids.len(),
        labels.len()
    );
    (0..b)
        .filter(|&row| {
            let column = |v: &[u32]| v.iter().skip(row).step_by(b).copied().collect::<Vec<_>>();
            column(labels)
                .into_iter()
                .zip(column(ids))
                .take_while(|&(label, _)| label != NO_LABEL)
                .all(|(label, id)| id == label)
        })
        .count()
}
