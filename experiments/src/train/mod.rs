//! Training (DESIGN.md "Training semantics" and "Diagnostics"): the loop of one run.
//!
//! One update is one window of the task (fresh sequences, or the next `seq_len` characters of
//! each text stream with the state carried) through the TBPTT [`engine`] (or, for the
//! encoder-decoder, one batch of source-target pairs through [`seq2seq`]), clipping, and one
//! optimiser step ([`optim`]). Every `log_every` updates a row is logged with the
//! [`diagnostics`], and at the updates `diag_every` names also with the Jacobian [`spectrum`];
//! every `eval_every` updates, and at the end, the model is evaluated
//! ([`eval`]). The loop emits the [`record`] types that `store` writes.
//!
//! A non-finite loss or gradient ends the run with status `diverged`: an outcome, not an error.

pub mod diagnostics;
pub mod engine;
pub mod eval;
pub mod optim;
pub mod record;
pub mod seq2seq;
pub mod spectrum;

use std::time::{Instant, SystemTime};

use gradlab_kernels::norm::{clip_global_norm, clip_value, global_norm};
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::{Par, StackShape};

use crate::config::{Clip, ConfigError, ModelKind, RunConfig};
use crate::model::init::initialize;
use crate::model::{kernel_cell, Model};
use crate::task::{Batch, Task, TextError};
use diagnostics::{decay_rate, Diagnostics};
use engine::{Ctx, Engine};
use eval::{Evaluator, FINAL_EVAL_SEQUENCES};
use optim::Optimizer;
use record::{push_flow, FlowRow, FlowSource, Outcome, RunRecord, Status, StepRow};
use seq2seq::Seq2SeqEngine;
use spectrum::SpectrumDiag;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Text(#[from] TextError),
}

/// Trains one model on one task.
pub struct Trainer {
    pub cfg: RunConfig,
    pub task: Task,
    pub model: Model,
    /// How the kernels may use threads (results do not depend on it).
    pub par: Par,
    opt: Optimizer,
    rng: SplitMix64,
    net: Net,
    /// The Jacobian spectra of a stack (`None`: turned off, or seq2seq).
    spectrum: Option<SpectrumDiag>,
}

/// What computes the gradient, the diagnostics and the evaluation of the model's kind.
#[derive(Debug)]
enum Net {
    /// One stack read by the head: TBPTT windows.
    Stack {
        engine: Box<Engine>,
        diag: Box<Diagnostics>,
        eval: Box<Evaluator>,
    },
    /// Encoder-decoder: source-target batches.
    Seq2Seq(Box<Seq2SeqEngine>),
}

impl Net {
    fn grads(&self) -> &[f32] {
        match self {
            Net::Stack { engine, .. } => engine.grads(),
            Net::Seq2Seq(s) => s.grads(),
        }
    }

    fn grads_mut(&mut self) -> &mut [f32] {
        match self {
            Net::Stack { engine, .. } => engine.grads_mut(),
            Net::Seq2Seq(s) => s.grads_mut(),
        }
    }

    /// The untruncated gradient-flow profile of the last logged update, `[L][len]`, and `len`
    /// (0 before any): the probe of a stack, the encoder's flow of seq2seq.
    fn profile(&self) -> (&[f32], usize) {
        match self {
            Net::Stack { diag, .. } => diag.last_probe(),
            Net::Seq2Seq(s) => s.profile(),
        }
    }
}

impl Trainer {
    /// Validates `cfg`, sets up its task, and initialises the model from `cfg.seed`.
    pub fn new(cfg: RunConfig, par: Par) -> Result<Self, TrainError> {
        cfg.validate()?;
        let mut task = Task::new(cfg.task, cfg.seq_len, cfg.text.as_deref())?;
        task.reverse_source = cfg.reverse_source;
        let stack = StackShape {
            cell: kernel_cell(cfg.cell, cfg.nonlinearity),
            input: task.input_size(),
            hidden: cfg.hidden,
            layers: cfg.depth,
        };
        let (t_src, i_src) = task.source_shape();
        let mut model = match cfg.model {
            ModelKind::Stack => Model::new(stack, task.output_size()),
            ModelKind::Seq2seq => {
                let encoder = StackShape {
                    input: i_src,
                    ..stack
                };
                Model::seq2seq(encoder, stack, task.output_size())
            }
        };
        let mut rng = SplitMix64(cfg.seed);
        initialize(&mut model, cfg.init, cfg.forget_bias, &mut rng);
        let (t, b) = (task.time_steps(), cfg.batch);
        let net = match cfg.model {
            ModelKind::Stack => Net::Stack {
                engine: Box::new(Engine::new(&model, cfg.tbptt(), t, b)),
                diag: Box::new(Diagnostics::new(&model, t, b)),
                eval: Box::new(Evaluator::new(b)),
            },
            // Validation leaves seq2seq the one truncation k = k1 = k2.
            ModelKind::Seq2seq => Net::Seq2Seq(Box::new(Seq2SeqEngine::new(
                &model,
                (t_src, t),
                b,
                cfg.tbptt().1,
            ))),
        };
        Ok(Trainer {
            opt: Optimizer::new(&cfg, model.params.len()),
            net,
            spectrum: match cfg.model {
                ModelKind::Stack => SpectrumDiag::new(&model, &task, cfg.seed, cfg.lyapunov_steps),
                ModelKind::Seq2seq => None,
            },
            par,
            rng,
            cfg,
            task,
            model,
        })
    }

    /// Floating-point work of one update (forward and backward of the stack, or of the
    /// encoder and the decoder).
    pub fn flops_per_update(&self) -> f64 {
        let b = self.cfg.batch;
        let encoder = self
            .model
            .encoder
            .map_or(0.0, |e| e.train_flops(self.task.source_shape().0, b));
        self.model.stack.train_flops(self.task.time_steps(), b) + encoder
    }

