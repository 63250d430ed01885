//! The run configuration: the keys of DESIGN.md ("Config keys"), from TOML or from flags.
//!
//! Every key has a default, unknown keys are errors, and [`RunConfig::validate`] rejects
//! impossible values with a message that names the key, the value and what is allowed.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The task a run trains on (DESIGN.md "Tasks").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    Adding,
    Copy,
    TemporalOrder,
    Charlm,
    Hello,
}

/// Recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellKind {
    Rnn,
    Lstm,
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

/// Implements `Display` and serde as the string form, `FromStr` as its parser.
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
                s.parse().map_err(|e: String| {
                    serde::de::Error::custom(format!("{e}; expected {}", $expected))
                })
            }
        }
    };
}

fn positive(what: &str, v: &str) -> Result<f32, String> {
    match v.parse::<f32>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!(
            "invalid {what} threshold '{v}': must be a finite number > 0"
        )),
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
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "none" => Ok(Clip::None),
            Some(("norm", t)) => positive("norm", t).map(Clip::Norm),
            Some(("value", t)) => positive("value", t).map(Clip::Value),
            _ => Err(format!("invalid clip '{s}'")),
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
string_form!(Clip, "none, norm:<τ> or value:<τ> with τ > 0");

/// Parameter initialisation (DESIGN.md "Training semantics").
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// PyTorch's U(-1/√H, 1/√H) for every parameter.
    Default,
    /// N(0, σ) weights, zero biases.
    Normal(f32),
    /// Pascanu et al. 2013: sparse W_hh (15 inputs per unit) rescaled to spectral radius 0.95.
    SmartTanh,
    /// IRNN (Le et al. 2015): W_hh = I, zero biases, small input weights.
    Identity,
    /// Orthogonal W_hh (per gate block).
    Orthogonal,
}

impl FromStr for Init {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "default" => Ok(Init::Default),
            None if s == "smart-tanh" => Ok(Init::SmartTanh),
            None if s == "identity" => Ok(Init::Identity),
            None if s == "orthogonal" => Ok(Init::Orthogonal),
            Some(("normal", sd)) => match sd.parse::<f32>() {
                Ok(x) if x.is_finite() && x > 0.0 => Ok(Init::Normal(x)),
                _ => Err(format!("invalid init '{s}': σ must be a finite number > 0")),
            },
            _ => Err(format!("invalid init '{s}'")),
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Default => write!(f, "default"),
            Init::Normal(s) => write!(f, "normal:{s}"),
            Init::SmartTanh => write!(f, "smart-tanh"),
            Init::Identity => write!(f, "identity"),
            Init::Orthogonal => write!(f, "orthogonal"),
        }
    }
}
string_form!(
    Init,
    "default, normal:<σ>, smart-tanh, identity or orthogonal"
);

/// Learning-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    Constant,
    /// Multiply the learning rate by `gamma` every `every` steps.
    Step {
        every: usize,
        gamma: f64,
    },
}

impl FromStr for LrSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "constant" {
            return Ok(LrSchedule::Constant);
        }
        let bad = || format!("invalid lr_schedule '{s}'");
        let rest = s.strip_prefix("step:").ok_or_else(bad)?;
        let (every, gamma) = rest.split_once(':').ok_or_else(bad)?;
        let every: usize = every.parse().map_err(|_| bad())?;
        let gamma: f64 = gamma.parse().map_err(|_| bad())?;
        if every == 0 || !(gamma.is_finite() && gamma > 0.0) {
            return Err(format!("{}: every must be >= 1 and gamma > 0", bad()));
        }
        Ok(LrSchedule::Step { every, gamma })
    }
}

impl fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LrSchedule::Constant => write!(f, "constant"),
            LrSchedule::Step { every, gamma } => write!(f, "step:{every}:{gamma}"),
        }
    }
}
string_form!(LrSchedule, "constant or step:<every>:<gamma>");

/// Truncation of BPTT: `full`, or k (TBPTT(k, k)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truncation {
    Full,
    K(usize),
}

