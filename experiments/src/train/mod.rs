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
//!
//! A run writes mid-run checkpoints ([`resume`]) as [`Control`] asks, stops between two updates
//! when it is asked to (a signal), and continues from a checkpoint ([`Trainer::restore`]) to
//! exactly the rows it would have logged had it never stopped.

pub mod bench;
pub mod data;
pub mod diagnostics;
pub mod engine;
pub mod eval;
pub mod optim;
pub mod phases;
pub mod record;
pub mod resume;
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
use phases::{Laps, Phases};
use record::{push_flow, FlowRow, FlowSource, Outcome, RunRecord, Status, StepRow};
use resume::{Checkpointing, Progress, ResumeError, Snapshot};
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
    /// Where the run stands (the start, or a restored checkpoint's update).
    progress: Progress,
    /// Where [`Trainer::run_with`]'s time went.
    phases: Phases,
}

/// How a run is checkpointed and stopped.
pub struct Control<'a> {
    /// Where and how often to write mid-run checkpoints (`None`: never).
    pub checkpoint: Option<&'a Checkpointing>,
    /// Asked after every update: whether to stop now (a signal came), after a checkpoint.
    pub stop: &'a (dyn Fn() -> bool + Sync),
    /// Shown every training batch as the loop takes it, with the index of its update (what
    /// checks that [`data`]'s export is what the run trains on).
    pub batches: Option<&'a ShowBatch<'a>>,
}

/// What [`Control::batches`] calls with each training batch and the index of its update.
pub type ShowBatch<'a> = dyn Fn(usize, &Batch) + Sync + 'a;

impl<'a> Control<'a> {
    /// No checkpoints, never stopped early.
    pub const NONE: Control<'static> = Control {
        checkpoint: None,
        stop: &|| false,
        batches: None,
    };

    /// Checkpoints as `checkpoint` says, and stops when a signal asks
    /// ([`crate::interrupt::requested`]).
    pub fn until_signal(checkpoint: &'a Checkpointing) -> Self {
        Control {
            checkpoint: Some(checkpoint),
            stop: &|| crate::interrupt::requested().is_some(),
            batches: None,
        }
    }
}

/// How [`Trainer::run_with`] ended.
#[derive(Debug)]
pub enum RunEnd {
    /// Trained to the end (or diverged): the record to write.
    Finished(RunRecord),
    /// Stopped when asked, before update `next_step`; the checkpoint (if any) continues it.
    Interrupted { next_step: usize },
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

