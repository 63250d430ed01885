//! Training (DESIGN.md "Training semantics" and "Diagnostics").
//!
//! One training step is one window of the task (fresh sequences, or the next `seq_len`
//! characters of each text stream with the state carried) and one optimiser update. Inside the
//! window, TBPTT(k1, k2) holds: every k1 steps, the losses of those k1 steps are backpropagated
//! k2 steps (Williams & Peng); the truncated gradients of the window are summed. With k1 = k2 = k
//! the window is processed in chunks of k with the state carried between them (a shorter last
//! chunk is extended back to k steps, so every loss is backpropagated k2 steps); with k ≥ T this
//! is exactly full BPTT. The loss is the mean over the window's loss terms.
//!
//! A non-finite loss or gradient ends the run with status `diverged`: an outcome, not an error.

use std::collections::HashMap;
use std::time::Instant;

use gradlab_kernels::norm::{clip_global_norm, clip_value, global_norm};
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::rnn::{self, Grads, Workspace};
use gradlab_kernels::{Cell, Par};

use crate::config::{Clip, RunConfig};
use crate::error::TaskError;
use crate::init::{initialize, sigma_max, spectral_radius};
use crate::model::{head_loss, loss_steps, loss_terms, HeadScratch, Model};
use crate::optim::Optimizer;
use crate::tasks::{Batch, MetricAcc, Task};

/// Sequences of the final evaluation of the synthetic tasks (DESIGN.md success criteria).
pub const FINAL_EVAL_SEQUENCES: usize = 10_000;
/// Streams the charlm validation text is cut into (a cold start costs under 2% of its characters
/// on tinyshakespeare's 5%).
pub const VALIDATION_STREAMS: usize = 16;
/// A forget gate counts as saturated outside [0.05, 0.95].
pub const FORGET_SATURATION: f32 = 0.05;

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

/// One logged training step (`steps` table).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepRow {
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
    /// Per layer; spectral radius is `None` for LSTM (W_hh is not square).
    pub spectral_radius: Vec<Option<f64>>,
    pub sigma_max: Vec<Option<f64>>,
    /// Per layer, LSTM only.
    pub forget_mean: Vec<Option<f64>>,
    pub forget_saturation: Vec<Option<f64>>,
}

/// Where a gradient-flow row comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowSource {
    /// The training window's backward (inside the truncation).
    Train,
    /// The final-step loss backpropagated through the whole window without truncation.
    Probe,
}

impl FlowSource {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowSource::Train => "train",
            FlowSource::Probe => "probe",
        }
    }
}

/// ‖∂L/∂h_t‖ of one layer at one lag (`flow` table).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowRow {
    pub step: usize,
    pub layer: usize,
    /// Steps before the end of the window (0: the last step).
    pub lag: usize,
    pub source: FlowSource,
    pub grad_norm: f64,
}

/// Per-run results (`runs` table).
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: Status,
    /// Evaluation loss at the end (NaN if the run diverged).
    pub final_loss: f64,
    /// Lowest evaluation loss seen.
    pub best_loss: f64,
    /// Task metric of the final evaluation (see [`Task::metric`]).
    pub metric: f64,
    /// Whether the metric meets the task's criterion (None: the task has none).
    pub success: Option<bool>,
    pub diverged_at_step: Option<usize>,
    /// Fraction of updates whose gradient was clipped.
    pub clip_fraction: f64,
    /// Slope of ln ‖∂L/∂h_t‖ per step of lag, fitted on the last probe of the top layer.
    pub decay_rate: f64,
    pub steps: usize,
    pub wall_seconds: f64,
    pub steps_per_sec: f64,
}

/// Everything a run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub outcome: Outcome,
    pub steps: Vec<StepRow>,
    pub flow: Vec<FlowRow>,
}

/// The loss and gradient of one window.
struct WindowResult {
    acc: MetricAcc,
    /// Flow `[L][len]` of the last chunk with a loss, and its length.
    flow: Vec<f32>,
    flow_len: usize,
}

