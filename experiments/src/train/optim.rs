//! Optimisers on the flat parameter vector: SGD (momentum, Nesterov), Adagrad (min-char-rnn),
//! RMSprop (char-rnn), Adam; and the learning-rate schedule.

use serde::{Deserialize, Serialize};

use crate::config::{LrSchedule, OptimizerKind, RunConfig};

/// Adagrad, RMSprop and Adam denominators: `sqrt(state) + EPS`.
const EPS: f64 = 1e-8;
const ADAM_BETA1: f64 = 0.9;
const ADAM_BETA2: f64 = 0.999;

/// An optimiser with its per-parameter state.
#[derive(Clone, Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    momentum: f32,
    nesterov: bool,
    /// RMSprop's decay of the squared-gradient average.
    rms_decay: f32,
    schedule: LrSchedule,
    base_lr: f64,
    /// Updates per epoch (one pass over the training text), for [`LrSchedule::Epoch`].
    epoch: usize,
    state: OptimizerState,
}

/// What an optimiser accumulates over updates (saved in mid-run checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// Momentum buffer, Adagrad/RMSprop accumulator or Adam first moment.
    s1: Vec<f32>,
    /// Adam second moment.
    s2: Vec<f32>,
    updates: u64,
}

impl Optimizer {
    /// The optimiser of `cfg` for `n` parameters, with epochs of `updates_per_epoch` updates
    /// (used by the `epoch` schedule only; see [`crate::task::Task::updates_per_epoch`]).
    pub fn new(cfg: &RunConfig, n: usize, updates_per_epoch: usize) -> Self {
        let second = cfg.optimizer == OptimizerKind::Adam;
        Optimizer {
            kind: cfg.optimizer,
            momentum: cfg.momentum as f32,
            nesterov: cfg.nesterov,
            rms_decay: cfg.rmsprop_decay as f32,
            schedule: cfg.lr_schedule,
            base_lr: cfg.lr,
            epoch: updates_per_epoch.max(1),
            state: OptimizerState {
                s1: vec![0.0; n],
                s2: vec![0.0; if second { n } else { 0 }],
                updates: 0,
            },
        }
    }

    /// The accumulated state.
    pub fn state(&self) -> &OptimizerState {
        &self.state
    }

    /// Continues from `state` (of an optimiser of the same kind and size), or says why not.
    pub fn restore(&mut self, state: OptimizerState) -> Result<(), String> {
        let (have, got) = (
            (self.state.s1.len(), self.state.s2.len()),
            (state.s1.len(), state.s2.len()),
        );
        if have != got {
            return Err(format!(
                "optimizer state of sizes {got:?}, expected {have:?} for {:?}",
                self.kind
            ));
        }
        self.state = state;
        Ok(())
    }

    /// The learning rate at (0-based) step `step`.
    pub fn lr(&self, step: usize) -> f64 {
        match self.schedule {
            LrSchedule::Constant => self.base_lr,
            LrSchedule::Step { every, gamma } => self.base_lr * gamma.powi((step / every) as i32),
            // char-rnn decays after every update i (counted from 1) with i % epoch == 0 and
            // i / epoch >= after: `step` updates are done before this one.
            LrSchedule::Epoch { after, gamma } => {
                let decays = (step / self.epoch + 1).saturating_sub(after);
                self.base_lr * gamma.powi(decays.min(i32::MAX as usize) as i32)
            }
        }
    }

    /// One update of `params` with gradient `grads` at step `step`.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], step: usize) {
        assert_eq!(
            params.len(),
            grads.len(),
            "optimizer: parameter and gradient counts differ"
        );
        let lr = self.lr(step);
        self.state.updates += 1;
        let (mu, lr32) = (self.momentum, lr as f32);
        match self.kind {
            OptimizerKind::Sgd if mu == 0.0 => {
                params
                    .iter_mut()
                    .zip(grads)
                    .for_each(|(p, g)| *p -= lr32 * g);
            }
            OptimizerKind::Sgd => {
                for ((p, g), v) in params.iter_mut().zip(grads).zip(&mut self.state.s1) {
                    *v = mu * *v + g;
                    *p -= lr32 * if self.nesterov { g + mu * *v } else { *v };
                }
            }
            OptimizerKind::Adagrad => {
                for ((p, g), s) in params.iter_mut().zip(grads).zip(&mut self.state.s1) {
                    *s += g * g;
                    *p -= (lr * f64::from(*g) / (f64::from(*s).sqrt() + EPS)) as f32;
                }
            }
            OptimizerKind::Rmsprop => {
                for ((p, g), s) in params.iter_mut().zip(grads).zip(&mut self.state.s1) {
                    *s = self.rms_decay * *s + (1.0 - self.rms_decay) * g * g;
                    *p -= (lr * f64::from(*g) / (f64::from(*s).sqrt() + EPS)) as f32;
                }
            }
            OptimizerKind::Adam => {
                let t = self.state.updates as i32;
                let (c1, c2) = (1.0 - ADAM_BETA1.powi(t), 1.0 - ADAM_BETA2.powi(t));
                let (b1, b2) = (ADAM_BETA1 as f32, ADAM_BETA2 as f32);
                for (((p, g), m), v) in params
                    .iter_mut()
                    .zip(grads)
                    .zip(&mut self.state.s1)
                    .zip(&mut self.state.s2)
                {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    let (mh, vh) = (f64::from(*m) / c1, f64::from(*v) / c2);
                    *p -= (lr * mh / (vh.sqrt() + EPS)) as f32;
                }
            }
        }
    }
}