impl FromStr for Truncation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(Truncation::Full),
            _ => match s.parse::<usize>() {
                Ok(k) if k > 0 => Ok(Truncation::K(k)),
                _ => Err(format!("invalid truncation '{s}'")),
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
                .map_err(|e: String| serde::de::Error::custom(format!("{e}; {expected}"))),
        }
    }
}

/// One run's configuration: a sweep's `[base]`, or `gradlab run --config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Name of the run (default results folder `results/<name>`).
    pub name: String,
    pub task: TaskKind,
    /// T of generated sequences; for `charlm`, the window length of one training step.
    pub seq_len: usize,
    /// The text file of `charlm`.
    pub text: Option<PathBuf>,
    pub cell: CellKind,
    pub nonlinearity: Nonlinearity,
    pub hidden: usize,
    pub depth: usize,
    pub batch: usize,
    /// Optimiser updates.
    pub steps: usize,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub lr_schedule: LrSchedule,
    pub truncation: Truncation,
    /// TBPTT(k1, k2): every k1 steps, backpropagate the losses of those k1 steps k2 steps.
    pub truncation_k1: Option<usize>,
    pub truncation_k2: Option<usize>,
    pub clip: Clip,
    pub init: Init,
    pub forget_bias: f32,
    pub log_every: usize,
    pub eval_every: usize,
    pub eval_sequences: usize,
    pub seed: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            name: "run".into(),
            task: TaskKind::Adding,
            seq_len: 100,
            text: None,
            cell: CellKind::Rnn,
            nonlinearity: Nonlinearity::Tanh,
            hidden: 50,
            depth: 1,
            batch: 20,
            steps: 2000,
            optimizer: OptimizerKind::Sgd,
            lr: 0.01,
            momentum: 0.0,
            nesterov: false,
            lr_schedule: LrSchedule::Constant,
            truncation: Truncation::Full,
            truncation_k1: None,
            truncation_k2: None,
            clip: Clip::Norm(1.0),
            init: Init::Default,
            forget_bias: 1.0,
            log_every: 50,
            eval_every: 500,
            eval_sequences: 1000,
            seed: 0,
        }
    }
}