/// Trains one model on one task.
pub struct Trainer {
    pub cfg: RunConfig,
    pub task: Task,
    pub model: Model,
    opt: Optimizer,
    par: Par,
    rng: SplitMix64,
    /// Workspaces by (steps, batch).
    ws: HashMap<(usize, usize), Workspace>,
    grads: Vec<f32>,
    chunk_grads: Vec<f32>,
    head: HeadScratch,
    /// Carried state `[L][B][H]` (charlm), and the state the current window started from.
    h: Vec<f32>,
    c: Vec<f32>,
    h_in: Vec<f32>,
    c_in: Vec<f32>,
    /// Reused by every backward: the output gradient of the stack, and the scratch outputs.
    dy: Vec<f32>,
    scratch: BackwardScratch,
}

/// Scratch outputs of one backward call (the parts a trainer does not keep); `dx` stays empty:
/// training needs no input gradient.
#[derive(Default)]
struct BackwardScratch {
    dx: Vec<f32>,
    dh0: Vec<f32>,
    dc0: Vec<f32>,
    flow: Vec<f32>,
}

impl BackwardScratch {
    /// Sized for a `t`-step window of batch `b`, reusing the allocations.
    fn resize(&mut self, model: &Model, t: usize, b: usize) {
        let s = model.stack;
        let lbh = s.layers * b * s.hidden;
        self.dh0.resize(lbh, 0.0);
        self.dc0
            .resize(if s.cell == Cell::Lstm { lbh } else { 0 }, 0.0);
        self.flow.resize(s.layers * t, 0.0);
    }
}

impl Trainer {
    /// Validates `cfg`, sets up its task, and initialises the model from `cfg.seed`.
    pub fn new(cfg: RunConfig, par: Par) -> Result<Self, TrainError> {
        cfg.validate()?;
        let task = Task::new(&cfg)?;
        let mut model = Model::new(&cfg, &task);
        let mut rng = SplitMix64(cfg.seed);
        initialize(&mut model, cfg.init, cfg.forget_bias, &mut rng);
        let n = model.params.len();
        let lbh = cfg.depth * cfg.batch * cfg.hidden;
        let lstm = model.stack.cell == Cell::Lstm;
        Ok(Trainer {
            opt: Optimizer::new(&cfg, n),
            par,
            rng,
            ws: HashMap::new(),
            grads: vec![0.0; n],
            chunk_grads: vec![0.0; model.stack.num_params()],
            head: HeadScratch::default(),
            h: vec![0.0; lbh],
            c: vec![0.0; if lstm { lbh } else { 0 }],
            h_in: Vec::new(),
            c_in: Vec::new(),
            dy: Vec::new(),
            scratch: BackwardScratch::default(),
            cfg,
            task,
            model,
        })
    }

    /// Forward over `x` (`t` steps) from state `(h, c)` in workspace (t, b).
    fn forward(&mut self, x: &[f32], (t, b): (usize, usize), h: &[f32], c: &[f32]) {
        let (params, par) = (
            &self.model.params[..self.model.stack.num_params()],
            self.par,
        );
        let lstm = self.model.stack.cell == Cell::Lstm;
        let c = lstm.then_some(c);
        let ws = self
            .ws
            .entry((t, b))
            .or_insert_with(|| Workspace::new(self.model.stack, t, b));
        rnn::forward(params, x, Some(h), c, ws, par);
    }

    /// The state after `s` steps of the last forward in workspace (t, b), `[L][B][H]`.
    fn state_at(&self, (t, b): (usize, usize), s: usize) -> (Vec<f32>, Vec<f32>) {
        self.ws[&(t, b)].state(s)
    }