    /// The model and task as the engine, diagnostics and evaluation see them, beside those
    /// (borrowed apart).
    fn parts(&mut self) -> (Ctx<'_>, &mut Net) {
        let ctx = Ctx {
            model: &self.model,
            task: &self.task,
            par: self.par,
        };
        (ctx, &mut self.net)
    }

    /// The mean loss of `batch` and its gradient (truncated as configured, before clipping),
    /// from the current parameters and the carried state, which it then advances.
    pub fn loss_and_gradient(&mut self, batch: &Batch) -> (f64, &[f32]) {
        let acc = match self.parts() {
            (ctx, Net::Stack { engine, .. }) => engine.window(ctx, batch),
            (ctx, Net::Seq2Seq(s)) => s.window(ctx, batch),
        };
        (acc.loss(), self.net.grads())
    }

    /// The task's loss and metric on `n` evaluation sequences (see
    /// [`Task::evaluation_batches`]); the model is not changed.
    pub fn evaluate(&mut self, n: usize) -> crate::task::MetricAcc {
        let seed = self.cfg.seed;
        match self.parts() {
            (ctx, Net::Stack { eval, .. }) => eval.evaluate(ctx, n, seed),
            (ctx, Net::Seq2Seq(s)) => s.evaluate(ctx, n, seed),
        }
    }

    /// The diagnostics of the logged update `row.step`, which trained on `batch`: the
    /// diagnostic columns of `row`, and its gradient flow appended to `flow`.
    fn diagnose(&mut self, batch: &Batch, row: &mut StepRow, flow: &mut Vec<FlowRow>) {
        match self.parts() {
            (ctx, Net::Stack { engine, diag, .. }) => {
                let (train_flow, len) = engine.flow();
                push_flow(flow, row.step, train_flow, len, FlowSource::Train);
                diag.diagnose(ctx, engine, batch, row, flow);
            }
            (ctx, Net::Seq2Seq(s)) => s.diagnose(ctx, batch, row, flow),
        }
    }

    /// Trains for `cfg.steps` updates (or until divergence), evaluates, and returns the record.
    /// `on_update(step, loss)` is called after every update (progress reporting).
    pub fn run(&mut self, mut on_update: impl FnMut(usize, f64)) -> RunRecord {
        let (start, started_at) = (Instant::now(), SystemTime::now());
        let (mut logged, mut flow, mut spectra) = (Vec::new(), Vec::new(), Vec::new());
        let (mut clipped_updates, mut diverged_at, mut best_loss) = (0usize, None, f64::INFINITY);
        let mut updates = 0;
        let layers = self.model.layer_ranges();
        for step in 0..self.cfg.steps {
            let batch = self.task.train_batch(&mut self.rng, self.cfg.batch);
            let (loss, _) = self.loss_and_gradient(&batch);
            let grads = self.net.grads();
            let grad_norm = global_norm(&[grads]);
            let mut row = StepRow {
                step,
                loss,
                grad_norm,
                grad_norm_clipped: grad_norm,
                lr: self.opt.lr(step),
                grad_norm_layers: layers
                    .iter()
                    .map(|r| global_norm(&[&grads[r.clone()]]))
                    .collect(),
                ..StepRow::default()
            };
            updates = step + 1;
            if !row.loss.is_finite() || !grad_norm.is_finite() {
                diverged_at = Some(step);
                logged.push(row);
                break;
            }
            let last = step + 1 == self.cfg.steps;
            let measure = self.cfg.measures_spectrum(step);
            let mut log = step.is_multiple_of(self.cfg.log_every) || last || measure;
            if log {
                self.diagnose(&batch, &mut row, &mut flow);
            }
            if let Some(spectrum) = self.spectrum.as_mut().filter(|_| measure) {
                spectrum.measure(&self.model, &mut row, &mut spectra);
            }
            let grads = self.net.grads_mut();
            (row.grad_norm_clipped, row.clipped) = match self.cfg.clip {
                Clip::None => (grad_norm, false),
                Clip::Norm(tau) => {
                    let out = clip_global_norm(&mut [&mut *grads], tau);
                    (out.norm_after, out.clipped)
                }
                Clip::Value(tau) => {
                    let changed = clip_value(grads, tau);
                    (global_norm(&[&*grads]), changed > 0)
                }
            };
            clipped_updates += usize::from(row.clipped);
            self.opt.step(&mut self.model.params, grads, step);
            if (step + 1).is_multiple_of(self.cfg.eval_every) && !last {
                let acc = self.evaluate(self.cfg.eval_sequences);
                (row.eval_loss, row.eval_metric) = (Some(acc.loss()), Some(self.task.metric(&acc)));
                best_loss = best_loss.min(acc.loss());
                log = true;
            }
            on_update(step, row.loss);
            if log {
                logged.push(row);
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
                if let Some(row) = logged.last_mut() {
                    (row.eval_loss, row.eval_metric) = (Some(acc.loss()), Some(metric));
                }
                best_loss = best_loss.min(acc.loss());
                (acc.loss(), metric, self.task.success(metric))
            }
        };
        let wall = start.elapsed().as_secs_f64();
        let (probe, probe_len) = self.net.profile();
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
            clip_fraction: clipped_updates as f64 / updates.max(1) as f64,
            decay_rate: decay_rate(probe, self.model.stack.layers, probe_len),
            steps: updates,
            started_at,
            wall_seconds: wall,
            steps_per_sec: updates as f64 / wall,
        };
        RunRecord {
            outcome,
            logged,
            flow,
            spectrum: spectra,
        }
    }
}
