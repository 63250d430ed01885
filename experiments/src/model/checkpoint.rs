//! Checkpoints: safetensors files with PyTorch parameter names and shapes (`weight_ih_l0`, ...,
//! `head.weight`, `head.bias`), so `nn.LSTM`/`nn.RNN` and an `nn.Linear` head load them with
//! `load_state_dict`, and gradlab loads PyTorch's. The run configuration (TOML) and, for text
//! tasks, the vocabulary (JSON) travel in the metadata.

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
        let invalid = |reason: String| CheckpointError::Invalid {
            path: self.path.clone(),
            reason,
        };
        let layers = (0..)
            .take_while(|l| self.has(&format!("weight_ih_l{l}")))
            .count();
        if layers == 0 {
            return Err(CheckpointError::Missing {
                path: self.path.clone(),
                name: "weight_ih_l0".into(),
            });
        }
        let (ih, hh) = (self.shape("weight_ih_l0")?, self.shape("weight_hh_l0")?);
        if ih.len() != 2 || hh.len() != 2 || hh[1] == 0 || hh[0] != ih[0] {
            return Err(invalid(format!(
                "weight_ih_l0 {ih:?} and weight_hh_l0 {hh:?} are not (G·H, I) and (G·H, H)"
            )));
        }
        let hidden = hh[1];
        let cell = match hh[0] / hidden {
            1 if hh[0] == hidden => kernel_cell(CellKind::Rnn, nonlinearity),
            4 if hh[0] == 4 * hidden => kernel_cell(CellKind::Lstm, nonlinearity),
            _ => {
                return Err(invalid(format!(
                    "weight_hh_l0 {hh:?}: rows must be H (RNN) or 4H (LSTM)"
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

    /// The stack's parameters in gradlab's flat layout.
    pub fn stack_params(&self, shape: StackShape) -> Result<Vec<f32>, CheckpointError> {
        let mut params = vec![0.0; shape.num_params()];
        for (name, dims, range) in shape.param_names() {
            params[range].copy_from_slice(&self.f32(&name, &dims)?);
        }
        Ok(params)
    }
}

/// Loads a checkpoint written by [`save`] (or a PyTorch state dict with a `head`).
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
    let stack = file.stack_shape(nonlinearity)?;
    let head = file.shape("head.weight")?;
    if head.len() != 2 || head[1] != stack.hidden {
        return Err(invalid(format!(
            "head.weight {head:?} must be (O, {})",
            stack.hidden
        )));
    }
    let mut model = Model::new(stack, head[0]);
    let n = stack.num_params();
    model.params[..n].copy_from_slice(&file.stack_params(stack)?);
    let (w, b) = model.head_ranges();
    model.params[w].copy_from_slice(&file.f32("head.weight", &head)?);
    model.params[b].copy_from_slice(&file.f32("head.bias", &[head[0]])?);
    Ok(Checkpoint {
        model,
        config,
        vocab,
    })
}
