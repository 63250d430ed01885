//! Checkpoints: safetensors files with PyTorch parameter names and shapes (`weight_ih_l0`, ...,
//! `head.weight`, `head.bias`), so `nn.LSTM`/`nn.GRU`/`nn.RNN` and an `nn.Linear` head load them with
//! `load_state_dict`, and gradlab loads PyTorch's. An encoder-decoder's stacks are
//! `encoder.weight_ih_l0`, ..., `decoder.weight_ih_l0`, ...: a module with `encoder` and
//! `decoder` RNNs and a `head`. The run configuration (TOML) and, for text tasks, the
//! vocabulary (JSON) travel in the metadata.

use std::collections::HashMap;
use std::path::Path;

use gradlab_kernels::StackShape;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use thiserror::Error;

use super::{kernel_cell, Model};
use crate::config::{CellKind, Nonlinearity, RunConfig};

/// Metadata key of the run configuration (TOML).
pub const META_CONFIG: &str = "gradlab.config";
/// Metadata key of the vocabulary of text tasks (a JSON string).
pub const META_VOCAB: &str = "gradlab.vocab";

/// Why a checkpoint or tensor file could not be read.
#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a safetensors file: {reason}")]
    Format { path: String, reason: String },
    #[error("{path}: tensor '{name}' is missing")]
    Missing { path: String, name: String },
    #[error(
        "{path}: tensor '{name}' has shape {got:?} and dtype {dtype}, expected {want:?} and F32"
    )]
    Shape {
        path: String,
        name: String,
        got: Vec<usize>,
        want: Vec<usize>,
        dtype: String,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// A loaded checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub model: Model,
    pub config: Option<RunConfig>,
    pub vocab: Option<Vec<char>>,
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes named f32 tensors (name, shape, values) with metadata to `path`, atomically.
pub fn save_tensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    meta: HashMap<String, String>,
) -> std::io::Result<()> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| to_bytes(v)).collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), b).expect("shape matches data"),
            )
        })
        .collect();
    let data = safetensors::serialize(views, Some(meta)).map_err(std::io::Error::other)?;
    crate::fs::write_bytes_atomic(path, &data)
}

/// Saves `model` with its configuration and vocabulary.
pub fn save(
    path: &Path,
    model: &Model,
    config: Option<&RunConfig>,
    vocab: Option<&[char]>,
) -> std::io::Result<()> {
    let mut meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    if let Some(c) = config {
        meta.insert(META_CONFIG.into(), c.to_toml());
    }
    if let Some(v) = vocab {
        meta.insert(
            META_VOCAB.into(),
            serde_json::to_string(&v.iter().collect::<String>()).expect("a string serializes"),
        );
    }
    let tensors: Vec<(String, Vec<usize>, &[f32])> = model
        .param_names()
        .into_iter()
        .map(|(n, s, r)| (n, s, &model.params[r]))
        .collect();
    save_tensors(path, &tensors, meta)
}

/// The bytes of a tensor file, and its parsed view.
pub struct TensorFile {
    path: String,
    bytes: Vec<u8>,
}