    /// Head loss on the output of workspace (t, b) for window steps `steps` (the window starting
    /// at global step `offset`), and, if `scale` is given, backward over the whole window: the
    /// stack gradient is added to `self.grads`, the head's directly. Returns the flow `[L][t]`.
    fn loss_backward(
        &mut self,
        batch: &Batch,
        (offset, t): (usize, usize),
        steps: std::ops::Range<usize>,
        scale: Option<f32>,
        acc: &mut MetricAcc,
    ) -> Option<Vec<f32>> {
        let b = batch.batch;
        let (h, par) = (self.model.stack.hidden, self.par);
        let ws = self.ws.get(&(t, b)).expect("forward ran");
        let stack_len = self.model.stack.num_params();
        if scale.is_some() {
            self.dy.clear();
            self.dy.resize(t * b * h, 0.0);
        }
        // The head's gradient goes straight into its part of `grads` (after the stack's).
        let grad = scale.map(|s| (s, &mut self.dy[..], &mut self.grads[stack_len..]));
        head_loss(
            &self.model,
            &self.task,
            ws.output(),
            &batch.targets,
            (offset, b),
            steps,
            &mut self.head,
            acc,
            grad,
            par,
        );
        scale?;
        self.scratch.resize(&self.model, t, b);
        let scratch = &mut self.scratch;
        let params = &self.model.params[..stack_len];
        let x = &batch.x
            [offset * b * self.model.stack.input..(offset + t) * b * self.model.stack.input];
        let ws = self.ws.get_mut(&(t, b)).expect("forward ran");
        let out = Grads {
            params: &mut self.chunk_grads,
            dx: &mut scratch.dx,
            dh0: &mut scratch.dh0,
            dc0: &mut scratch.dc0,
            flow: &mut scratch.flow,
        };
        rnn::backward(params, x, &self.dy, None, None, t, ws, out, par);
        for (g, c) in self.grads.iter_mut().zip(&self.chunk_grads) {
            *g += c;
        }
        Some(self.scratch.flow.clone())
    }

    /// Loss and summed truncated gradient (into `self.grads`) of one window.
    fn window_gradient(&mut self, batch: &Batch) -> WindowResult {
        let (t, b) = (batch.steps, batch.batch);
        let (k1, k2) = self.cfg.tbptt();
        let (k1, k2) = (k1.min(t), k2.min(t));
        let scale = 1.0 / loss_terms(&batch.targets).max(1) as f32;
        let with_loss = loss_steps(&batch.targets, t, b);
        let i = self.model.stack.input;
        self.grads.fill(0.0);
        let mut acc = MetricAcc::default();
        let (mut flow, mut flow_len) = (Vec::new(), 0);
        (self.h_in, self.c_in) = (self.h.clone(), self.c.clone());
        // Taken, not cloned: both branches set the carried state again at the end.
        let (h0, c0) = (std::mem::take(&mut self.h), std::mem::take(&mut self.c));
        if k1 == k2 {
            // Chunks of k with the state carried: with k = T, one chunk, full BPTT. A shorter last
            // chunk is extended back to k steps (recomputed from the state the previous chunk
            // stored), so that its losses too are backpropagated k2 steps.
            let (mut h, mut c) = (h0, c0);
            for s in (0..t).step_by(k1) {
                let e = (s + k1).min(t);
                let w = if s > 0 {
                    e.saturating_sub(k2).max(s - k1)
                } else {
                    s
                };
                if w < s {
                    (h, c) = self.state_at((k1, b), w - (s - k1));
                }
                self.forward(&batch.x[w * b * i..e * b * i], (e - w, b), &h, &c);
                let steps = with_loss.start.max(s).min(e) - w..with_loss.end.min(e).max(s) - w;
                if !steps.is_empty() {
                    if let Some(f) =
                        self.loss_backward(batch, (w, e - w), steps, Some(scale), &mut acc)
                    {
                        (flow, flow_len) = (f, e - w);
                    }
                }
                (h, c) = self.state_at((e - w, b), e - w);
            }
            (self.h, self.c) = (h, c);
        } else {
            // TBPTT(k1 < k2): one forward for the states, then for every k1 steps a window of k2
            // recomputed from the state at its start (bit-identical to the first forward).
            self.forward(&batch.x, (t, b), &h0, &c0);
            let (h_end, c_end) = self.state_at((t, b), t);
            for s in (0..t).step_by(k1) {
                let (e, w) = ((s + k1).min(t), (s + k1).min(t).saturating_sub(k2));
                let steps = with_loss.start.max(s).min(e) - w..with_loss.end.min(e).max(s) - w;
                if steps.is_empty() {
                    continue;
                }
                let (hw, cw) = self.state_at((t, b), w);
                self.forward(&batch.x[w * b * i..e * b * i], (e - w, b), &hw, &cw);
                if let Some(f) = self.loss_backward(batch, (w, e - w), steps, Some(scale), &mut acc)
                {
                    (flow, flow_len) = (f, e - w);
                }
            }
            (self.h, self.c) = (h_end, c_end);
        }
        if !self.task.carries_state() {
            self.h.fill(0.0);
            self.c.fill(0.0);
        }
        WindowResult {
            acc,
            flow,
            flow_len,
        }
    }

