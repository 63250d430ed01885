//! The run configuration: the keys of DESIGN.md ("Config keys"), from TOML or from flags.
//!
//! Every key is declared once, in the table of [`run_config!`]: its field, type, default and
//! one line of help. The struct, its `Default`, [`KEYS`] and [`key_help`] all come from that
//! table, so the command line's flags, a sweep's allowed axes and the `runs` table's columns
//! cannot drift apart. Unknown keys are errors, and [`RunConfig::validate`] rejects impossible
//! values with a message that names the key, the value and what is allowed.
//!
//! [`RunConfig::identity_toml`] is the canonical form a run's identity is hashed from: keys at
//! their default value and the [`NON_IDENTITY_KEYS`] are left out, so adding a key with a default
//! never changes an existing run's identity.

use std::fmt;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::task::TaskKind;

/// A configuration that cannot be run.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// The TOML does not parse or does not fit the keys' types; `span` is the byte range of the
    /// offending text in the source, where TOML knows it.
    #[error("{message}")]
    Toml {
        message: String,
        span: Option<Range<usize>>,
    },
    #[error("unknown key '{key}'{}; allowed keys: {allowed}", did_you_mean(key, KEYS.iter().copied()))]
    UnknownKey { key: String, allowed: String },
    #[error("invalid value {value} for '{key}': {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
}

impl ConfigError {
    fn bad(key: &str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        ConfigError::BadValue {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// The candidate nearest to `word` when it is near enough to be a misspelling of it (Jaro
/// similarity above 0.7, as clap does for flags).
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro(word, c), c))
        .filter(|&(score, c)| score > 0.7 && c != word)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// ` (did you mean `hidden`?)` for a misspelled `word`, or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(word, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// serde's `unknown field `X`, expected one of `a`, `b`` with the nearest allowed field named,
/// so a misspelled key in a TOML file gets the same hint as one on the command line.
pub fn hint_unknown_field(message: &str) -> String {
    let Some(rest) = message.split("unknown field `").nth(1) else {
        return message.to_string();
    };
    let Some((field, rest)) = rest.split_once('`') else {
        return message.to_string();
    };
    let allowed: Vec<&str> = rest
        .split("expected")
        .nth(1)
        .map(|list| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    match nearest(field, allowed) {
        Some(c) => format!("{}\ndid you mean `{c}`?", message.trim_end()),
        None => message.to_string(),
    }
}

/// A value in its string form (`norm:1`, `smart-tanh`, `step:100:0.5`) that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} '{value}'{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
pub struct ParseError {
    /// What was being parsed: `clip`, `norm threshold`, `init`, ...
    pub what: &'static str,
    pub value: String,
    pub reason: Option<String>,
}

impl ParseError {
    fn new(what: &'static str, value: &str) -> Self {
        ParseError {
            what,
            value: value.into(),
            reason: None,
        }
    }
    fn because(what: &'static str, value: &str, reason: &str) -> Self {
        ParseError {
            what,
            value: value.into(),
            reason: Some(reason.into()),
        }
    }
}

/// Recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellKind {
    Rnn,
    Lstm,
    Gru,
}

/// The model: one recurrent stack read by the head (at every step, or at the last), or an
/// encoder-decoder whose encoder's final state starts the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    Stack,
    Seq2seq,
}

/// Non-linearity of a vanilla RNN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nonlinearity {
    Tanh,
    Relu,
}

/// Optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    Sgd,
    Adagrad,
    Rmsprop,
    Adam,
}

/// `FromStr` and `Display` of a unit enum through its serde (kebab-case) names, so the command
/// line and the TOML file spell it alike.
macro_rules! serde_names {
    ($($t:ty: $what:literal),*) => {$(
        impl FromStr for $t {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                from_name(s).ok_or_else(|| ParseError::new($what, s))
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match toml::Value::try_from(self) {
                    Ok(toml::Value::String(s)) => f.write_str(&s),
                    _ => write!(f, "{self:?}"),
                }
            }
        }
    )*};
}
serde_names!(TaskKind: "task", ModelKind: "model", CellKind: "cell", Nonlinearity: "nonlinearity", OptimizerKind: "optimizer");

fn from_name<T: DeserializeOwned>(s: &str) -> Option<T> {
    T::deserialize(toml::Value::String(s.into())).ok()
}

/// Implements serde as the string form (`Display`), `FromStr` as its parser.
macro_rules! string_form {
    ($t:ty, $expected:literal) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(|e: ParseError| {
                    serde::de::Error::custom(format!("{e}; expected {}", $expected))
                })
            }
        }
    };
}

