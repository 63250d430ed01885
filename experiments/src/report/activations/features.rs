//! Features of a text computed from its characters alone, and the Pearson correlation of each
//! unit's state with each of them over the text: the ranking that finds the units Karpathy,
//! Johnson & Fei-Fei (2015) found by eye (quotes, brackets, position in the line).
//!
//! Every feature is a number per character: the value after reading it, as the model's state
//! after that character is (features that look ahead, `to_newline`, are the exception and say
//! so). The definitions, exactly:
//!
//! | feature | value at character t |
//! |---|---|
//! | `inside_quotes` | 1 between an opening and a closing `"`: the state toggles at each `"`, so the opening quote is inside (1) and the closing one outside (0) |
//! | `inside_brackets` | 1 where `bracket_depth` > 0 |
//! | `bracket_depth` | open brackets after reading t: each of `( [ {` adds 1, each of `) ] }` takes 1 away (never below 0: a stray closer is ignored); kinds are not matched, so an opener is inside and a closer outside its pair |
//! | `line_position` | characters of the line before t: 0 for a line's first character; a newline has the length of the line it ends |
//! | `to_newline` | characters from t to the next newline: 0 for a newline itself; where no newline follows, to the end of the characters read |
//! | `after_space` | 1 if the character before t is a space `' '` |
//! | `upper_case` | 1 if t is an upper-case letter (Unicode's `Uppercase`) |
//! | `digit` | 1 if t is an ASCII digit `0`–`9` |

use std::ops::Range;

/// The features, in the order of [`FeatureScan::scan`]'s values.
pub const FEATURES: [&str; 8] = [
    "inside_quotes",
    "inside_brackets",
    "bracket_depth",
    "line_position",
    "to_newline",
    "after_space",
    "upper_case",
    "digit",
];

/// Number of features.
pub const NF: usize = FEATURES.len();

/// Computes the features block by block, carrying what they need from one block to the next.
#[derive(Clone, Debug, Default)]
pub struct FeatureScan {
    quoted: bool,
    depth: u32,
    column: u32,
    after_space: bool,
    /// The first newline at or after the last block's end (`chars.len()` if none).
    next_newline: Option<usize>,
}

impl FeatureScan {
    /// The features of `chars[range]`, one row of [`NF`] values per character, into `out`.
    /// Blocks must follow each other from 0; `chars` is the whole text read (for `to_newline`).
    pub fn scan(&mut self, chars: &[char], range: Range<usize>, out: &mut Vec<[f64; NF]>) {
        out.clear();
        let next = match self.next_newline {
            Some(n) if n >= range.end => n,
            _ => (range.end..chars.len())
                .find(|&t| chars[t] == '\n')
                .unwrap_or(chars.len()),
        };
        self.next_newline = Some(next);
        for &ch in &chars[range.clone()] {
            match ch {
                '"' => self.quoted = !self.quoted,
                '(' | '[' | '{' => self.depth += 1,
                ')' | ']' | '}' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
            out.push([
                f64::from(u8::from(self.quoted)),
                f64::from(u8::from(self.depth > 0)),
                f64::from(self.depth),
                f64::from(self.column),
                0.0,
                f64::from(u8::from(self.after_space)),
                f64::from(u8::from(ch.is_uppercase())),
                f64::from(u8::from(ch.is_ascii_digit())),
            ]);
            self.column = if ch == '\n' { 0 } else { self.column + 1 };
            self.after_space = ch == ' ';
        }
        let mut next = next;
        for (row, t) in out.iter_mut().zip(range).rev() {
            if chars[t] == '\n' {
                next = t;
            }
            row[4] = (next - t) as f64;
        }
    }
}

/// Which state of a unit a correlation is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The hidden state h.
    H,
    /// The LSTM's cell state c.
    C,
}

impl State {
    /// `h` or `c`.
    pub fn name(self) -> &'static str {
        match self {
            State::H => "h",
            State::C => "c",
        }
    }
}