impl RunConfig {
    /// Parses a TOML run configuration (unknown keys are errors).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))
    }

    /// The TOML form, which [`RunConfig::from_toml`] reads back unchanged.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a RunConfig always serializes")
    }

    /// Sets one key from its string form (`--set key=value`), as if it were in the TOML file.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        self.set_value(key, parse_value(value))
    }

    /// Sets one key to a TOML value, checking the key and the value's type and form.
    pub fn set_value(&mut self, key: &str, value: toml::Value) -> Result<(), ConfigError> {
        let mut table = toml::Table::try_from(&*self).expect("a RunConfig always serializes");
        if !KEYS.contains(&key) {
            return Err(ConfigError::UnknownKey {
                key: key.into(),
                allowed: KEYS.join(", "),
            });
        }
        let shown = value.to_string();
        table.insert(key.into(), value);
        *self = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::BadValue {
                key: key.into(),
                value: shown,
                reason: e.message().into(),
            })?;
        Ok(())
    }

    /// Checks values that parse but cannot be run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, value: String, reason: &str| {
            Err(ConfigError::BadValue {
                key: key.into(),
                value,
                reason: reason.into(),
            })
        };
        for (key, v) in [
            ("hidden", self.hidden),
            ("depth", self.depth),
            ("batch", self.batch),
            ("steps", self.steps),
        ] {
            if v == 0 {
                return bad(key, v.to_string(), "must be at least 1");
            }
        }
        for (key, v) in [
            ("log_every", self.log_every),
            ("eval_every", self.eval_every),
            ("eval_sequences", self.eval_sequences),
        ] {
            if v == 0 {
                return bad(key, v.to_string(), "must be at least 1");
            }
        }
        let min_len = match self.task {
            TaskKind::TemporalOrder => 10,
            TaskKind::Adding => 2,
            _ => 1,
        };
        if self.seq_len < min_len {
            return bad(
                "seq_len",
                self.seq_len.to_string(),
                &format!("must be at least {min_len} for {:?}", self.task),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr.to_string(), "must be a finite number > 0");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", self.momentum.to_string(), "must be in [0, 1)");
        }
        if self.nesterov && (self.optimizer != OptimizerKind::Sgd || self.momentum == 0.0) {
            return bad(
                "nesterov",
                "true".into(),
                "needs optimizer = \"sgd\" and momentum > 0",
            );
        }
        if !self.forget_bias.is_finite() {
            return bad(
                "forget_bias",
                self.forget_bias.to_string(),
                "must be finite",
            );
        }
        match (self.task, &self.text) {
            (TaskKind::Charlm, None) => {
                return bad(
                    "text",
                    "(missing)".into(),
                    "charlm needs a text file: text = \"path.txt\"",
                )
            }
            (TaskKind::Charlm, Some(_)) => {}
            (_, Some(p)) => {
                return bad(
                    "text",
                    p.display().to_string(),
                    "only the charlm task reads a text file",
                )
            }
            _ => {}
        }
        if self.init == Init::Identity && self.cell == CellKind::Lstm {
            return bad(
                "init",
                "identity".into(),
                "identity (IRNN) applies to rnn cells only",
            );
        }
        let (k1, k2) = self.tbptt();
        if k1 > k2 {
            return bad(
                "truncation_k1",
                k1.to_string(),
                &format!("must not exceed truncation_k2 = {k2}"),
            );
        }
        Ok(())
    }

    /// The effective TBPTT(k1, k2) within a window of `seq_len` (or the model's sequence
    /// length, see [`crate::tasks`]): `full` is (T, T).
    pub fn tbptt(&self) -> (usize, usize) {
        let t = usize::MAX;
        let k = match self.truncation {
            Truncation::Full => t,
            Truncation::K(k) => k,
        };
        let k1 = self.truncation_k1.unwrap_or(k);
        let k2 = self.truncation_k2.unwrap_or(k.max(k1));
        (k1, k2)
    }
}

/// Every key of a run configuration.
pub const KEYS: [&str; 25] = [
    "name",
    "task",
    "seq_len",
    "text",
    "cell",
    "nonlinearity",
    "hidden",
    "depth",
    "batch",
    "steps",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "lr_schedule",
    "truncation",
    "truncation_k1",
    "truncation_k2",
    "clip",
    "init",
    "forget_bias",
    "log_every",
    "eval_every",
    "eval_sequences",
    "seed",
];

/// One line of help per key, for the command line (what it is, allowed values).
pub fn key_help(key: &str) -> &'static str {
    match key {
        "name" => "run name, default results folder",
        "task" => "adding | copy | temporal-order | charlm | hello",
        "seq_len" => "T of generated sequences (copy: the delay; charlm: window length)",
        "text" => "text file of charlm",
        "cell" => "rnn | lstm",
        "nonlinearity" => "rnn only: tanh | relu",
        "hidden" => "hidden units per layer",
        "depth" => "stacked layers",
        "batch" => "sequences per step",
        "steps" => "optimizer updates",
        "optimizer" => "sgd | adagrad | rmsprop | adam",
        "lr" => "learning rate",
        "momentum" => "sgd momentum in [0, 1)",
        "nesterov" => "sgd: Nesterov momentum (true | false)",
        "lr_schedule" => "constant | step:<every>:<gamma>",
        "truncation" => "full | k (TBPTT(k, k))",
        "truncation_k1" => "TBPTT(k1, k2): every k1 steps ...",
        "truncation_k2" => "... backpropagate k2 steps",
        "clip" => "none | norm:<τ> | value:<τ>",
        "init" => "default | normal:<σ> | smart-tanh | identity | orthogonal",
        "forget_bias" => "lstm forget-gate bias",
        "log_every" => "steps between logged (and diagnosed) steps",
        "eval_every" => "steps between evaluations",
        "eval_sequences" => "sequences per evaluation (the final one uses at least 10,000)",
        "seed" => "seed of initialisation and data",
        _ => "",
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