fn positive(what: &'static str, v: &str) -> Result<f32, ParseError> {
    match v.parse::<f32>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(ParseError::because(what, v, "must be a finite number > 0")),
    }
}

/// Gradient clipping (Pascanu et al. 2013; char-rnn).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clip {
    None,
    /// Rescale the whole gradient to norm τ when its global L2 norm exceeds τ.
    Norm(f32),
    /// Clamp every element to [-τ, τ].
    Value(f32),
}

impl FromStr for Clip {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.split_once(':') {
            None if s == "none" => Ok(Clip::None),
            None if s.parse::<f64>().is_ok() => Err(ParseError::because(
                "clip",
                s,
                &format!(
                    "a bare number does not say how to clip: write norm:{s} (rescale the \
                     gradient when its norm exceeds {s}) or value:{s} (clamp every element to \
                     [-{s}, {s}])"
                ),
            )),
            Some(("norm", t)) => positive("norm threshold", t).map(Clip::Norm),
            Some(("value", t)) => positive("value threshold", t).map(Clip::Value),
            _ => Err(ParseError::new("clip", s)),
        }
    }
}

impl fmt::Display for Clip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clip::None => write!(f, "none"),
            Clip::Norm(t) => write!(f, "norm:{t}"),
            Clip::Value(t) => write!(f, "value:{t}"),
        }
    }
}

impl Serialize for Clip {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Clip {
    /// A string as [`Clip::from_str`]; a bare number (`clip = 1`) too, to say what to write.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(f64),
            Str(String),
        }
        let s = match Repr::deserialize(d)? {
            Repr::Number(x) => x.to_string(),
            Repr::Str(s) => s,
        };
        s.parse().map_err(|e: ParseError| {
            serde::de::Error::custom(format!(
                "{e}; expected none, norm:<τ> or value:<τ> with τ > 0"
            ))
        })
    }
}

/// Parameter initialisation (DESIGN.md "Training semantics").
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// PyTorch's U(-1/√H, 1/√H) for every parameter.
    Default,
    /// U(-a, a) for every parameter, the head's too (char-rnn's `param_init`, 0.08).
    Uniform(f32),
    /// N(0, σ) weights, zero biases.
    Normal(f32),
    /// Pascanu et al. 2013 (`smart_tanh` of their code): sparse W_hh (15 inputs per unit)
    /// rescaled to spectral radius 0.95, N(0, 0.01) input and head weights, zero biases.
    SmartTanh,
    /// IRNN (Le et al. 2015): W_hh = I, zero biases, small input weights.
    Identity,
    /// Orthogonal W_hh (per gate block).
    Orthogonal,
}

impl FromStr for Init {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.split_once(':') {
            None if s == "default" => Ok(Init::Default),
            None if s == "smart-tanh" => Ok(Init::SmartTanh),
            None if s == "identity" => Ok(Init::Identity),
            None if s == "orthogonal" => Ok(Init::Orthogonal),
            Some(("normal", sd)) => match sd.parse::<f32>() {
                Ok(x) if x.is_finite() && x > 0.0 => Ok(Init::Normal(x)),
                _ => Err(ParseError::because(
                    "init",
                    s,
                    "σ must be a finite number > 0",
                )),
            },
            Some(("uniform", a)) => match a.parse::<f32>() {
                Ok(x) if x.is_finite() && x > 0.0 => Ok(Init::Uniform(x)),
                _ => Err(ParseError::because(
                    "init",
                    s,
                    "the bound a of U(-a, a) must be a finite number > 0",
                )),
            },
            _ => Err(ParseError::new("init", s)),
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Default => write!(f, "default"),
            Init::Uniform(a) => write!(f, "uniform:{a}"),
            Init::Normal(s) => write!(f, "normal:{s}"),
            Init::SmartTanh => write!(f, "smart-tanh"),
            Init::Identity => write!(f, "identity"),
            Init::Orthogonal => write!(f, "orthogonal"),
        }
    }
}
string_form!(
    Init,
    "default, uniform:<a>, normal:<σ>, smart-tanh, identity or orthogonal"
);

/// Learning-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    Constant,
    /// Multiply the learning rate by `gamma` every `every` updates.
    Step {
        every: usize,
        gamma: f64,
    },
    /// char-rnn's decay: multiply the learning rate by `gamma` at the end of every epoch (one
    /// pass over the training text) from epoch `after` on (epochs counted from 1; char-rnn's
    /// `learning_rate_decay_after` and `learning_rate_decay`). charlm only.
    Epoch {
        after: usize,
        gamma: f64,
    },
}