/// One state of one unit: what a correlation is taken of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub layer: usize,
    pub unit: usize,
    pub state: State,
}

/// Running sums for the Pearson correlation of every feature with every probe, in f64.
#[derive(Clone, Debug)]
pub struct Correlations {
    n: f64,
    sx: [f64; NF],
    sxx: [f64; NF],
    sy: Vec<f64>,
    syy: Vec<f64>,
    /// `[NF][probes]`.
    sxy: Vec<f64>,
}

impl Correlations {
    /// Sums for `probes` probes.
    pub fn new(probes: usize) -> Self {
        Correlations {
            n: 0.0,
            sx: [0.0; NF],
            sxx: [0.0; NF],
            sy: vec![0.0; probes],
            syy: vec![0.0; probes],
            sxy: vec![0.0; NF * probes],
        }
    }

    /// Adds one character: its features `x` and the probes' values `y`.
    ///
    /// # Panics
    /// If `y` does not have one value per probe.
    pub fn add(&mut self, x: &[f64; NF], y: &[f32]) {
        let p = self.sy.len();
        assert_eq!(y.len(), p, "one value per probe");
        self.n += 1.0;
        for (f, &xf) in x.iter().enumerate() {
            self.sx[f] += xf;
            self.sxx[f] += xf * xf;
            if xf != 0.0 {
                for (s, &yv) in self.sxy[f * p..][..p].iter_mut().zip(y) {
                    *s += xf * f64::from(yv);
                }
            }
        }
        for ((sy, syy), &yv) in self.sy.iter_mut().zip(&mut self.syy).zip(y) {
            let yv = f64::from(yv);
            *sy += yv;
            *syy += yv * yv;
        }
    }

    /// Whether feature `f` varies over the characters added (a constant one has no correlation).
    pub fn varies(&self, f: usize) -> bool {
        self.n * self.sxx[f] - self.sx[f] * self.sx[f] > 0.0
    }

    /// Pearson's r of feature `f` with probe `p`; `None` where either is constant.
    pub fn r(&self, f: usize, p: usize) -> Option<f64> {
        let n = self.n;
        let vx = n * self.sxx[f] - self.sx[f] * self.sx[f];
        let vy = n * self.syy[p] - self.sy[p] * self.sy[p];
        let cov = n * self.sxy[f * self.sy.len() + p] - self.sx[f] * self.sy[p];
        (vx > 0.0 && vy > 0.0).then(|| (cov / (vx.sqrt() * vy.sqrt())).clamp(-1.0, 1.0))
    }

    /// Every probe with a correlation, for each feature that varies, ranked by |r| (ties: in
    /// probe order): rank 1 is the probe that follows the feature most closely.
    pub fn ranking(&self, probes: &[Probe]) -> Vec<Ranked> {
        let mut rows = Vec::new();
        for (f, &feature) in FEATURES.iter().enumerate() {
            let mut rs: Vec<(usize, f64)> = (0..probes.len())
                .filter_map(|p| self.r(f, p).map(|r| (p, r)))
                .collect();
            rs.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
            rows.extend(rs.into_iter().enumerate().map(|(i, (p, r))| Ranked {
                feature,
                rank: i + 1,
                probe: probes[p],
                r,
            }));
        }
        rows
    }
}

/// One row of the ranking: `probe` is the `rank`-th closest to `feature`, with correlation `r`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ranked {
    pub feature: &'static str,
    pub rank: usize,
    pub probe: Probe,
    pub r: f64,
}

impl Ranked {
    /// feature, rank, layer, unit, state and `r` written by `r_text`: the columns of
    /// `ranking.csv` and of the printed table.
    pub fn cells(&self, r_text: impl Fn(f64) -> String) -> [String; 6] {
        [
            self.feature.to_string(),
            self.rank.to_string(),
            self.probe.layer.to_string(),
            self.probe.unit.to_string(),
            self.probe.state.name().to_string(),
            r_text(self.r),
        ]
    }
}
