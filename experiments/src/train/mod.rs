//! Training (DESIGN.md "Training semantics" and "Diagnostics"): the loop of one run.
//!
//! One update is one window of the task (fresh sequences, or the next `seq_len` characters of
//! each text stream with the state carried) through the TBPTT [`engine`], clipping, and one
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
pub mod spectrum;

use std::time::{Instant, SystemTime};

use gradlab_kernels::norm::{clip_global_norm, clip_value, global_norm};
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::{Par, StackShape};

use crate::config::{Clip, ConfigError, RunConfig};
use crate::model::init::initialize;
use crate::model::{kernel_cell, Model};
use crate::task::{Batch, Task, TextError};
use diagnostics::{decay_rate, Diagnostics};
use engine::{Ctx, Engine};
use eval::{Evaluator, FINAL_EVAL_SEQUENCES};
use optim::Optimizer;
use record::{push_flow, FlowSource, Outcome, RunRecord, Status, StepRow};
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
    engine: Engine,
    diag: Diagnostics,
    spectrum: Option<SpectrumDiag>,
    eval: Evaluator,
}

impl Trainer {
    /// Validates `cfg`, sets up its task, and initialises the model from `cfg.seed`.
    pub fn new(cfg: RunConfig, par: Par) -> Result<Self, TrainError> {
        cfg.validate()?;
        let task = Task::new(cfg.task, cfg.seq_len, cfg.text.as_deref())?;
        let stack = StackShape {
            cell: kernel_cell(cfg.cell, cfg.nonlinearity),
            input: task.input_size(),
            hidden: cfg.hidden,
            layers: cfg.depth,
        };
        let mut model = Model::new(stack, task.output_size());
        let mut rng = SplitMix64(cfg.seed);
        initialize(&mut model, cfg.init, cfg.forget_bias, &mut rng);
        let (t, b) = (task.time_steps(), cfg.batch);
        Ok(Trainer {
            opt: Optimizer::new(&cfg, model.params.len()),
            engine: Engine::new(&model, cfg.tbptt(), t, b),
            diag: Diagnostics::new(&model, t, b),
            spectrum: SpectrumDiag::new(&model, &task, cfg.seed, cfg.lyapunov_steps),
            eval: Evaluator::new(b),
            par,
            rng,
            cfg,
            task,
            model,
        })
    }

    /// Floating-point work of one update (forward and backward of the stack).
    pub fn flops_per_update(&self) -> f64 {
        self.model
            .stack
            .train_flops(self.task.time_steps(), self.cfg.batch)
    }

    /// The model and task as the engine, diagnostics and evaluation see them, beside those
    /// (borrowed apart).
    fn parts(&mut self) -> (Ctx<'_>, &mut Engine, &mut Diagnostics, &mut Evaluator) {
        let ctx = Ctx {
            model: &self.model,
            task: &self.task,
            par: self.par,
        };
        (ctx, &mut self.engine, &mut self.diag, &mut self.eval)
    }

    /// The mean loss of `batch` and its gradient (truncated as configured, before clipping),
    /// from the current parameters and the carried state, which it then advances.
    pub fn loss_and_gradient(&mut self, batch: &Batch) -> (f64, &[f32]) {
        let (ctx, engine, _, _) = self.parts();
        let acc = engine.window(ctx, batch);
        (acc.loss(), self.engine.grads())
    }

    /// The task's loss and metric on `n` evaluation sequences (see
    /// [`Task::evaluation_batches`]); the model is not changed.
    pub fn evaluate(&mut self, n: usize) -> crate::task::MetricAcc {
        let seed = self.cfg.seed;
        let (ctx, _, _, eval) = self.parts();
        eval.evaluate(ctx, n, seed)
    }

    /// Trains for `cfg.steps` updates (or until divergence), evaluates, and returns the record.
    /// `on_update(step, loss)` is called after every update (progress reporting).
    pub fn run(&mut self, mut on_update: impl FnMut(usize, f64)) -> RunRecord {
        let (start, started_at) = (Instant::now(), SystemTime::now());
        let (mut logged, mut flow, mut spectra) = (Vec::new(), Vec::new(), Vec::new());
        let (mut clipped_updates, mut diverged_at, mut best_loss) = (0usize, None, f64::INFINITY);
        let mut updates = 0;
        let s = self.model.stack;
        for step in 0..self.cfg.steps {
            let batch = self.task.train_batch(&mut self.rng, self.cfg.batch);
            let (loss, _) = self.loss_and_gradient(&batch);
            let grads = self.engine.grads();
            let grad_norm = global_norm(&[grads]);
            let mut row = StepRow {
                step,
                loss,
                grad_norm,
                grad_norm_clipped: grad_norm,
                lr: self.opt.lr(step),
                grad_norm_layers: (0..s.layers)
                    .map(|l| {
                        let r = s.layer_ranges(l);
                        global_norm(&[&grads[r.w_ih.start..r.b_hh.end]])
                    })
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
                let (train_flow, len) = self.engine.flow();
                push_flow(&mut flow, step, train_flow, len, FlowSource::Train);
                let (ctx, engine, diag, _) = self.parts();
                diag.diagnose(ctx, engine, &batch, &mut row, &mut flow);
            }
            if let Some(spectrum) = self.spectrum.as_mut().filter(|_| measure) {
                spectrum.measure(&self.model, &mut row, &mut spectra);
            }
            let grads = self.engine.grads_mut();
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
        let (probe, probe_len) = self.diag.last_probe();
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
            decay_rate: decay_rate(probe, s.layers, probe_len),
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
