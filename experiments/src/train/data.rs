//! The data of a run as one safetensors file (`gradlab data`): the training batches the run
//! takes, in order, the data it is evaluated on and the model's initial parameters, so that
//! another framework can train on exactly the same sequences (`scripts/torch_twin.py`).
//!
//! The batches come from the run's own start ([`super::start`]): its task, and the generator
//! that the initialisation drew from first. They therefore depend on the seed and on every key
//! that shapes the model or its initialisation (`cell`, `hidden`, `depth`, `init`, ...), not
//! only on the task's keys. The file is built in memory and written atomically; one larger
//! than [`MAX_BYTES`] is refused before anything is generated. Tensor names, shapes and dtypes
//! are in `results/README.md`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use serde_json::json;

use super::eval::FINAL_EVAL_SEQUENCES;
use super::TrainError;
use crate::config::RunConfig;
use crate::memory::Bytes;
use crate::task::{Batch, LossKind, Targets, Task, TaskKind, NO_LABEL};

/// The largest data file: it is built in memory before it is written.
pub const MAX_BYTES: u64 = 2 << 30;

/// The class of a time step without a loss in `targets`: PyTorch's default `ignore_index`, so
/// `F.cross_entropy(logits, targets)` takes the mean over exactly the steps with a loss.
pub const IGNORE_INDEX: i64 = -100;

/// Why a data file was not written.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(
        "{batches} training batches of {per_batch} bytes each, with {} of evaluation data and \
         initial parameters, make {}: more than the {} a data file may hold (it is built in \
         memory); {}",
        Bytes(*fixed as f64),
        Bytes(*total as f64),
        Bytes(MAX_BYTES as f64),
        if *fit > 0 {
            format!("at most {fit} batches fit")
        } else {
            "the evaluation data alone is too large: lower eval_sequences or seq_len".into()
        }
    )]
    TooLarge {
        batches: usize,
        per_batch: u64,
        fixed: u64,
        total: u64,
        fit: u64,
    },
    #[error("cannot write {}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
}

/// What [`export`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Exported {
    /// The file's size.
    pub bytes: u64,
    /// Training batches, and the shape of each: time steps, sequences, input width.
    pub batches: usize,
    pub shape: (usize, usize, usize),
    /// Evaluation windows, and sequences per window.
    pub eval_shape: (usize, usize),
}

/// One tensor of the file: name, dtype, shape and little-endian bytes.
struct Tensor {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// Size in bytes of a tensor of `dtype` and `shape`.
fn size(dtype: Dtype, shape: &[usize]) -> u64 {
    shape.iter().map(|&d| d as u64).product::<u64>() * dtype.bitsize() as u64 / 8
}

/// Batches of one shape stacked on a first axis: the training batches, or the evaluation's
/// windows (`eval_` names, with the metric's mask).
struct Stacked {
    prefix: &'static str,
    /// Batches pushed.
    n: usize,
    /// Time steps, sequences and input width of each batch.
    t: usize,
    b: usize,
    i: usize,
    /// seq2seq: the source's time steps and input width.
    source: Option<(usize, usize)>,
    /// One regression value per sequence (`targets` f32 `[n][B]`), else a class per step.
    regression: bool,
    /// Every input is one-hot: `input_ids` holds the index of its 1.
    ids: bool,
    /// Whether `metric_mask` is written (evaluation data of a task scored per time step).
    metric: bool,
    inputs: Vec<u8>,
    targets: Vec<u8>,
    loss_mask: Vec<u8>,
    metric_mask: Vec<u8>,
    input_ids: Vec<u8>,
    source_inputs: Vec<u8>,
}

impl Stacked {
    fn new(task: &Task, prefix: &'static str, b: usize, metric: bool) -> Self {
        let kind = task.kind;
        Stacked {
            prefix,
            n: 0,
            t: task.time_steps(),
            b,
            i: task.input_size(),
            source: kind.is_seq2seq().then(|| task.source_shape()),
            regression: task.loss() == LossKind::Mse,
            // The adding tasks' inputs are real values; a seq2seq decoder reads zero vectors
            // after the end of its target.
            ids: task.loss() != LossKind::Mse && !kind.is_seq2seq(),
            // The seq2seq tasks' metric is per sequence: the exact match of greedy decoding.
            metric: metric && !kind.is_seq2seq(),
            inputs: Vec::new(),
            targets: Vec::new(),
            loss_mask: Vec::new(),
            metric_mask: Vec::new(),
            input_ids: Vec::new(),
            source_inputs: Vec::new(),
        }
    }