    /// Pascanu's Ω of the last update per layer, or `None` without the regulariser (seq2seq
    /// has none: validation refuses it).
    fn omega(&self) -> Option<Vec<Option<f64>>> {
        match self {
            Net::Stack { engine, .. } => engine.omega(),
            Net::Seq2Seq(_) => None,
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

/// A run as it starts: `cfg` validated, its task, its model initialised from `cfg.seed`, and
/// the generator of its training batches, from which the initialisation drew first (so the
/// batches depend on the keys that shape the model, not only on the task's).
fn start(cfg: &RunConfig) -> Result<(Task, Model, SplitMix64), TrainError> {
    cfg.validate()?;
    let mut task = Task::new(cfg.task, cfg.seq_len, cfg.text.as_deref())?;
    task.reverse_source = cfg.reverse_source;
    let stack = StackShape {
        cell: kernel_cell(cfg.cell, cfg.nonlinearity),
        input: task.input_size(),
        hidden: cfg.hidden,
        layers: cfg.depth,
    };
    let (_, i_src) = task.source_shape();
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
    Ok((task, model, rng))
}

impl Trainer {
    /// Validates `cfg`, sets up its task, and initialises the model from `cfg.seed`.
    pub fn new(cfg: RunConfig, par: Par) -> Result<Self, TrainError> {
        let (task, model, rng) = start(&cfg)?;
        let (t, b) = (task.time_steps(), cfg.batch);
        let net = match cfg.model {
            ModelKind::Stack => Net::Stack {
                engine: Box::new(Engine::new(&model, cfg.tbptt(), t, b, cfg.regularizer)),
                diag: Box::new(Diagnostics::new(&model, t, b)),
                eval: Box::new(Evaluator::new(b)),
            },
            // Validation leaves seq2seq the one truncation k = k1 = k2.
            ModelKind::Seq2seq => Net::Seq2Seq(Box::new(Seq2SeqEngine::new(
                &model,
                (task.source_shape().0, t),
                b,
                cfg.tbptt().1,
            ))),
        };
        Ok(Trainer {
            opt: Optimizer::new(&cfg, model.params.len(), task.updates_per_epoch(cfg.batch)),
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
            progress: Progress::default(),
            phases: Phases::default(),
        })
    }

    /// [`Trainer::new`], continued from the newest usable checkpoint at `path` (see
    /// [`resume::load`]): the trainer, the update it continues from (`None`: the start), and
    /// the checkpoints passed over, with why.
    pub fn resumed(
        cfg: RunConfig,
        par: Par,
        path: &std::path::Path,
    ) -> Result<(Self, Option<usize>, Vec<ResumeError>), TrainError> {
        let mut trainer = Trainer::new(cfg.clone(), par)?;
        let mut loaded = resume::load(path, &cfg.identity_toml());
        let Some(snapshot) = loaded.snapshot else {
            return Ok((trainer, None, loaded.skipped));
        };
        match trainer.restore(snapshot, path) {
            Ok(()) => {
                let from = trainer.next_step();
                Ok((trainer, Some(from), loaded.skipped))
            }
            Err(e) => {
                loaded.skipped.push(e);
                Ok((Trainer::new(cfg, par)?, None, loaded.skipped))
            }
        }
    }

    /// Where the last [`Trainer::run_with`] spent its time, phase by phase.
    pub fn phases(&self) -> Phases {
        self.phases
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

    /// The mean loss of `batch` and the gradient its update uses (truncated as configured,
    /// with the regulariser's, before clipping), from the current parameters and the carried
    /// state, which it then advances.
    pub fn loss_and_gradient(&mut self, batch: &Batch) -> (f64, &[f32]) {
        let acc = match self.parts() {
            (ctx, Net::Stack { engine, .. }) => engine.window(ctx, batch),
            (ctx, Net::Seq2Seq(s)) => s.window(ctx, batch),
        };
        (acc.loss(), self.net.grads())
    }

    /// The second half of update `step` (0-based), after [`Trainer::loss_and_gradient`]:
    /// clips that gradient as `clip` says (DESIGN.md "Training semantics") and applies the
    /// optimiser's step to the parameters. `grad_norm` is the gradient's global norm before
    /// clipping ([`global_norm`]; the run loop has it already). Returns the global norm after
    /// clipping and whether clipping changed the gradient. (The run loop logs its diagnostics
    /// of the unclipped gradient between the two halves.)
    pub fn clip_and_update(&mut self, step: usize, grad_norm: f64) -> (f64, bool) {
        let grads = self.net.grads_mut();
        let clipped = match self.cfg.clip {
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
        self.opt.step(&mut self.model.params, grads, step);
        clipped
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

    /// Saves the parameters with the configuration and (text tasks) the vocabulary as a
    /// PyTorch-named safetensors file ([`crate::model::checkpoint::save`]).
    pub fn save_weights(&self, path: &std::path::Path) -> std::io::Result<()> {
        let vocab = self.task.corpus.as_ref().map(|c| c.vocab.as_slice());
        crate::model::checkpoint::save(path, &self.model, Some(&self.cfg), vocab)
    }

    /// The update the run continues from (0 unless restored).
    pub fn next_step(&self) -> usize {
        self.progress.next_step
    }

    /// Everything needed to continue this run from `progress`.
    fn snapshot(&self, progress: &Progress) -> Snapshot {
        let (carried_h, carried_c) = match &self.net {
            Net::Stack { engine, .. } => {
                let (h, c) = engine.carried();
                (h.to_vec(), c.to_vec())
            }
            Net::Seq2Seq(_) => (Vec::new(), Vec::new()),
        };
        let (probe, probe_len) = self.net.profile();
        Snapshot {
            identity: self.cfg.identity_toml(),
            config: self.cfg.to_toml(),
            gradlab_version: crate::VERSION.into(),
            git_commit: crate::GIT_COMMIT.into(),
            params: self.model.params.clone(),
            optimizer: self.opt.state().clone(),
            rng: self.rng.0,
            streams: self.task.stream_positions().to_vec(),
            carried_h,
            carried_c,
            probe: probe[..probe_len * self.model.stack.layers].to_vec(),
            probe_len,
            progress: progress.clone(),
        }
    }

    /// Continues the run from the checkpoint `s` (read from `path`), which must be this run's.
    pub fn restore(&mut self, s: Snapshot, path: &std::path::Path) -> Result<(), ResumeError> {
        let mismatch = |reason: String| ResumeError::Mismatch {
            path: path.to_path_buf(),
            reason,
        };
        if s.identity != self.cfg.identity_toml() {
            return Err(ResumeError::OtherRun {
                path: path.to_path_buf(),
            });
        }
        if s.params.len() != self.model.params.len() || s.progress.next_step > self.cfg.steps {
            return Err(mismatch(format!(
                "{} parameters at update {}, expected {} and at most {}",
                s.params.len(),
                s.progress.next_step,
                self.model.params.len(),
                self.cfg.steps
            )));
        }
        self.opt.restore(s.optimizer).map_err(mismatch)?;
        self.model.params = s.params;
        self.rng.0 = s.rng;
        self.task.set_stream_positions(s.streams);
        match &mut self.net {
            Net::Stack { engine, diag, .. } => {
                engine
                    .set_carried(&s.carried_h, &s.carried_c)
                    .map_err(mismatch)?;
                diag.set_last_probe(&s.probe, s.probe_len);
            }
            Net::Seq2Seq(e) => {
                let mut probe = s.probe;
                probe.resize(e.profile().0.len(), 0.0);
                e.set_profile(&probe, s.probe_len).map_err(mismatch)?;
            }
        }
        self.progress = s.progress;
        Ok(())
    }

    /// `stop_at_success`: an evaluation (`acc`) met the success criterion; the final
    /// evaluation (at least 10,000 sequences) must meet it too for the run to end here.
    /// Returns that final evaluation when it does.
    fn confirm_success(&mut self, acc: crate::task::MetricAcc) -> Option<crate::task::MetricAcc> {
        let n = self.cfg.eval_sequences.max(FINAL_EVAL_SEQUENCES);
        let fin = if n == self.cfg.eval_sequences {
            acc
        } else {
            self.evaluate(n)
        };
        (self.task.success(self.task.metric(&fin)) == Some(true)).then_some(fin)
    }

    /// Trains for `cfg.steps` updates (or until divergence), evaluates, and returns the record.
    /// `on_update(step, loss)` is called after every update (progress reporting).
    pub fn run(&mut self, on_update: impl FnMut(usize, f64)) -> RunRecord {
        match self.run_with(&Control::NONE, on_update) {
            Ok(RunEnd::Finished(record)) => record,
            Ok(RunEnd::Interrupted { .. }) => unreachable!("Control::NONE never stops a run"),
            Err(e) => unreachable!("Control::NONE writes no checkpoint: {e}"),
        }
    }

    /// [`Trainer::run`] from where the run stands (its start, or a restored checkpoint),
    /// writing checkpoints and stopping as `ctl` says. Fails only when a checkpoint cannot be
    /// written.
    pub fn run_with(
        &mut self,
        ctl: &Control<'_>,
        mut on_update: impl FnMut(usize, f64),
    ) -> std::io::Result<RunEnd> {
        let start = Instant::now();
        let mut last_checkpoint = start;
        let mut p = std::mem::take(&mut self.progress);
        let started_at = *p.started_at.get_or_insert_with(SystemTime::now);
        let mut diverged_at = None;
        // The final evaluation, when `stop_at_success` ended the run early.
        let mut solved: Option<crate::task::MetricAcc> = None;
        let mut updates = p.next_step;
        let layers = self.model.layer_ranges();
        let mut ph = Phases::default();
        let mut laps = Laps::start();
        for step in p.next_step..self.cfg.steps {
            let batch = self.task.train_batch(&mut self.rng, self.cfg.batch);
            if let Some(show) = ctl.batches {
                show(step, &batch);
            }
            laps.lap(&mut ph.batches);
            let (loss, _) = self.loss_and_gradient(&batch);
            laps.lap(&mut ph.gradient);
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
            if let Some(layers) = self.net.omega() {
                row.omega = Some(layers.iter().map(|o| o.unwrap_or(0.0)).sum());
                row.omega_layers = layers;
            }
            updates = step + 1;
            laps.lap(&mut ph.norms);
            if !row.loss.is_finite() || !grad_norm.is_finite() {
                diverged_at = Some(step);
                p.logged.push(row);
                break;
            }
            let last = step + 1 == self.cfg.steps;
            let measure = self.cfg.measures_spectrum(step);
            let mut log = step.is_multiple_of(self.cfg.log_every) || last || measure;
            if log {
                self.diagnose(&batch, &mut row, &mut p.flow);
            }
            laps.lap(&mut ph.diagnostics);
            if let Some(spectrum) = self.spectrum.as_mut().filter(|_| measure) {
                spectrum.measure(&self.model, &mut row, &mut p.spectrum, self.par);
            }
            laps.lap(&mut ph.spectrum);
            (row.grad_norm_clipped, row.clipped) = self.clip_and_update(step, grad_norm);
            p.clipped_updates += usize::from(row.clipped);
            laps.lap(&mut ph.update);
            if (step + 1).is_multiple_of(self.cfg.eval_every) && !last {
                let acc = self.evaluate(self.cfg.eval_sequences);
                (row.eval_loss, row.eval_metric) = (Some(acc.loss()), Some(self.task.metric(&acc)));
                p.best_loss = p.best_loss.min(acc.loss());
                log = true;
                if self.cfg.stop_at_success
                    && self.task.success(self.task.metric(&acc)) == Some(true)
                {
                    solved = self.confirm_success(acc);
                }
                laps.lap(&mut ph.evaluation);
            }
            on_update(step, row.loss);
            if log {
                p.logged.push(row);
            }
            if last || solved.is_some() {
                break;
            }
            let stop = (ctl.stop)();
            let due = ctl.checkpoint.filter(|c| {
                stop || (c.every > 0 && (step + 1).is_multiple_of(c.every))
                    || (c.seconds > 0.0 && last_checkpoint.elapsed().as_secs_f64() >= c.seconds)
            });
            laps.lap(&mut ph.other);
            if let Some(c) = due {
                p.next_step = step + 1;
                let wall_before = p.wall_seconds;
                p.wall_seconds += start.elapsed().as_secs_f64();
                resume::save(&c.path, &self.snapshot(&p))?;
                p.wall_seconds = wall_before;
                last_checkpoint = Instant::now();
                laps.lap(&mut ph.checkpoints);
            }
            if stop {
                p.next_step = step + 1;
                p.wall_seconds += start.elapsed().as_secs_f64();
                self.progress = p;
                self.phases = ph;
                return Ok(RunEnd::Interrupted {
                    next_step: step + 1,
                });
            }
        }
        laps.lap(&mut ph.other);
        let mut best_loss = p.best_loss;
        let (final_loss, metric, success) = match diverged_at {
            Some(_) => (
                f64::NAN,
                f64::NAN,
                self.task.success(f64::NAN).map(|_| false),
            ),
            None => {
                let acc = solved.unwrap_or_else(|| {
                    self.evaluate(self.cfg.eval_sequences.max(FINAL_EVAL_SEQUENCES))
                });
                let metric = self.task.metric(&acc);
                if let Some(row) = p.logged.last_mut() {
                    (row.eval_loss, row.eval_metric) = (Some(acc.loss()), Some(metric));
                }
                best_loss = best_loss.min(acc.loss());
                (acc.loss(), metric, self.task.success(metric))
            }
        };
        laps.lap(&mut ph.evaluation);
        self.phases = ph;
        let wall = p.wall_seconds + start.elapsed().as_secs_f64();
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
            clip_fraction: p.clipped_updates as f64 / updates.max(1) as f64,
            decay_rate: decay_rate(probe, self.model.stack.layers, probe_len),
            steps: updates,
            started_at,
            wall_seconds: wall,
            steps_per_sec: updates as f64 / wall,
        };
        Ok(RunEnd::Finished(RunRecord {
            outcome,
            logged: p.logged,
            flow: p.flow,
            spectrum: p.spectrum,
        }))
    }
}