    /// The mean loss of `batch` and its gradient (truncated as configured, before clipping),
    /// from the current parameters and the carried state, which it then advances.
    pub fn loss_and_gradient(&mut self, batch: &Batch) -> (f64, &[f32]) {
        let res = self.window_gradient(batch);
        (res.acc.loss(), &self.grads)
    }

    /// Evaluates on `n` fresh sequences (synthetic), the validation text (charlm) or the hello
    /// sequence; the model is not changed.
    pub fn evaluate(&mut self, n: usize) -> MetricAcc {
        let mut acc = MetricAcc::default();
        let b = self.cfg.batch.max(64);
        let stack = self.model.stack;
        let lbh = |b: usize| stack.layers * b * stack.hidden;
        let lstm = self.model.stack.cell == Cell::Lstm;
        let batches: Vec<Batch> = match self.task.kind {
            // Few long streams: each starts from a zero state, so its first window lacks context.
            crate::config::TaskKind::Charlm => self.task.validation_windows(VALIDATION_STREAMS),
            crate::config::TaskKind::Hello => vec![self.task.fresh_batch(&mut SplitMix64(0), 1)],
            _ => {
                // The same evaluation sequences at every evaluation of a run.
                let mut rng = SplitMix64(self.cfg.seed ^ 0xE7A1_5EED_0000_0001);
                (0..n.div_ceil(b))
                    .map(|k| self.task.fresh_batch(&mut rng, b.min(n - k * b)))
                    .collect()
            }
        };
        let carry = self.task.carries_state();
        let (mut h, mut c) = (Vec::new(), Vec::new());
        for batch in &batches {
            let (t, bb) = (batch.steps, batch.batch);
            if h.len() != lbh(bb) || !carry {
                h = vec![0.0; lbh(bb)];
                c = vec![0.0; if lstm { lbh(bb) } else { 0 }];
            }
            self.forward(&batch.x, (t, bb), &h, &c);
            let steps = loss_steps(&batch.targets, t, bb);
            self.loss_backward(batch, (0, t), steps, None, &mut acc);
            (h, c) = self.state_at((t, bb), t);
        }
        acc
    }