    /// Names (without the prefix), dtypes and shapes of the tensors of `n` batches.
    fn specs(&self, n: usize) -> Vec<(&'static str, Dtype, Vec<usize>)> {
        let (t, b) = (self.t, self.b);
        let mut specs = vec![("inputs", Dtype::F32, vec![n, t, b, self.i])];
        specs.push(match self.regression {
            true => ("targets", Dtype::F32, vec![n, b]),
            false => ("targets", Dtype::I64, vec![n, t, b]),
        });
        specs.push(("loss_mask", Dtype::BOOL, vec![n, t, b]));
        if self.metric {
            specs.push(("metric_mask", Dtype::BOOL, vec![n, t, b]));
        }
        if self.ids {
            specs.push(("input_ids", Dtype::I64, vec![n, t, b]));
        }
        if let Some((t_src, i_src)) = self.source {
            specs.push(("source_inputs", Dtype::F32, vec![n, t_src, b, i_src]));
        }
        specs
    }

    /// Bytes of the tensors of `n` batches.
    fn bytes(&self, n: usize) -> u64 {
        self.specs(n).iter().map(|(_, d, s)| size(*d, s)).sum()
    }

    /// Appends `batch`.
    ///
    /// # Panics
    /// If it is not of the stack's shape.
    fn push(&mut self, task: &Task, batch: &Batch) {
        let (t, b) = (self.t, self.b);
        assert_eq!(
            (batch.time_steps, batch.batch, batch.x.len()),
            (t, b, t * b * self.i),
            "every batch of a stack has its shape"
        );
        self.n += 1;
        self.inputs
            .extend(batch.x.iter().flat_map(|v| v.to_le_bytes()));
        let mut masks = |loss: &dyn Fn(usize, usize) -> bool| {
            for step in 0..t {
                for row in 0..b {
                    let has = loss(step, row);
                    self.loss_mask.push(u8::from(has));
                    if self.metric {
                        let scored = has && task.scored(step);
                        self.metric_mask.push(u8::from(scored));
                    }
                }
            }
        };
        match &batch.targets {
            Targets::Last(values) => {
                masks(&|step, _| step + 1 == t);
                self.targets
                    .extend(values.iter().flat_map(|v| v.to_le_bytes()));
            }
            Targets::Classes(labels) => {
                masks(&|step, row| labels[step * b + row] != NO_LABEL);
                self.targets.extend(labels.iter().flat_map(|&l| {
                    let class = if l == NO_LABEL {
                        IGNORE_INDEX
                    } else {
                        i64::from(l)
                    };
                    class.to_le_bytes()
                }));
            }
        }
        if self.ids {
            for one_hot in batch.x.chunks_exact(self.i) {
                let id = one_hot.iter().position(|&v| v == 1.0);
                debug_assert!(id.is_some(), "a one-hot input has a 1");
                let id = id.map_or(IGNORE_INDEX, |k| k as i64);
                self.input_ids.extend(id.to_le_bytes());
            }
        }
        if let Some(src) = &batch.source {
            self.source_inputs
                .extend(src.x.iter().flat_map(|v| v.to_le_bytes()));
        }
    }

