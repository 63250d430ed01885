//! The synthetic long-range tasks: the adding problem, the copy task, temporal order, and the
//! "hello" toy. Each draws every number from the caller's [`SplitMix64`].

use gradlab_kernels::rng::SplitMix64;

use super::text::{text_batch, Corpus};
use super::{Batch, Targets, NO_LABEL};

/// Symbols of the copy task: 8 data symbols, then blank and delimiter.
pub(super) const COPY_SYMBOLS: usize = 8;
const COPY_BLANK: usize = 8;
const COPY_DELIM: usize = 9;
/// Symbols to remember in the copy task.
pub(super) const COPY_LEN: usize = 10;

/// Temporal order: distractors 0..4, relevant symbols A = 4 and B = 5.
pub(super) const TO_DISTRACTORS: usize = 4;
const TO_A: usize = 4;

pub(super) const HELLO: &str = "hello";

/// Offset of time step `step`, row `row` in a `[T][B][I]` buffer.
fn at(step: usize, row: usize, b: usize, i: usize) -> usize {
    (step * b + row) * i
}

/// The adding problem: `t` steps of (value U[0,1], marker), one marker in each half; the target
/// is the sum of the two marked values.
pub fn adding(rng: &mut SplitMix64, t: usize, b: usize) -> Batch {
    let i = 2;
    let mut x = vec![0.0f32; t * b * i];
    let mut y = vec![0.0; b];
    for (row, y) in y.iter_mut().enumerate() {
        let (m1, m2) = (rng.below(t / 2), t / 2 + rng.below(t - t / 2));
        for step in 0..t {
            let v = rng.uniform(0.0, 1.0) as f32;
            x[at(step, row, b, i)] = v;
            if step == m1 || step == m2 {
                x[at(step, row, b, i) + 1] = 1.0;
                *y += v;
            }
        }
    }
    Batch {
        time_steps: t,
        batch: b,
        x,
        targets: Targets::Last(y),
        source: None,
    }
}

/// Hochreiter & Schmidhuber (1997)'s adding problem (experiment 4) at a fixed length `t`: pairs
/// of (value U[-1, 1], marker); one of the first ten pairs and one other of the first t/2 are
/// marked 1.0, the first and the last pair (when unmarked) -1.0, all others 0.0; the target is
/// 0.5 + (X1 + X2) / 4, the first pair's value taken as 0 when it is marked. (They draw
/// each length from [t, t + t/10]; gradlab's batches have one length.)
pub fn adding_1997(rng: &mut SplitMix64, t: usize, b: usize) -> Batch {
    let i = 2;
    let mut x = vec![0.0f32; t * b * i];
    let mut y = vec![0.0; b];
    for (row, y) in y.iter_mut().enumerate() {
        let m1 = rng.below(10);
        // One of the t/2 - 1 pairs of the first t/2 that m1 is not.
        let m2 = match rng.below(t / 2 - 1) {
            j if j >= m1 => j + 1,
            j => j,
        };
        for step in 0..t {
            let v = rng.uniform(-1.0, 1.0) as f32;
            let at = at(step, row, b, i);
            let marked = step == m1 || step == m2;
            x[at] = if step == 0 && marked { 0.0 } else { v };
            x[at + 1] = if marked {
                1.0
            } else if step == 0 || step == t - 1 {
                -1.0
            } else {
                0.0
            };
        }
        let (x1, x2) = (x[at(m1, row, b, i)], x[at(m2, row, b, i)]);
        *y = 0.5 + (x1 + x2) / 4.0;
    }
    Batch {
        time_steps: t,
        batch: b,
        x,
        targets: Targets::Last(y),
        source: None,
    }
}

/// The copy task (Arjovsky et al. 2016): 10 symbols from 8, blanks, a delimiter, then the 10
/// symbols to reproduce; `t` is the whole sequence (delay + 20).
pub fn copy(rng: &mut SplitMix64, t: usize, b: usize, i: usize) -> Batch {
    let mut x = vec![0.0f32; t * b * i];
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
            x[at(step, row, b, i) + sym] = 1.0;
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

/// Temporal order (Hochreiter & Schmidhuber 6a): two relevant symbols among distractors at
/// positions in [0.1T, 0.2T) and [0.5T, 0.6T); four classes at the last step.
pub fn temporal_order(rng: &mut SplitMix64, t: usize, b: usize, i: usize) -> Batch {
    let mut x = vec![0.0f32; t * b * i];
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
            x[at(step, row, b, i) + sym] = 1.0;
        }
        labels[(t - 1) * b + row] = (2 * s1 + s2) as u32;
    }
    Batch {
        time_steps: t,
        batch: b,
        x,
        targets: Targets::Classes(labels),
        source: None,
    }
}

/// The vocabulary of the hello toy.
pub(super) fn hello_corpus() -> Corpus {
    Corpus::from_text(&HELLO.repeat(20))
}

/// "hell" → "ello", `b` times.
pub(super) fn hello(corpus: &Corpus, b: usize) -> Batch {
    let ids: Vec<u32> = HELLO.chars().map(|c| corpus.id(c).unwrap_or(0)).collect();
    text_batch(&ids, &vec![0; b], HELLO.len() - 1, corpus.vocab.len())
}