    /// Diagnostics on one batch with the current parameters: truncation bias against full BPTT
    /// (given the truncated gradient `trunc`), the untruncated final-step probe, spectra and
    /// forget gates. Leaves `self.grads` as it found it.
    fn diagnose(
        &mut self,
        batch: &Batch,
        trunc: &[f32],
        row: &mut StepRow,
        flow: &mut Vec<FlowRow>,
        step: usize,
    ) -> Vec<f32> {
        let (t, b) = (batch.steps, batch.batch);
        let saved = std::mem::take(&mut self.grads);
        self.grads = vec![0.0; saved.len()];
        let (h0, c0) = (self.h_in.clone(), self.c_in.clone());
        self.forward(&batch.x, (t, b), &h0, &c0);
        let mut acc = MetricAcc::default();
        // Full BPTT of the same loss.
        let (k1, k2) = self.cfg.tbptt();
        if k1.min(t) == t && k2.min(t) == t {
            (row.trunc_cosine, row.trunc_norm_ratio) = (Some(1.0), Some(1.0));
        } else {
            let scale = 1.0 / loss_terms(&batch.targets).max(1) as f32;
            let steps = loss_steps(&batch.targets, t, b);
            self.loss_backward(batch, (0, t), steps, Some(scale), &mut acc);
            let full = &self.grads;
            let dot: f64 = trunc
                .iter()
                .zip(full)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let (nt, nf) = (global_norm(&[trunc]), global_norm(&[full]));
            row.trunc_cosine = Some(dot / (nt * nf));
            row.trunc_norm_ratio = Some(nt / nf);
            self.grads.fill(0.0);
        }
        // The probe: the final step's loss only, through the whole window.
        let last = loss_steps(&batch.targets, t, b).end.max(1) - 1;
        let terms = match &batch.targets {
            crate::tasks::Targets::Last(y) => y.len(),
            crate::tasks::Targets::Classes(l) => l[last * b..(last + 1) * b]
                .iter()
                .filter(|&&v| v != crate::tasks::NO_LABEL)
                .count(),
        };
        let probe = self
            .loss_backward(
                batch,
                (0, t),
                last..last + 1,
                Some(1.0 / terms.max(1) as f32),
                &mut acc,
            )
            .expect("probe backward");
        push_flow(flow, step, &probe, t, FlowSource::Probe);
        // Spectra and forget gates.
        let s = self.model.stack;
        let ws = &self.ws[&(t, b)];
        let mut rng = SplitMix64(step as u64);
        for l in 0..s.layers {
            let w_hh = &self.model.params[s.layer_ranges(l).w_hh];
            let square = s.cell != Cell::Lstm;
            row.spectral_radius
                .push(square.then(|| spectral_radius(w_hh, s.hidden, &mut rng)));
            row.sigma_max.push(Some(sigma_max(
                w_hh,
                s.cell.gates() * s.hidden,
                s.hidden,
                &mut rng,
            )));
            if s.cell == Cell::Lstm {
                let h = s.hidden;
                let f: Vec<f32> = ws
                    .gates(l)
                    .chunks_exact(4 * h)
                    .flat_map(|g| g[h..2 * h].to_vec())
                    .collect();
                let mean = f.iter().map(|&v| f64::from(v)).sum::<f64>() / f.len() as f64;
                let sat = f
                    .iter()
                    .filter(|&&v| !(FORGET_SATURATION..=1.0 - FORGET_SATURATION).contains(&v))
                    .count() as f64
                    / f.len() as f64;
                row.forget_mean.push(Some(mean));
                row.forget_saturation.push(Some(sat));
            } else {
                row.forget_mean.push(None);
                row.forget_saturation.push(None);
            }
        }
        self.grads = saved;
        probe
    }
}