    /// The stacked tensors, named with the prefix.
    fn into_tensors(mut self) -> Vec<Tensor> {
        self.specs(self.n)
            .into_iter()
            .map(|(name, dtype, shape)| {
                let data = std::mem::take(match name {
                    "inputs" => &mut self.inputs,
                    "targets" => &mut self.targets,
                    "loss_mask" => &mut self.loss_mask,
                    "metric_mask" => &mut self.metric_mask,
                    "input_ids" => &mut self.input_ids,
                    _ => &mut self.source_inputs,
                });
                assert_eq!(
                    data.len() as u64,
                    size(dtype, &shape),
                    "{name}: bytes of its shape"
                );
                Tensor {
                    name: format!("{}{name}", self.prefix),
                    dtype,
                    shape,
                    data,
                }
            })
            .collect()
    }
}

/// Checks that `path` can be a new file before anything is generated.
fn check_output(path: &Path) -> Result<(), DataError> {
    let fail = |reason: String| DataError::Output {
        path: path.to_path_buf(),
        reason,
    };
    if path.is_dir() {
        return Err(fail(
            "it is a folder; give a file name, e.g. data.safetensors".into(),
        ));
    }
    let dir = crate::fs::folder_of(path);
    if !dir.is_dir() {
        return Err(fail(format!(
            "the folder {} does not exist; create it first",
            dir.display()
        )));
    }
    Ok(())
}

/// Writes the first `batches` training batches of a run with `cfg` (the ones
/// [`super::Trainer::run_with`] takes, in order), the data of its final evaluation and its
/// initial parameters to `path`, atomically.
pub fn export(cfg: &RunConfig, batches: usize, path: &Path) -> Result<Exported, DataError> {
    let (mut task, model, mut rng) = super::start(cfg)?;
    check_output(path)?;
    let eval_n = cfg.eval_sequences.max(FINAL_EVAL_SEQUENCES);
    let (windows, eval_b) = task.evaluation_shape(eval_n);
    let mut train = Stacked::new(&task, "", cfg.batch, false);
    let mut valid = Stacked::new(&task, "eval_", eval_b, true);
    let per_batch = train.bytes(1);
    let fixed = valid.bytes(windows) + size(Dtype::F32, &[model.params.len()]);
    let total = per_batch
        .saturating_mul(batches as u64)
        .saturating_add(fixed);
    if total > MAX_BYTES {
        return Err(DataError::TooLarge {
            batches,
            per_batch,
            fixed,
            total,
            fit: MAX_BYTES.saturating_sub(fixed) / per_batch,
        });
    }
    // Each sequence is drawn whole in turn, so one batch of `eval_b` holds the evaluator's
    // batches side by side (charlm: its validation windows, one per batch).
    task.evaluation_batches(eval_n, eval_b, cfg.seed)
        .for_each(|b| valid.push(&task, &b));
    for _ in 0..batches {
        let batch = task.train_batch(&mut rng, cfg.batch);
        train.push(&task, &batch);
    }
    let shape = (train.t, train.b, train.i);
    let mut tensors = train.into_tensors();
    tensors.extend(valid.into_tensors());
    tensors.extend(model.param_names().into_iter().map(|(name, shape, r)| {
        Tensor {
            name: format!("init.{name}"),
            dtype: Dtype::F32,
            shape,
            data: model.params[r]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        }
    }));
    let meta = metadata(cfg, &task, batches, (eval_n, windows, eval_b));
    let views = tensors.iter().map(|t| {
        let view = TensorView::new(t.dtype, t.shape.clone(), &t.data).expect("bytes of its shape");
        (t.name.clone(), view)
    });
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| DataError::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    drop(tensors);
    crate::fs::write_bytes_atomic(path, &bytes).map_err(|e| DataError::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Exported {
        bytes: bytes.len() as u64,
        batches,
        shape,
        eval_shape: (windows, eval_b),
    })
}

/// The file's metadata: JSON values, as strings (safetensors' `__metadata__` holds strings).
fn metadata(
    cfg: &RunConfig,
    task: &Task,
    batches: usize,
    (eval_n, windows, eval_b): (usize, usize, usize),
) -> HashMap<String, String> {
    let criterion = task
        .kind
        .criterion()
        .map(|c| json!({"op": c.op(), "threshold": c.threshold()}));
    let (t_src, i_src) = task.source_shape();
    let task_json = json!({
        "name": task.kind,
        "loss": match task.loss() {
            LossKind::Mse => "mse",
            LossKind::CrossEntropy => "cross_entropy",
        },
        "reduction": "mean over the time steps and sequences of loss_mask",
        "metric": task.kind.metric_name(),
        "criterion": criterion,
        "time_steps": task.time_steps(),
        "input_size": task.input_size(),
        "output_size": task.output_size(),
        "source_steps": t_src,
        "source_size": i_src,
        "carries_state": task.carries_state(),
    });
    let mut evaluation = json!({
        "every": cfg.eval_every,
        "sequences": cfg.eval_sequences,
        "final_sequences": eval_n,
        "windows": windows,
        "sequences_per_window": eval_b,
        "carries_state": task.carries_state(),
    });
    let mut meta = HashMap::from([
        ("format".to_string(), "gradlab-data".to_string()),
        ("format_version".to_string(), "1".to_string()),
        ("gradlab_version".to_string(), crate::VERSION.to_string()),
        ("git_commit".to_string(), crate::GIT_COMMIT.to_string()),
        ("run_id".to_string(), crate::sweep::run_id(cfg)),
        (
            "config".to_string(),
            serde_json::to_string(cfg).expect("a RunConfig serializes"),
        ),
        ("task".to_string(), task_json.to_string()),
        ("batches".to_string(), batches.to_string()),
    ]);
    if let Some(corpus) = &task.corpus {
        let vocab: String = corpus.vocab.iter().collect();
        meta.insert("vocab".into(), json!(vocab).to_string());
        if task.carries_state() {
            let (per_stream, _) = corpus.validation_shape(eval_b, cfg.seq_len);
            evaluation["text"] = json!({
                "train_chars": corpus.train.len(),
                "valid_chars": corpus.valid.len(),
                "split": "the first floor(95% of the characters) train, the rest validate",
                "chars_per_stream": per_stream,
                "streams": "validation stream i starts at character i * chars_per_stream of the \
                            validation text; window w holds its characters w*T .. (w+1)*T, each \
                            with the next as target; the state carries from window w to w+1 and \
                            starts at zero",
            });
        }
    }
    let periodic = match task.kind {
        TaskKind::Charlm | TaskKind::Hello => "all of them",
        _ => "the first `sequences` of them",
    };
    evaluation["use"] = json!(format!(
        "the final evaluation (after the last update) uses every window; the one after every \
         `every` updates uses {periodic}"
    ));
    meta.insert("evaluation".into(), evaluation.to_string());
    meta
}