impl FromStr for LrSchedule {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s == "constant" {
            return Ok(LrSchedule::Constant);
        }
        let bad = || ParseError::new("lr_schedule", s);
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let (n, gamma) = rest.split_once(':').ok_or_else(bad)?;
        let n: usize = n.parse().map_err(|_| bad())?;
        let gamma: f64 = gamma.parse().map_err(|_| bad())?;
        let what = match kind {
            "step" => "every",
            "epoch" => "after",
            _ => return Err(bad()),
        };
        if n == 0 || !(gamma.is_finite() && gamma > 0.0) {
            return Err(ParseError::because(
                "lr_schedule",
                s,
                &format!("{what} must be >= 1 and gamma a finite number > 0"),
            ));
        }
        Ok(if kind == "step" {
            LrSchedule::Step { every: n, gamma }
        } else {
            LrSchedule::Epoch { after: n, gamma }
        })
    }
}

impl fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LrSchedule::Constant => write!(f, "constant"),
            LrSchedule::Step { every, gamma } => write!(f, "step:{every}:{gamma}"),
            LrSchedule::Epoch { after, gamma } => write!(f, "epoch:{after}:{gamma}"),
        }
    }
}
string_form!(
    LrSchedule,
    "constant, step:<every>:<gamma> or epoch:<after>:<gamma>"
);

/// A term added to the training objective (Pascanu, Mikolov & Bengio 2013).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Regularizer {
    None,
    /// α·Ω, Pascanu et al.'s vanishing-gradient regulariser, which asks every step of a vanilla
    /// RNN's backward recurrence to carry the gradient back with its norm preserved
    /// (`gradlab_kernels::omega` defines it); its gradient, with respect to each W_hh only, is
    /// added before clipping.
    Pascanu(f32),
}

impl FromStr for Regularizer {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.split_once(':') {
            None if s == "none" => Ok(Regularizer::None),
            None if s == "pascanu" => Err(ParseError::because(
                "regularizer",
                s,
                "Ω needs its weight α: write pascanu:<α>, e.g. pascanu:2",
            )),
            Some(("pascanu", a)) => positive("regularizer weight α", a).map(Regularizer::Pascanu),
            _ => Err(ParseError::new("regularizer", s)),
        }
    }
}

impl fmt::Display for Regularizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Regularizer::None => write!(f, "none"),
            Regularizer::Pascanu(a) => write!(f, "pascanu:{a}"),
        }
    }
}
string_form!(Regularizer, "none or pascanu:<α> with α > 0");

/// Truncation of BPTT: `full`, or k (TBPTT(k, k)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truncation {
    Full,
    K(usize),
}

impl FromStr for Truncation {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "full" => Ok(Truncation::Full),
            _ => match s.parse::<usize>() {
                Ok(k) if k > 0 => Ok(Truncation::K(k)),
                _ => Err(ParseError::new("truncation", s)),
            },
        }
    }
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Truncation::Full => write!(f, "full"),
            Truncation::K(k) => write!(f, "{k}"),
        }
    }
}

impl Serialize for Truncation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Truncation::Full => s.serialize_str("full"),
            Truncation::K(k) => s.serialize_u64(*k as u64),
        }
    }
}

/// Free labels of a run: `tags = ["baseline", "v2"]` in TOML, `--tags baseline,v2` on the
/// command line.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Tags(pub Vec<String>);

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            List(Vec<String>),
            Str(String),
        }
        let repr = Repr::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a list of strings, e.g. [\"baseline\", \"v2\"], or a comma-separated string",
            )
        })?;
        Ok(Tags(match repr {
            Repr::List(tags) => tags,
            Repr::Str(s) => s
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
        }))
    }
}

impl<'de> Deserialize<'de> for Truncation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Int(i64),
            Str(String),
        }
        let expected = "expected \"full\" or an integer k >= 1";
        match Repr::deserialize(d)? {
            Repr::Int(k) if k >= 1 => Ok(Truncation::K(k as usize)),
            Repr::Int(k) => Err(serde::de::Error::custom(format!(
                "invalid truncation {k}; {expected}"
            ))),
            Repr::Str(s) => s
                .parse()
                .map_err(|e: ParseError| serde::de::Error::custom(format!("{e}; {expected}"))),
        }
    }
}