impl Trainer {
    /// Trains for `cfg.steps` updates (or until divergence), evaluates, and returns the record.
    /// `on_step(step, loss)` is called after every update (progress reporting).
    pub fn run(&mut self, mut on_step: impl FnMut(usize, f64)) -> RunRecord {
        let start = Instant::now();
        let (mut rows, mut flow) = (Vec::new(), Vec::new());
        let (mut clipped_steps, mut diverged_at, mut best_loss) = (0usize, None, f64::INFINITY);
        let mut last_probe: Option<(Vec<f32>, usize)> = None;
        let mut steps_done = 0;
        let s = self.model.stack;
        for step in 0..self.cfg.steps {
            let batch = self.task.train_batch(&mut self.rng, self.cfg.batch);
            let res = self.window_gradient(&batch);
            let grad_norm = global_norm(&[&self.grads]);
            let mut row = StepRow {
                step,
                loss: res.acc.loss(),
                grad_norm,
                grad_norm_clipped: grad_norm,
                lr: self.opt.lr(step),
                grad_norm_layers: (0..s.layers)
                    .map(|l| {
                        let r = s.layer_ranges(l);
                        global_norm(&[&self.grads[r.w_ih.start..r.b_hh.end]])
                    })
                    .collect(),
                ..StepRow::default()
            };
            steps_done = step + 1;
            if !row.loss.is_finite() || !grad_norm.is_finite() {
                diverged_at = Some(step);
                rows.push(row);
                break;
            }
            let last = step + 1 == self.cfg.steps;
            let mut log = step.is_multiple_of(self.cfg.log_every) || last;
            if log {
                push_flow(&mut flow, step, &res.flow, res.flow_len, FlowSource::Train);
                let trunc = self.grads.clone();
                let probe = self.diagnose(&batch, &trunc, &mut row, &mut flow, step);
                last_probe = Some((probe, batch.steps));
            }
            (row.grad_norm_clipped, row.clipped) = match self.cfg.clip {
                Clip::None => (grad_norm, false),
                Clip::Norm(tau) => {
                    let out = clip_global_norm(&mut [&mut self.grads], tau);
                    (out.norm_after, out.clipped)
                }
                Clip::Value(tau) => {
                    let changed = clip_value(&mut self.grads, tau);
                    (global_norm(&[&self.grads]), changed > 0)
                }
            };
            clipped_steps += usize::from(row.clipped);
            self.opt.step(&mut self.model.params, &self.grads, step);
            if (step + 1).is_multiple_of(self.cfg.eval_every) && !last {
                let acc = self.evaluate(self.cfg.eval_sequences);
                (row.eval_loss, row.eval_metric) = (Some(acc.loss()), Some(self.task.metric(&acc)));
                best_loss = best_loss.min(acc.loss());
                log = true;
            }
            on_step(step, row.loss);
            if log {
                rows.push(row);
            }
        }
        let (final_loss, metric, success) = match diverged_at {
            Some(_) => (
                f64::NAN,
                f64::NAN,
                self.task.success(f64::NAN).map(|_| false),
            ),
            None => {
                let acc = self.evaluate(self.cfg.eval_sequences.max(FINAL_EVAL_SEQUENCES));
                let metric = self.task.metric(&acc);
                if let Some(row) = rows.last_mut() {
                    (row.eval_loss, row.eval_metric) = (Some(acc.loss()), Some(metric));
                }
                best_loss = best_loss.min(acc.loss());
                (acc.loss(), metric, self.task.success(metric))
            }
        };
        let wall = start.elapsed().as_secs_f64();
        let outcome = Outcome {
            status: if diverged_at.is_some() {
                Status::Diverged
            } else {
                Status::Ok
            },
            final_loss,
            best_loss: if best_loss.is_finite() {
                best_loss
            } else {
                f64::NAN
            },
            metric,
            success,
            diverged_at_step: diverged_at,
            clip_fraction: clipped_steps as f64 / steps_done.max(1) as f64,
            decay_rate: last_probe.map_or(f64::NAN, |(p, len)| decay_rate(&p, s.layers, len)),
            steps: steps_done,
            wall_seconds: wall,
            steps_per_sec: steps_done as f64 / wall,
        };
        RunRecord {
            outcome,
            steps: rows,
            flow,
        }
    }
}

fn push_flow(flow: &mut Vec<FlowRow>, step: usize, f: &[f32], len: usize, source: FlowSource) {
    for (layer, per_layer) in f.chunks_exact(len).enumerate() {
        for (t, &g) in per_layer.iter().enumerate() {
            flow.push(FlowRow {
                step,
                layer,
                lag: len - 1 - t,
                source,
                grad_norm: f64::from(g),
            });
        }
    }
}

/// Least-squares slope of ln ‖∂L/∂h‖ against lag for lags ≥ 1 of the top layer's probe (lag 0
/// also carries the loss's direct gradient). NaN if fewer than two finite positive points.
pub fn decay_rate(probe: &[f32], layers: usize, len: usize) -> f64 {
    let top = &probe[(layers - 1) * len..layers * len];
    let pts: Vec<(f64, f64)> = top
        .iter()
        .enumerate()
        .map(|(t, &g)| ((len - 1 - t) as f64, f64::from(g)))
        .filter(|&(lag, g)| lag >= 1.0 && g > 0.0 && g.is_finite())
        .map(|(lag, g)| (lag, g.ln()))
        .collect();
    if pts.len() < 2 {
        return f64::NAN;
    }
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    sxy / sxx
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] crate::error::ConfigError),
    #[error(transparent)]
    Task(#[from] TaskError),
}
