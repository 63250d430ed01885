//! The training benchmarks of `gradlab bench --train` and `cargo bench -- train/`: whole runs at
//! the sizes researchers train (forward, backward, clipping, the optimiser, the default
//! diagnostics and evaluations), timed phase by phase ([`super::phases`]).

use std::path::Path;

use gradlab_kernels::Par;

use super::phases::Phases;
use super::Trainer;
use crate::config::RunConfig;

/// One training benchmark.
#[derive(Clone, Copy, Debug)]
pub struct TrainCase {
    pub name: &'static str,
    /// The run configuration (TOML), without `text`.
    pub config: &'static str,
    /// Threads it is timed on (`None`: every core).
    pub threads: Option<usize>,
}

/// The training benchmarks: the small synthetic-task models of the vanishing-gradient
/// literature (one thread each, as a sweep runs them) and a char-rnn-sized language model
/// (every core), all at the default `log_every`/`eval_every`.
pub const TRAIN_CASES: [TrainCase; 3] = [
    TrainCase {
        name: "rnn-temporal-order",
        config: "task = 'temporal-order'\nseq_len = 100\nbatch = 20\ncell = 'rnn'\nhidden = 50\n\
                 optimizer = 'sgd'\nclip = 'norm:1'\nsteps = 2000\n",
        threads: Some(1),
    },
    TrainCase {
        name: "lstm-adding",
        config: "task = 'adding'\nseq_len = 100\nbatch = 20\ncell = 'lstm'\nhidden = 128\n\
                 optimizer = 'sgd'\nclip = 'norm:1'\nsteps = 2000\n",
        threads: Some(1),
    },
    TrainCase {
        name: "lstm-charlm",
        config: "task = 'charlm'\nseq_len = 50\nbatch = 50\ncell = 'lstm'\nhidden = 128\n\
                 depth = 2\noptimizer = 'adam'\nlr = 2e-3\nclip = 'norm:5'\nsteps = 1000\n",
        threads: None,
    },
];

/// The case called `name`.
pub fn find_train_case(name: &str) -> Option<&'static TrainCase> {
    TRAIN_CASES.iter().find(|c| c.name == name)
}

/// What one timed run of a [`TrainCase`] measured.
#[derive(Clone, Copy, Debug)]
pub struct TrainTiming {
    pub steps: usize,
    /// Wall time of the whole run, final evaluation included.
    pub seconds: f64,
    pub phases: Phases,
    /// FLOPs of one update's forward and backward (the matrix products, as `bench` counts).
    pub flops_per_update: f64,
    /// The final evaluation loss.
    pub final_loss: f64,
}

impl TrainTiming {
    /// Updates per second of the whole run.
    pub fn steps_per_sec(&self) -> f64 {
        self.steps as f64 / self.seconds
    }

    /// GFLOP/s of the forward and backward passes alone.
    pub fn gradient_gflops(&self) -> f64 {
        self.flops_per_update * self.steps as f64 / self.phases.gradient.as_secs_f64() / 1e9
    }
}

impl TrainCase {
    /// Whether the case trains on a text file.
    pub fn needs_text(&self) -> bool {
        self.config.contains("'charlm'")
    }

    /// Its run configuration, reading `text` where the task needs one.
    pub fn run_config(&self, text: Option<&Path>) -> Result<RunConfig, String> {
        let mut toml = self.config.to_string();
        if self.needs_text() {
            let text =
                text.ok_or_else(|| format!("{} needs a text file (--text FILE)", self.name))?;
            toml.push_str(&format!(
                "text = {}\n",
                toml::Value::from(text.display().to_string())
            ));
        }
        RunConfig::from_toml(&toml).map_err(|e| e.to_string())
    }

    /// Trains the case once on the current rayon pool's threads and times it.
    pub fn time(&self, cfg: RunConfig) -> Result<TrainTiming, String> {
        let par = Par::rayon(rayon::current_num_threads());
        let mut trainer = Trainer::new(cfg, par).map_err(|e| e.to_string())?;
        let start = std::time::Instant::now();
        let record = trainer.run(|_, _| {});
        Ok(TrainTiming {
            steps: record.outcome.steps,
            seconds: start.elapsed().as_secs_f64(),
            phases: trainer.phases(),
            flops_per_update: trainer.flops_per_update(),
            final_loss: record.outcome.final_loss,
        })
    }
}
