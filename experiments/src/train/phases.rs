//! Where a run's wall time goes: each phase of the loop, timed as it runs (not stored with the
//! results; `gradlab bench --train` prints it).

use std::time::{Duration, Instant};

/// Wall time [`super::Trainer::run_with`] spent in each phase of its loop, in this process
/// (a resumed run counts from where it continued).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Phases {
    /// Drawing the training batches.
    pub batches: Duration,
    /// Forward and backward of the stack, with the head and the loss
    /// ([`super::Trainer::loss_and_gradient`]).
    pub gradient: Duration,
    /// The global and per-layer gradient norms (and Ω's value), every update.
    pub norms: Duration,
    /// The diagnostics of the logged updates (gradient flow, probes).
    pub diagnostics: Duration,
    /// The Jacobian spectra (`diag_every`).
    pub spectrum: Duration,
    /// Clipping and the optimiser's step.
    pub update: Duration,
    /// The periodic and the final evaluations.
    pub evaluation: Duration,
    /// Mid-run checkpoints.
    pub checkpoints: Duration,
    /// Everything else (logging rows, progress callbacks).
    pub other: Duration,
}

impl Phases {
    /// The sum of every phase.
    pub fn total(&self) -> Duration {
        self.named().iter().map(|(_, d)| *d).sum()
    }

    /// Every phase with its name, in loop order.
    pub fn named(&self) -> [(&'static str, Duration); 9] {
        [
            ("batches", self.batches),
            ("forward+backward", self.gradient),
            ("norms", self.norms),
            ("diagnostics", self.diagnostics),
            ("spectrum", self.spectrum),
            ("clip+optimizer", self.update),
            ("evaluation", self.evaluation),
            ("checkpoints", self.checkpoints),
            ("other", self.other),
        ]
    }
}

/// A stopwatch that charges the time since its last lap to one phase.
pub(super) struct Laps(Instant);

impl Laps {
    pub(super) fn start() -> Self {
        Laps(Instant::now())
    }

    /// Adds the time since the last lap to `phase`.
    pub(super) fn lap(&mut self, phase: &mut Duration) {
        let now = Instant::now();
        *phase += now - self.0;
        self.0 = now;
    }
}