/// Why an integer above `i64::MAX` is refused.
fn int64_reason() -> String {
    format!(
        "must be at most {} (results store integers as int64)",
        i64::MAX
    )
}

/// Whether `v` holds an integer that an i64 cannot.
fn has_int_beyond_i64(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_u64() && n.as_i64().is_none(),
        serde_json::Value::Array(items) => items.iter().any(has_int_beyond_i64),
        serde_json::Value::Object(map) => map.values().any(has_int_beyond_i64),
        _ => false,
    }
}

/// Declares [`RunConfig`] from one table of `key: type = default, "help"`: the struct, its
/// `Default`, [`KEYS`] and [`key_help`].
macro_rules! run_config {
    ($($(#[doc = $doc:literal])* $key:ident: $ty:ty = $default:expr, $help:literal;)*) => {
        /// One run's configuration: a sweep's `[base]`, or `gradlab run --config`.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct RunConfig {
            $($(#[doc = $doc])* pub $key: $ty,)*
        }

        impl Default for RunConfig {
            fn default() -> Self {
                RunConfig { $($key: $default,)* }
            }
        }

        /// Every key of a run configuration, in the order of the struct.
        pub const KEYS: &[&str] = &[$(stringify!($key)),*];

        /// One line of help per key (what it is, allowed values), for the command line.
        pub fn key_help(key: &str) -> Option<&'static str> {
            match key {
                $(stringify!($key) => Some($help),)*
                _ => None,
            }
        }

        impl RunConfig {
            /// The first key whose value holds an integer above `i64::MAX`, with that value:
            /// neither TOML (`sweep.toml`) nor the `runs` table's int64 columns can hold it.
            /// Every key is checked, so that a key added later is covered too.
            fn beyond_int64(&self) -> Option<(&'static str, String)> {
                $(
                    if let Ok(v) = serde_json::to_value(&self.$key) {
                        if has_int_beyond_i64(&v) {
                            return Some((stringify!($key), v.to_string()));
                        }
                    }
                )*
                None
            }
        }
    };
}

run_config! {
    /// Name of the run (default results folder `results/<name>`); a sweep's name.
    name: String = "run".into(), "run name, default results folder";
    task: TaskKind = TaskKind::Adding, "adding | adding-1997 | copy | temporal-order | charlm | hello | reverse | addition | copy-seq (seq2seq)";
    /// `stack`: one recurrent stack and the head; `seq2seq`: an encoder reads the source, its
    /// final state starts a decoder that emits the target (the tasks reverse, addition, copy-seq).
    model: ModelKind = ModelKind::Stack, "stack | seq2seq (encoder-decoder, for reverse, addition, copy-seq)";
    /// seq2seq: feed the source in reverse order (Sutskever et al. 2014).
    reverse_source: bool = false, "seq2seq: feed the source reversed (true | false)";
    /// Sequence length T of generated sequences; for `copy` the delay, for `charlm` the window
    /// of one update, for the seq2seq tasks the source length L (addition: digits per number).
    seq_len: usize = 100, "T of generated sequences (copy: the delay; charlm: window length; seq2seq: source length L, addition: max digits)";
    /// The text file of `charlm`.
    text: Option<PathBuf> = None, "text file of charlm";
    cell: CellKind = CellKind::Rnn, "rnn | lstm | gru";
    nonlinearity: Nonlinearity = Nonlinearity::Tanh, "rnn only: tanh | relu";
    hidden: usize = 50, "hidden units per layer";
    depth: usize = 1, "stacked layers";
    batch: usize = 20, "sequences per update";
    /// Optimiser updates (a "step" is always one update).
    steps: usize = 2000, "optimizer updates";
    optimizer: OptimizerKind = OptimizerKind::Sgd, "sgd | adagrad | rmsprop | adam";
    lr: f64 = 0.01, "learning rate";
    momentum: f64 = 0.0, "sgd momentum in [0, 1)";
    nesterov: bool = false, "sgd: Nesterov momentum (true | false)";
    /// RMSprop's decay ρ of the mean squared gradient: char-rnn's 0.95 (PyTorch's `alpha` is
    /// 0.99; Arjovsky et al. 2016 use 0.9).
    rmsprop_decay: f64 = 0.95, "rmsprop: decay of the mean squared gradient in (0, 1) (char-rnn 0.95, PyTorch 0.99)";
    lr_schedule: LrSchedule = LrSchedule::Constant, "constant | step:<every>:<gamma> | epoch:<after>:<gamma> (charlm: x gamma per epoch from epoch <after> on)";
    /// TBPTT(k, k); for seq2seq, the encoder's backward stops k steps before the end of the
    /// source (the decoder is backpropagated whole).
    truncation: Truncation = Truncation::Full, "full | k (TBPTT(k, k); seq2seq: the encoder's last k steps)";
    /// TBPTT(k1, k2): every k1 time steps, backpropagate the losses of those k1 time steps k2
    /// time steps.
    truncation_k1: Option<usize> = None, "TBPTT(k1, k2): every k1 time steps ...";
    truncation_k2: Option<usize> = None, "... backpropagate k2 time steps";
    clip: Clip = Clip::Norm(1.0), "none | norm:<τ> | value:<τ>";
    init: Init = Init::Default, "default | uniform:<a> | normal:<σ> | smart-tanh | identity | orthogonal";
    forget_bias: f32 = 1.0, "lstm forget-gate bias";
    /// A term added to the loss: Pascanu et al. (2013)'s Ω with weight α (rnn cells only).
    regularizer: Regularizer = Regularizer::None, "none | pascanu:<α> (Pascanu et al. 2013's Ω, weight α > 0; rnn cells only)";
    log_every: usize = 50, "updates between logged (and diagnosed) updates";
    eval_every: usize = 500, "updates between evaluations";
    eval_sequences: usize = 1000, "sequences per evaluation (the final one uses at least 10,000)";
    /// End the run at the first evaluation whose metric meets the task's success criterion,
    /// confirmed on the final evaluation's sequences (at least 10,000).
    stop_at_success: bool = false, "end the run once an evaluation meets the task's success criterion (confirmed on >= 10,000 sequences)";
    /// Updates between measurements of the Jacobian spectra (0: the first and last update only).
    diag_every: usize = 0, "updates between Jacobian spectra (0: first and last update only)";
    /// Input steps the Lyapunov exponents average over, after 100 warm-up steps (0: no spectra).
    lyapunov_steps: usize = 500, "steps the Lyapunov exponents average over (0: no spectra)";
    seed: u64 = 0, "seed of initialisation and data";
    /// Mid-run checkpoints every N updates (0: by time only); not part of the run's identity.
    checkpoint_every: usize = 0, "mid-run checkpoint every N updates (0: by time only; not part of run_id)";
    /// Mid-run checkpoints at least every S seconds of training (0: by count only).
    checkpoint_seconds: f64 = 30.0, "mid-run checkpoint at least every S seconds (0: by count only; not part of run_id)";
    /// Labels recorded in the `runs` table; not part of the run's identity.
    tags: Tags = Tags::default(), "labels: a list, or comma-separated (recorded, not part of run_id)";
    /// A free-text note recorded in the `runs` table; not part of the run's identity.
    note: String = String::new(), "free-text note (recorded, not part of run_id)";
}

/// The longest `seq_len`: one sequence of 2^32 steps of the smallest model already needs more
/// than 100 GiB, and below it every length the tasks derive (`2 L + 2`, 16 validation windows)
/// fits in a `usize`.
pub const MAX_SEQ_LEN: usize = 1 << 32;

/// Keys that describe or operate a run without changing its results (its labels, and how
/// often it checkpoints): recorded in the `runs` table, left out of
/// [`RunConfig::identity_toml`] (so relabelling finished runs does not run them again, and a
/// checkpoint continues under other checkpoint settings), and never sweep axes.
pub const NON_IDENTITY_KEYS: [&str; 4] = ["tags", "note", "checkpoint_every", "checkpoint_seconds"];

impl RunConfig {
    /// Parses a TOML run configuration (unknown keys are errors).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: RunConfig = toml::from_str(text).map_err(|e| ConfigError::Toml {
            message: hint_unknown_field(&e.to_string()),
            span: e.span(),
        })?;
        cfg.check_int64()?;
        Ok(cfg)
    }

    /// Refuses integers above `i64::MAX` (TOML's and the results' integers are i64): such a
    /// value would parse, train for hours, and then fail to be written.
    fn check_int64(&self) -> Result<(), ConfigError> {
        match self.beyond_int64() {
            Some((key, value)) => Err(ConfigError::bad(key, value, int64_reason())),
            None => Ok(()),
        }
    }

    /// The TOML form, which [`RunConfig::from_toml`] reads back unchanged.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a RunConfig always serializes")
    }

    /// Every key that has a value, as TOML values (`text` and the TBPTT keys only when set).
    pub fn to_table(&self) -> toml::Table {
        toml::Table::try_from(self).expect("a RunConfig always serializes")
    }

    /// The canonical form of the keys whose value differs from the default, in [`KEYS`] order:
    /// what a run's identity is hashed from. A key added later with a default leaves it as it
    /// is. (Changing a default would change what an existing identity means: defaults are part
    /// of the results' contract and pinned by a test.)
    pub fn identity_toml(&self) -> String {
        let mut values = self.to_table();
        values.retain(|k, _| !NON_IDENTITY_KEYS.contains(&k));
        identity_toml(&values, &RunConfig::default().to_table())
    }

    /// The value of `key` in its canonical display form (`norm:1` and `norm:1.0` alike),
    /// `(unset)` for an optional key without a value.
    pub fn value_string(&self, key: &str) -> String {
        self.to_table()
            .get(key)
            .map_or_else(|| "(unset)".into(), display_value)
    }

    /// Sets one key from its string form (`--set key=value`), as if it were in the TOML file.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        self.set_value(key, parse_value(value)).map_err(|e| {
            // Digits that TOML cannot read as an integer (beyond i64) came back as a string.
            let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
            if digits && value.parse::<i64>().is_err() {
                ConfigError::bad(key, value, int64_reason())
            } else {
                e
            }
        })
    }

    /// Sets one key to a TOML value, checking the key and the value's type and form.
    pub fn set_value(&mut self, key: &str, value: toml::Value) -> Result<(), ConfigError> {
        if !KEYS.contains(&key) {
            return Err(ConfigError::UnknownKey {
                key: key.into(),
                allowed: KEYS.join(", "),
            });
        }
        let mut table = self.to_table();
        let shown = value.to_string();
        table.insert(key.into(), value);
        let changed: RunConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::bad(key, shown, e.message()))?;
        changed.check_int64()?;
        *self = changed;
        Ok(())
    }

    /// Whether update `step` measures the Jacobian spectra: the first and the last update, and
    /// every `diag_every` updates (a measured update is also logged).
    pub fn measures_spectrum(&self, step: usize) -> bool {
        self.lyapunov_steps > 0
            && (step == 0
                || step + 1 == self.steps
                || (self.diag_every > 0 && step.is_multiple_of(self.diag_every)))
    }

    /// Checks values that parse but cannot be run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_int64()?;
        for (key, v) in [
            ("hidden", self.hidden),
            ("depth", self.depth),
            ("batch", self.batch),
            ("steps", self.steps),
            ("log_every", self.log_every),
            ("eval_every", self.eval_every),
            ("eval_sequences", self.eval_sequences),
        ] {
            if v == 0 {
                return Err(ConfigError::bad(key, v, "must be at least 1"));
            }
        }
        if self.seq_len > MAX_SEQ_LEN {
            return Err(ConfigError::bad(
                "seq_len",
                self.seq_len,
                format!("must be at most {MAX_SEQ_LEN}: no longer sequence fits in memory"),
            ));
        }
        let min_len = self.task.min_seq_len();
        if self.seq_len < min_len {
            return Err(ConfigError::bad(
                "seq_len",
                self.seq_len,
                format!("must be at least {min_len} for {:?}", self.task),
            ));
        }
        if !(self.checkpoint_seconds.is_finite() && self.checkpoint_seconds >= 0.0) {
            return Err(ConfigError::bad(
                "checkpoint_seconds",
                self.checkpoint_seconds,
                "must be a finite number of seconds >= 0 (0: by count only)",
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(ConfigError::bad(
                "lr",
                self.lr,
                "must be a finite number > 0",
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(ConfigError::bad(
                "momentum",
                self.momentum,
                "must be in [0, 1)",
            ));
        }
        if !(self.rmsprop_decay > 0.0 && self.rmsprop_decay < 1.0) {
            return Err(ConfigError::bad(
                "rmsprop_decay",
                self.rmsprop_decay,
                "must be in (0, 1)",
            ));
        }
        if self.nesterov && (self.optimizer != OptimizerKind::Sgd || self.momentum == 0.0) {
            return Err(ConfigError::bad(
                "nesterov",
                "true",
                "needs optimizer = \"sgd\" and momentum > 0",
            ));
        }
        if !self.forget_bias.is_finite() {
            return Err(ConfigError::bad(
                "forget_bias",
                self.forget_bias,
                "must be finite",
            ));
        }
        match (self.task.reads_text(), &self.text) {
            (true, None) => {
                return Err(ConfigError::bad(
                    "text",
                    "(missing)",
                    "charlm needs a text file: text = \"path.txt\"",
                ))
            }
            (false, Some(p)) => {
                return Err(ConfigError::bad(
                    "text",
                    p.display(),
                    "only the charlm task reads a text file",
                ))
            }
            _ => {}
        }
        if matches!(self.lr_schedule, LrSchedule::Epoch { .. }) && self.task != TaskKind::Charlm {
            return Err(ConfigError::bad(
                "lr_schedule",
                self.lr_schedule,
                format!(
                    "an epoch is one pass over the training text of charlm; the {} task draws \
                     fresh sequences: use step:<every>:<gamma>",
                    self.task
                ),
            ));
        }
        if self.stop_at_success && !self.task.has_criterion() {
            return Err(ConfigError::bad(
                "stop_at_success",
                true,
                format!(
                    "the {} task has no success criterion to stop at: leave stop_at_success out",
                    self.task
                ),
            ));
        }
        if self.init == Init::Identity && self.cell != CellKind::Rnn {
            // IRNN's identity W_hh makes h_t = relu(h_{t-1} + W_ih x_t): an identity gate block
            // of an LSTM or GRU has no such meaning, so it is refused rather than guessed.
            return Err(ConfigError::bad(
                "init",
                "identity",
                format!(
                    "identity (IRNN) applies to rnn cells only; for cell = \"{}\" use default, \
                     uniform:<a>, normal:<σ>, smart-tanh (per gate block) or orthogonal (per \
                     gate block)",
                    self.cell
                ),
            ));
        }
        self.validate_regularizer()?;
        self.validate_model()?;
        self.validate_tbptt()
    }

    /// Pascanu's Ω is built on a vanilla RNN's step Jacobian `diag(f'(h_k)) W_hh` and on the
    /// gradient ∂C/∂h_k of one stack: an LSTM's or GRU's recurrence (gates, a cell state) and
    /// an encoder-decoder's two stacks are refused, not approximated.
    fn validate_regularizer(&self) -> Result<(), ConfigError> {
        if self.regularizer == Regularizer::None {
            return Ok(());
        }
        let reason = if self.model == ModelKind::Seq2seq {
            "Pascanu's Ω is implemented for one stack of vanilla RNN layers (model = \"stack\", \
             cell = \"rnn\"), not for seq2seq's encoder and decoder: use regularizer = \"none\""
                .to_string()
        } else if self.cell != CellKind::Rnn {
            format!(
                "Pascanu's Ω applies to vanilla RNN cells only (cell = \"rnn\", tanh or relu): \
                 it is defined on the step Jacobian diag(f'(h_k)) W_hh of h_k = f(W_ih x_k + \
                 W_hh h_(k-1) + b), which a{} {} does not have; use regularizer = \"none\"",
                if self.cell == CellKind::Lstm { "n" } else { "" },
                self.cell
            )
        } else {
            return Ok(());
        };
        Err(ConfigError::bad("regularizer", self.regularizer, reason))
    }

    /// Checks TBPTT(k1, k2): each at least 1, k1 <= k2, and a `truncation_k2` alone has a k1
    /// to go with (`truncation = k` or `truncation_k1`).
    fn validate_tbptt(&self) -> Result<(), ConfigError> {
        for (key, k) in [
            ("truncation_k1", self.truncation_k1),
            ("truncation_k2", self.truncation_k2),
        ] {
            if k == Some(0) {
                return Err(ConfigError::bad(
                    key,
                    0,
                    "must be at least 1 (time steps; leave it out for full BPTT)",
                ));
            }
        }
        let (k1, k2) = self.tbptt();
        match (self.truncation_k1, self.truncation_k2, self.truncation) {
            (None, Some(k2), Truncation::Full) => Err(ConfigError::bad(
                "truncation_k2",
                k2,
                format!(
                    "says how far to backpropagate, but not how often: add truncation_k1 = k \
                     with 1 <= k <= {k2} (or truncation = k)"
                ),
            )),
            (None, Some(_), Truncation::K(k)) if k > k2 => Err(ConfigError::bad(
                "truncation",
                k,
                format!(
                    "with truncation_k2 = {k2}, truncation = k is TBPTT(k, {k2}), which needs \
                     k <= {k2}"
                ),
            )),
            _ if k1 > k2 => Err(ConfigError::bad(
                "truncation_k1",
                k1,
                format!("must not exceed truncation_k2 = {k2}"),
            )),
            _ => Ok(()),
        }
    }

    /// Checks that the model and the task go together: seq2seq trains on the source-target
    /// tasks only, and they need it; `reverse_source` and the general TBPTT(k1, k2) form are
    /// for one kind each.
    fn validate_model(&self) -> Result<(), ConfigError> {
        let seq2seq_tasks = "reverse, addition or copy-seq";
        match (self.model, self.task.is_seq2seq()) {
            (ModelKind::Seq2seq, false) => Err(ConfigError::bad(
                "model",
                "seq2seq",
                format!(
                    "the {} task has no source and target sequences: seq2seq trains on \
                     {seq2seq_tasks}; for {} use model = \"stack\" (the default)",
                    self.task, self.task
                ),
            )),
            (ModelKind::Stack, true) => Err(ConfigError::bad(
                "task",
                self.task,
                "a sequence-to-sequence task: it needs model = \"seq2seq\" (an encoder reads \
                 the source, a decoder emits the target)",
            )),
            (ModelKind::Stack, false) if self.reverse_source => Err(ConfigError::bad(
                "reverse_source",
                true,
                "only a seq2seq model reads a source to reverse: set model = \"seq2seq\" with \
                 task reverse, addition or copy-seq, or leave reverse_source out",
            )),
            (ModelKind::Seq2seq, true)
                if self.truncation_k1.is_some() || self.truncation_k2.is_some() =>
            {
                let key = if self.truncation_k1.is_some() {
                    "truncation_k1"
                } else {
                    "truncation_k2"
                };
                Err(ConfigError::bad(
                    key,
                    self.truncation_k1
                        .or(self.truncation_k2)
                        .unwrap_or_default(),
                    "seq2seq has one loss window (the decoder's) and truncates only the \
                     encoder's backward: use truncation = k (the encoder's last k steps)",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Recurrent layers of the model: `depth`, or the encoder's and the decoder's of seq2seq.
    pub fn recurrent_layers(&self) -> usize {
        match self.model {
            ModelKind::Stack => self.depth,
            ModelKind::Seq2seq => 2 * self.depth,
        }
    }

    /// The TBPTT(k1, k2) of this configuration in time steps; `full` is (∞, ∞) (`usize::MAX`),
    /// which a window of T time steps clamps to (T, T).
    pub fn tbptt(&self) -> (usize, usize) {
        let k = match self.truncation {
            Truncation::Full => usize::MAX,
            Truncation::K(k) => k,
        };
        let k1 = self.truncation_k1.unwrap_or(k);
        let k2 = self.truncation_k2.unwrap_or(k.max(k1));
        (k1, k2)
    }
}

/// The canonical TOML of the entries of `values` that differ from `defaults` (a key missing
/// from `defaults` always appears), in the order of `values`.
pub fn identity_toml(values: &toml::Table, defaults: &toml::Table) -> String {
    let differing: toml::Table = values
        .iter()
        .filter(|(k, v)| defaults.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    toml::to_string(&differing).expect("a table always serializes")
}

/// Display form of a TOML value: strings bare, everything else as TOML.
pub fn display_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A value as written on the command line: TOML if it parses as a TOML value, otherwise a
/// string (so bare words like `lstm` and `norm:1` need no quotes).
pub fn parse_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.into()))
}

/// Threads per core beyond which [`thread_count`] refuses a count: the work is compute-bound,
/// so more threads than cores only add memory and contention, and 100,000 of them take minutes
/// to start.
pub const MAX_THREADS_PER_CORE: usize = 8;

/// A thread count from its flag (`--threads`, `--jobs`): every core of this machine when not
/// given; 0 and more than [`MAX_THREADS_PER_CORE`] per core are errors (refused, not capped,
/// so that what runs is what was asked for).
pub fn thread_count(given: Option<usize>, flag: &str) -> Result<NonZeroUsize, ConfigError> {
    let cores = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
    let Some(n) = given else {
        return Ok(cores);
    };
    let most = cores.get() * MAX_THREADS_PER_CORE;
    match NonZeroUsize::new(n) {
        None => Err(ConfigError::bad(flag, 0, "must be at least 1")),
        Some(n) if n.get() > most => Err(ConfigError::bad(
            flag,
            n,
            format!(
                "this machine has {cores} cores: use at most {most} ({MAX_THREADS_PER_CORE} per \
                 core; {flag} {cores} runs one per core)"
            ),
        )),
        Some(n) => Ok(n),
    }
}
