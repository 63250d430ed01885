//! What a training run emits: one [`StepRow`] per logged update (`steps` table, its per-layer
//! values the `layers` table), [`FlowRow`]s of the gradient-flow profile (`flow` table),
//! [`SpectrumRow`]s of the Jacobian diagnostics (`spectrum` table) and the run's [`Outcome`]
//! (`runs` table). Column names and types on disk are in `results/README.md`. The rows also
//! travel in mid-run checkpoints ([`super::resume`]), bit for bit.

use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Diverged,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Diverged => "diverged",
        }
    }
}

/// One logged update (`steps` table).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// The update's index, from 0.
    pub step: usize,
    pub loss: f64,
    /// Global gradient norm before and after clipping.
    pub grad_norm: f64,
    pub grad_norm_clipped: f64,
    pub clipped: bool,
    pub lr: f64,
    /// Pre-clip gradient norm of each recurrent layer.
    pub grad_norm_layers: Vec<f64>,
    pub eval_loss: Option<f64>,
    pub eval_metric: Option<f64>,
    pub trunc_cosine: Option<f64>,
    pub trunc_norm_ratio: Option<f64>,
    /// Pascanu's norm-preservation ratio ‖∂L/∂h_t‖ / ‖∂L/∂h_{t+1}‖ of the probe's top layer,
    /// mean and minimum over the window.
    pub norm_ratio_mean: Option<f64>,
    pub norm_ratio_min: Option<f64>,
    /// Pascanu et al.'s regulariser Ω of the update, summed over the layers (a layer where no
    /// pair counted adds 0; the objective's term is α times it); `None` without the regulariser.
    pub omega: Option<f64>,
    /// Per layer: its Ω (`None` without the regulariser, or where no pair counted).
    pub omega_layers: Vec<Option<f64>>,
    /// Per layer; spectral radius is `None` for LSTM and GRU (W_hh is not square).
    pub spectral_radius: Vec<Option<f64>>,
    pub sigma_max: Vec<Option<f64>>,
    /// Per layer: the LSTM's forget gate f, the GRU's update gate z (`None` for an RNN).
    pub forget_mean: Vec<Option<f64>>,
    pub forget_saturation: Vec<Option<f64>>,
    /// Per layer: ‖WᵀW − I‖_F / √H of W_hh (RMS over gate blocks).
    pub orthogonality: Vec<Option<f64>>,
    /// Per layer, at the updates whose spectrum was measured: the largest Lyapunov exponent,
    /// the Kaplan-Yorke dimension and the number of positive exponents.
    pub lyapunov_max: Vec<Option<f64>>,
    pub kaplan_yorke_dim: Vec<Option<f64>>,
    pub lyapunov_positive: Vec<Option<usize>>,
}

/// What a [`SpectrumRow`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpectrumKind {
    /// A Lyapunov exponent of the layer's recurrence, in nats per time step.
    Lyapunov,
    /// A singular value of the product of the last `k` step Jacobians, `∂s_t/∂s_{t−k}`.
    JacobianSv(usize),
}

impl SpectrumKind {
    /// The `kind` column: `lyapunov` or `jacobian_sv_k<k>`.
    pub fn name(self) -> String {
        match self {
            SpectrumKind::Lyapunov => "lyapunov".into(),
            SpectrumKind::JacobianSv(k) => format!("jacobian_sv_k{k}"),
        }
    }
}

/// One value of a spectrum of one layer (`spectrum` table); `index` 0 is the largest.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpectrumRow {
    /// The update at which it was measured (with the parameters before that update).
    pub step: usize,
    pub layer: usize,
    pub kind: SpectrumKind,
    pub index: usize,
    pub value: f64,
}

/// Where a gradient-flow row comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowSource {
    /// The training window's backward (inside the truncation).
    Train,
    /// The final time step's loss backpropagated through the whole window without truncation.
    Probe,
    /// seq2seq: the whole loss backpropagated through the decoder and across the bottleneck
    /// into every encoder step, without truncation (lag: steps before the end of the source).
    Encoder,
    /// seq2seq: the decoder's steps (lag: steps before the end of the decoder's window).
    Decoder,
}

impl FlowSource {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowSource::Train => "train",
            FlowSource::Probe => "probe",
            FlowSource::Encoder => "encoder",
            FlowSource::Decoder => "decoder",
        }
    }
}

/// ‖∂L/∂h_t‖ of one layer at one lag (`flow` table).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowRow {
    /// The update at which it was measured.
    pub step: usize,
    pub layer: usize,
    /// Time steps before the end of the window (0: the last time step).
    pub lag: usize,
    pub source: FlowSource,
    pub grad_norm: f64,
}

/// Appends the rows of a flow profile `[L][len]` (layer-major, oldest time step first).
pub fn push_flow(
    rows: &mut Vec<FlowRow>,
    step: usize,
    flow: &[f32],
    len: usize,
    source: FlowSource,
) {
    if len == 0 {
        return;
    }
    for (layer, per_layer) in flow.chunks_exact(len).enumerate() {
        for (t, &g) in per_layer.iter().enumerate() {
            rows.push(FlowRow {
                step,
                layer,
                lag: len - 1 - t,
                source,
                grad_norm: f64::from(g),
            });
        }
    }
}

/// Per-run results (`runs` table).
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: Status,
    /// Evaluation loss at the end (NaN if the run diverged).
    pub final_loss: f64,
    /// Lowest evaluation loss seen.
    pub best_loss: f64,
    /// Task metric of the final evaluation (see [`crate::task::Task::metric`]).
    pub metric: f64,
    /// Whether the metric meets the task's criterion (None: the task has none).
    pub success: Option<bool>,
    pub diverged_at_step: Option<usize>,
    /// Fraction of updates whose gradient was clipped.
    pub clip_fraction: f64,
    /// Slope of ln ‖∂L/∂h_t‖ per step of lag, fitted on the last probe of the top layer;
    /// `None` where undefined (see [`super::diagnostics::decay_rate`]).
    pub decay_rate: Option<f64>,
    /// Updates done.
    pub steps: usize,
    /// When training started (wall clock).
    pub started_at: std::time::SystemTime,
    pub wall_seconds: f64,
    pub steps_per_sec: f64,
}

/// Everything a run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub outcome: Outcome,
    /// The logged updates.
    pub logged: Vec<StepRow>,
    pub flow: Vec<FlowRow>,
    pub spectrum: Vec<SpectrumRow>,
}