impl TensorFile {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let file = TensorFile {
            path: path.display().to_string(),
            bytes,
        };
        file.view()?;
        Ok(file)
    }

    fn view(&self) -> Result<SafeTensors<'_>, CheckpointError> {
        SafeTensors::deserialize(&self.bytes).map_err(|e| CheckpointError::Format {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// The file's metadata.
    pub fn metadata(&self) -> HashMap<String, String> {
        SafeTensors::read_metadata(&self.bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .unwrap_or_default()
    }

    /// The names of every tensor, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .view()
            .map(|v| v.names().into_iter().map(String::from).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    fn invalid(&self, reason: String) -> CheckpointError {
        CheckpointError::Invalid {
            path: self.path.clone(),
            reason,
        }
    }

    /// The prefix of the recurrent stack's tensors: none for gradlab's files, the module's name
    /// for a PyTorch state dict of a larger model (`rnn.`, `lstm.`, `module.rnn.`). Tensors of
    /// a bidirectional or projected LSTM are refused, named, since gradlab runs neither.
    /// (`gru.` and any other module name work alike.)
    pub fn stack_prefix(&self) -> Result<String, CheckpointError> {
        let names = self.names();
        let prefixes: Vec<&str> = names
            .iter()
            .filter_map(|n| n.strip_suffix("weight_ih_l0"))
            .filter(|p| p.is_empty() || p.ends_with('.'))
            .collect();
        let prefix = match prefixes[..] {
            [p] => p.to_string(),
            [] => {
                let shown = names.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
                return Err(self.invalid(format!(
                    "no tensor 'weight_ih_l0' (nor '<module>.weight_ih_l0'): it holds {shown}{}; \
                     gradlab reads the parameters of nn.RNN/nn.LSTM/nn.GRU (weight_ih_l0, \
                     weight_hh_l0, bias_ih_l0, bias_hh_l0, ...)",
                    if names.len() > 8 { ", ..." } else { "" }
                )));
            }
            _ => {
                return Err(self.invalid(format!(
                    "several recurrent stacks ({}): gradlab reads one; save only one module's \
                     state_dict",
                    prefixes
                        .iter()
                        .map(|p| format!("{p}weight_ih_l0"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        };
        let stack: Vec<&String> = names.iter().filter(|n| n.starts_with(&prefix)).collect();
        let list = |pred: &dyn Fn(&str) -> bool| -> Vec<String> {
            stack
                .iter()
                .filter(|n| pred(&n[prefix.len()..]))
                .map(|n| n.to_string())
                .collect()
        };
        let reverse = list(&|n| n.ends_with("_reverse"));
        if !reverse.is_empty() {
            return Err(self.invalid(format!(
                "bidirectional weights ({}): gradlab runs one direction; save a model built \
                 with bidirectional=False",
                reverse.join(", ")
            )));
        }
        let projection = list(&|n| n.starts_with("weight_hr_l"));
        if !projection.is_empty() {
            return Err(self.invalid(format!(
                "LSTM projection weights ({}): gradlab has no proj_size; save a model built \
                 with proj_size=0",
                projection.join(", ")
            )));
        }
        Ok(prefix)
    }

    /// The names of the tensors of `shape` in this file (with its [`TensorFile::stack_prefix`]).
    /// Layers beyond the shape's are refused, named, rather than left unread.
    pub fn stack_names(&self, shape: StackShape) -> Result<Vec<String>, CheckpointError> {
        self.stack_names_under(&self.stack_prefix()?, shape)
    }

    /// [`TensorFile::stack_names`] of the stack whose tensors' names start with `prefix`.
    pub fn stack_names_under(
        &self,
        prefix: &str,
        shape: StackShape,
    ) -> Result<Vec<String>, CheckpointError> {
        let file_layers = (0..)
            .take_while(|l| self.has(&format!("{prefix}weight_ih_l{l}")))
            .count();
        if file_layers > shape.layers {
            let extra: Vec<String> = self
                .names()
                .into_iter()
                .filter(|n| {
                    n.strip_prefix(prefix)
                        .and_then(|n| n.rsplit_once("_l"))
                        .and_then(|(_, l)| l.parse::<usize>().ok())
                        .is_some_and(|l| l >= shape.layers)
                })
                .collect();
            return Err(self.invalid(format!(
                "it holds {file_layers} layers but the stack has {} (--layers); the tensors {} \
                 would be left unused: give --layers {file_layers}, or save only the first {} \
                 layers",
                shape.layers,
                extra.join(", "),
                shape.layers
            )));
        }
        Ok(shape
            .param_names()
            .into_iter()
            .map(|(n, _, _)| format!("{prefix}{n}"))
            .collect())
    }

    /// Refuses a file with tensors besides `used`, naming them: nothing is silently ignored.
    pub fn refuse_others(&self, used: &[String], what: &str) -> Result<(), CheckpointError> {
        let others: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| !used.contains(n))
            .collect();
        if others.is_empty() {
            Ok(())
        } else {
            Err(self.invalid(format!(
                "tensors {what} has no place for: {}; remove them from the file",
                others.join(", ")
            )))
        }
    }

    /// Whether a tensor called `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.view()
            .map(|v| v.names().contains(&name))
            .unwrap_or(false)
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>, CheckpointError> {
        let v = self.view()?;
        let t = v.tensor(name).map_err(|_| CheckpointError::Missing {
            path: self.path.clone(),
            name: name.into(),
        })?;
        Ok(t.shape().to_vec())
    }

    /// Tensor `name` as f32, checked against `shape`.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, CheckpointError> {
        let v = self.view()?;
        let t = v.tensor(name).map_err(|_| CheckpointError::Missing {
            path: self.path.clone(),
            name: name.into(),
        })?;
        if t.dtype() != Dtype::F32 || t.shape() != shape {
            return Err(CheckpointError::Shape {
                path: self.path.clone(),
                name: name.into(),
                got: t.shape().to_vec(),
                want: shape.to_vec(),
                dtype: format!("{:?}", t.dtype()),
            });
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// The stack shape of the PyTorch parameters in this file (`nonlinearity` for an RNN).
    pub fn stack_shape(&self, nonlinearity: Nonlinearity) -> Result<StackShape, CheckpointError> {
        self.stack_shape_under(&self.stack_prefix()?, nonlinearity)
    }

    /// [`TensorFile::stack_shape`] of the stack whose tensors' names start with `p`.
    pub fn stack_shape_under(
        &self,
        p: &str,
        nonlinearity: Nonlinearity,
    ) -> Result<StackShape, CheckpointError> {
        let invalid = |reason: String| CheckpointError::Invalid {
            path: self.path.clone(),
            reason,
        };
        let layers = (0..)
            .take_while(|l| self.has(&format!("{p}weight_ih_l{l}")))
            .count();
        let (ih, hh) = (
            self.shape(&format!("{p}weight_ih_l0"))?,
            self.shape(&format!("{p}weight_hh_l0"))?,
        );
        if ih.len() != 2 || hh.len() != 2 || hh[1] == 0 || hh[0] != ih[0] {
            return Err(invalid(format!(
                "weight_ih_l0 {ih:?} and weight_hh_l0 {hh:?} are not (G·H, I) and (G·H, H)"
            )));
        }
        let hidden = hh[1];
        let cell = match hh[0] / hidden {
            1 if hh[0] == hidden => kernel_cell(CellKind::Rnn, nonlinearity),
            3 if hh[0] == 3 * hidden => kernel_cell(CellKind::Gru, nonlinearity),
            4 if hh[0] == 4 * hidden => kernel_cell(CellKind::Lstm, nonlinearity),
            _ => {
                return Err(invalid(format!(
                    "weight_hh_l0 {hh:?}: rows must be H (RNN), 3H (GRU) or 4H (LSTM)"
                )))
            }
        };
        Ok(StackShape {
            cell,
            input: ih[1],
            hidden,
            layers,
        })
    }

    /// The stack's parameters in gradlab's flat layout (read under the file's stack prefix;
    /// layers beyond `shape`'s are an error).
    pub fn stack_params(&self, shape: StackShape) -> Result<Vec<f32>, CheckpointError> {
        self.stack_params_under(&self.stack_prefix()?, shape)
    }

    /// [`TensorFile::stack_params`] of the stack whose tensors' names start with `prefix`.
    pub fn stack_params_under(
        &self,
        prefix: &str,
        shape: StackShape,
    ) -> Result<Vec<f32>, CheckpointError> {
        let names = self.stack_names_under(prefix, shape)?;
        let mut params = vec![0.0; shape.num_params()];
        for (name, (_, dims, range)) in names.iter().zip(shape.param_names()) {
            params[range].copy_from_slice(&self.f32(name, &dims)?);
        }
        Ok(params)
    }

    /// The output head: `head.weight` (O, `hidden`) and `head.bias` (O) as gradlab names them,
    /// or the one other `<module>.weight` and `<module>.bias` pair a PyTorch model gives it
    /// (`linear.`, `fc.`, `module.decoder.`, ...) among the tensors not in `stack`.
    pub fn head_names(
        &self,
        stack: &[String],
        hidden: usize,
    ) -> Result<(String, String), CheckpointError> {
        if self.has("head.weight") {
            return Ok(("head.weight".into(), "head.bias".into()));
        }
        let rest: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| !stack.contains(n))
            .collect();
        let pairs: Vec<&str> = rest
            .iter()
            .filter_map(|n| n.strip_suffix(".weight"))
            .filter(|m| rest.contains(&format!("{m}.bias")))
            .filter(|m| {
                let w = self.shape(&format!("{m}.weight")).unwrap_or_default();
                w.len() == 2 && w[1] == hidden
            })
            .collect();
        match pairs[..] {
            [m] => Ok((format!("{m}.weight"), format!("{m}.bias"))),
            [] => Err(self.invalid(format!(
                "no output head: expected head.weight (O, {hidden}) and head.bias (O), or one \
                 nn.Linear's <name>.weight and <name>.bias (e.g. linear.weight, fc.weight); \
                 other tensors: {}",
                if rest.is_empty() {
                    "none".to_string()
                } else {
                    rest.join(", ")
                }
            ))),
            _ => Err(self.invalid(format!(
                "several possible output heads ({}): gradlab has one linear head; save the \
                 stack and one nn.Linear",
                pairs.join(", ")
            ))),
        }
    }
}

/// The tensor-name prefixes of an encoder-decoder's two stacks.
const SEQ2SEQ_PREFIXES: [&str; 2] = ["encoder.", "decoder."];

/// Loads a checkpoint written by [`save`], or a PyTorch state dict of an nn.RNN/nn.LSTM/nn.GRU and
/// one nn.Linear, whatever their module names (`rnn.weight_ih_l0`, `fc.weight`, ...), or of an
/// encoder-decoder (`encoder.weight_ih_l0`, `decoder.weight_ih_l0`, a linear head). A tensor
/// with no place in the model is an error that names it.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let file = TensorFile::read(path)?;
    let meta = file.metadata();
    let invalid = |reason: String| CheckpointError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let config = match meta.get(META_CONFIG) {
        Some(text) => Some(
            RunConfig::from_toml(text)
                .map_err(|e| invalid(format!("bad {META_CONFIG} metadata: {e}")))?,
        ),
        None => None,
    };
    let vocab = match meta.get(META_VOCAB) {
        Some(v) => Some(
            serde_json::from_str::<String>(v)
                .map_err(|e| invalid(format!("bad {META_VOCAB} metadata: {e}")))?
                .chars()
                .collect(),
        ),
        None => None,
    };
    let nonlinearity = config
        .as_ref()
        .map_or(Nonlinearity::Tanh, |c| c.nonlinearity);
    let seq2seq = SEQ2SEQ_PREFIXES
        .iter()
        .all(|p| file.has(&format!("{p}weight_ih_l0")));
    let model = if seq2seq {
        load_seq2seq(&file, nonlinearity)?
    } else {
        let stack = file.stack_shape(nonlinearity)?;
        let mut used = file.stack_names(stack)?;
        let (weight, bias) = read_head(&file, &mut used, stack.hidden)?;
        file.refuse_others(&used, "a recurrent stack and one linear head")?;
        let mut model = Model::new(stack, bias.len());
        model.params[..stack.num_params()].copy_from_slice(&file.stack_params(stack)?);
        set_head(&mut model, &weight, &bias);
        model
    };
    Ok(Checkpoint {
        model,
        config,
        vocab,
    })
}

/// An encoder-decoder from the tensors under `encoder.` and `decoder.` and a linear head.
fn load_seq2seq(file: &TensorFile, nonlinearity: Nonlinearity) -> Result<Model, CheckpointError> {
    let [enc, dec] = SEQ2SEQ_PREFIXES;
    let (encoder, decoder) = (
        file.stack_shape_under(enc, nonlinearity)?,
        file.stack_shape_under(dec, nonlinearity)?,
    );
    if (encoder.cell, encoder.hidden, encoder.layers)
        != (decoder.cell, decoder.hidden, decoder.layers)
    {
        return Err(file.invalid(format!(
            "the encoder ({:?}, hidden {}, {} layers) and the decoder ({:?}, hidden {}, {} \
             layers) differ: gradlab's decoder starts from the encoder's final state of every \
             layer, so their cell, hidden size and depth must agree",
            encoder.cell,
            encoder.hidden,
            encoder.layers,
            decoder.cell,
            decoder.hidden,
            decoder.layers
        )));
    }
    let mut used = file.stack_names_under(enc, encoder)?;
    used.extend(file.stack_names_under(dec, decoder)?);
    let (weight, bias) = read_head(file, &mut used, decoder.hidden)?;
    file.refuse_others(&used, "an encoder, a decoder and one linear head")?;
    let mut model = Model::seq2seq(encoder, decoder, bias.len());
    model.params[..decoder.num_params()].copy_from_slice(&file.stack_params_under(dec, decoder)?);
    let encoder_range = model
        .encoder_range()
        .expect("a seq2seq model has an encoder");
    model.params[encoder_range].copy_from_slice(&file.stack_params_under(enc, encoder)?);
    set_head(&mut model, &weight, &bias);
    Ok(model)
}

/// The head's weight `(O, hidden)` and bias `(O)` among the tensors not in `used` (see
/// [`TensorFile::head_names`]); their names are added to `used`.
fn read_head(
    file: &TensorFile,
    used: &mut Vec<String>,
    hidden: usize,
) -> Result<(Vec<f32>, Vec<f32>), CheckpointError> {
    let (head_w, head_b) = file.head_names(used, hidden)?;
    let head = file.shape(&head_w)?;
    if head.len() != 2 || head[1] != hidden {
        return Err(file.invalid(format!("{head_w} {head:?} must be (O, {hidden})")));
    }
    let weight = file.f32(&head_w, &head)?;
    let bias = file.f32(&head_b, &[head[0]])?;
    used.extend([head_w, head_b]);
    Ok((weight, bias))
}

fn set_head(model: &mut Model, weight: &[f32], bias: &[f32]) {
    let (w, b) = model.head_ranges();
    model.params[w].copy_from_slice(weight);
    model.params[b].copy_from_slice(bias);
}
