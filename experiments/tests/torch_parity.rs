//! Whole training steps against PyTorch's: the committed fixtures of `fixtures/torch_parity/`
//! (written by `scripts/torch_parity_fixtures.py`), each a model, its initial parameters, three
//! batches and the parameters after three training steps of PyTorch (nn.RNN/nn.LSTM/nn.GRU and
//! an nn.Linear head, gradlab's loss, DESIGN.md's clipping, torch.optim's optimisers with
//! gradlab's hyper-parameters), computed in float64 from float32 values.
//!
//! For every fixture the model is built from the run configuration in its metadata by
//! [`Trainer::new`], given the fixture's initial parameters, and trained on the three batches
//! by the two halves of every update of `gradlab run`: [`Trainer::loss_and_gradient`] and
//! [`Trainer::clip_and_update`]. Every parameter tensor must then match PyTorch's to a
//! norm-wise relative error of 1e-5 (and its change over the steps to 1e-4), every loss to
//! 1e-5 relative, and clipping must have clipped at the same steps. A fixture computed with PyTorch's defaults where gradlab differs
//! on purpose (`expect = differ`: RMSprop's decay, Adagrad's eps) must be missed by exactly the
//! documented distance: the distance of gradlab's semantics from PyTorch's defaults, computed
//! by PyTorch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gradlab_experiments::config::{OptimizerKind, RunConfig};
use gradlab_experiments::model::checkpoint::{TensorFile, META_CONFIG};
use gradlab_experiments::model::kernel_cell;
use gradlab_experiments::task::text::min_chars;
use gradlab_experiments::task::{Batch, LossKind, Targets, TaskKind, NO_LABEL};
use gradlab_experiments::train::Trainer;
use gradlab_kernels::norm::global_norm;
use gradlab_kernels::{Activation, Cell, Par};
use serde_json::Value;

/// Norm-wise relative error allowed for every parameter tensor, and relative error per loss.
const TOL: f64 = 1e-5;
/// Norm-wise relative error allowed for the change of every parameter tensor over the steps
/// (final − initial): finer than the final values where a tensor moved little (the fixtures'
/// tensors move by 1.4% to 170% of their norm, median 23%); the float32 rounding of the
/// parameters alone can put a few 1e-6 on it.
const CHANGE_TOL: f64 = 1e-4;
/// Training steps of every fixture.
const STEPS: usize = 3;
/// The fixtures the script writes: 12 cases and 2 computed with PyTorch's defaults.
const EXPECTED_FIXTURES: usize = 14;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_parity")
}

/// Every fixture file, sorted.
fn fixtures() -> Vec<PathBuf> {
    let dir = fixture_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    files
}

/// Norm-wise relative error ‖a − b‖ / ‖b‖.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut d, mut n) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        d += (x - y) * (x - y);
        n += y * y;
    }
    d.sqrt() / n.sqrt().max(1e-300)
}

/// Whether the error `e` is above `tol`, or NaN.
fn exceeds(e: f64, tol: f64) -> bool {
    e.is_nan() || e > tol
}

/// A fixture: its tensors and its metadata (the JSON object under `fixture`).
struct Fixture {
    name: String,
    file: TensorFile,
    meta: Value,
}

impl Fixture {
    fn read(path: &Path) -> Self {
        let file = TensorFile::read(path).unwrap_or_else(|e| panic!("{e}"));
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = file
            .metadata()
            .remove("fixture")
            .unwrap_or_else(|| panic!("{name}: no metadata `fixture`"));
        let meta = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        Fixture { name, file, meta }
    }

    /// The metadata's `key`, deserialized.
    fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> T {
        let v = self
            .meta
            .get(key)
            .unwrap_or_else(|| panic!("{}: no metadata {key}", self.name));
        serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("{}: metadata {key}: {e}", self.name))
    }

    /// Tensor `name`, which must have shape `dims`.
    fn f32(&self, name: &str, dims: &[usize]) -> Vec<f32> {
        self.file
            .f32(name, dims)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// Tensor `name` and its shape.
    fn tensor(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let shape = self
            .file
            .shape(name)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        (self.f32(name, &shape), shape)
    }

    /// The run configuration gradlab trains the case with; a charlm case reads a text of as
    /// many distinct characters as its input size, written into `dir`.
    fn config(&self, dir: &Path) -> RunConfig {
        let toml: String = self.get(META_CONFIG);
        let mut cfg =
            RunConfig::from_toml(&toml).unwrap_or_else(|e| panic!("{}: {e}\n{toml}", self.name));
        assert_eq!(cfg.steps, STEPS, "{}", self.name);
        if cfg.task == TaskKind::Charlm {
            let vocab = self.tensor("initial.weight_ih_l0").1[1];
            let text: String = (0..min_chars(cfg.seq_len))
                .map(|k| char::from(b'a' + (k % vocab) as u8))
                .collect();
            let path = dir.join(format!("{}.txt", self.name));
            std::fs::write(&path, text).unwrap();
            cfg.text = Some(path);
        }
        cfg
    }

    /// Batch `k` as gradlab's tasks make them: `[T][B][I]` inputs, and the value read at the
    /// last step (MSE) or a class per step with [`NO_LABEL`] where the fixture has -1.
    fn batch(&self, k: usize, loss: LossKind) -> Batch {
        let (x, shape) = self.tensor(&format!("batch{k}.input"));
        let (target, _) = self.tensor(&format!("batch{k}.target"));
        let targets = match loss {
            LossKind::Mse => Targets::Last(target),
            LossKind::CrossEntropy => Targets::Classes(
                target
                    .iter()
                    .map(|&c| {
                        assert!(c == c.trunc() && c >= -1.0, "{}: class {c}", self.name);
                        if c < 0.0 {
                            NO_LABEL
                        } else {
                            c as u32
                        }
                    })
                    .collect(),
            ),
        };
        Batch {
            time_steps: shape[0],
            batch: shape[1],
            x,
            targets,
            source: None,
        }
    }
}

/// What gradlab did on a fixture: the trainer after the steps, and per step the loss and
/// whether clipping changed the gradient.
struct Trained {
    trainer: Trainer,
    losses: Vec<f64>,
    clipped: Vec<bool>,
}

/// Builds the fixture's model, sets its initial parameters and trains it for the fixture's
/// steps on its batches through gradlab's training step.
fn train(fx: &Fixture, dir: &Path) -> Trained {
    let mut trainer =
        Trainer::new(fx.config(dir), Par::Seq).unwrap_or_else(|e| panic!("{}: {e}", fx.name));
    let names = trainer.model.param_names();
    let initial = fx
        .file
        .names()
        .into_iter()
        .filter(|n| n.starts_with("initial."))
        .count();
    assert_eq!(initial, names.len(), "{}: initial tensors", fx.name);
    for (name, dims, range) in names {
        trainer.model.params[range].copy_from_slice(&fx.f32(&format!("initial.{name}"), &dims));
    }
    let loss = trainer.task.loss();
    let (mut losses, mut clipped) = (Vec::new(), Vec::new());
    for step in 0..STEPS {
        let batch = fx.batch(step, loss);
        let (l, grads) = trainer.loss_and_gradient(&batch);
        let norm = global_norm(&[grads]);
        losses.push(l);
        clipped.push(trainer.clip_and_update(step, norm).1);
    }
    Trained {
        trainer,
        losses,
        clipped,
    }
}

/// Per parameter tensor: its name, the norm-wise relative error of its final value against
/// the fixture's `final.*`, and that of its change over the steps (final − initial).
fn final_errors(fx: &Fixture, trained: &Trained) -> Vec<(String, f64, f64)> {
    let model = &trained.trainer.model;
    model
        .param_names()
        .into_iter()
        .map(|(name, dims, range)| {
            let read = |what: &str| fx.f32(&format!("{what}.{name}"), &dims);
            let (initial, want) = (read("initial"), read("final"));
            let got = &model.params[range];
            let change =
                |v: &[f32]| -> Vec<f32> { v.iter().zip(&initial).map(|(a, b)| a - b).collect() };
            let e = rel_err(got, &want);
            let de = rel_err(&change(got), &change(&want));
            (name, e, de)
        })
        .collect()
}

/// A case that must match PyTorch: every tensor and its change, every loss and clipping
/// decision. Prints the largest relative errors; adds what does not match to `failures`.
fn check_match(fx: &Fixture, trained: &Trained, failures: &mut Vec<String>) {
    let mut worst = (String::new(), 0.0f64);
    let mut worst_change = 0.0f64;
    for (name, e, de) in final_errors(fx, trained) {
        if exceeds(de, CHANGE_TOL) {
            failures.push(format!(
                "{}: the change of {name} over {STEPS} steps: rel err {de:e} > {CHANGE_TOL:e}",
                fx.name
            ));
        }
        worst_change = worst_change.max(de);
        if exceeds(e, TOL) {
            failures.push(format!(
                "{}: {name} after {STEPS} steps: rel err {e:e} > {TOL:e}",
                fx.name
            ));
        }
        if exceeds(e, worst.1) {
            worst = (name, e);
        }
    }
    let want: Vec<f64> = fx.get("losses");
    assert_eq!(want.len(), STEPS, "{}: losses", fx.name);
    for (step, (&got, &want)) in trained.losses.iter().zip(&want).enumerate() {
        let e = (got - want).abs() / want.abs();
        if exceeds(e, TOL) {
            failures.push(format!(
                "{}: loss of step {step}: {got}, PyTorch {want} (rel err {e:e})",
                fx.name
            ));
        }
    }
    let want: Vec<bool> = fx.get("clipped");
    if trained.clipped != want {
        failures.push(format!(
            "{}: clipped at steps {:?}, PyTorch at {want:?}",
            fx.name, trained.clipped
        ));
    }
    println!(
        "{:<56} worst rel err {:.2e} ({}), of the change {worst_change:.2e}; losses {:?}; clipped {:?}",
        fx.name,
        worst.1,
        worst.0,
        trained
            .losses
            .iter()
            .map(|l| format!("{l:.5}"))
            .collect::<Vec<_>>(),
        trained.clipped
    );
}

/// A fixture of PyTorch's defaults where gradlab differs on purpose: every tensor must be as
/// far from it as the documented distance of gradlab's semantics, to the match tolerance, and
/// that distance must be far beyond the tolerance somewhere. Adds what does not hold to
/// `failures`.
fn check_differ(fx: &Fixture, trained: &Trained, failures: &mut Vec<String>) {
    let documented: HashMap<String, f64> = fx.get("documented_rel_err");
    let mut largest = 0.0f64;
    for (name, e, _) in final_errors(fx, trained) {
        let doc = documented[&name];
        if exceeds((e - doc).abs(), TOL) {
            failures.push(format!(
                "{}: {name} is {e:e} from PyTorch's defaults, documented {doc:e}",
                fx.name
            ));
        }
        largest = largest.max(e);
    }
    if largest <= 100.0 * TOL {
        failures.push(format!(
            "{}: PyTorch's defaults land only {largest:e} from gradlab: no difference",
            fx.name
        ));
    }
    println!(
        "{:<56} {largest:.3e} from PyTorch's defaults, as documented: {}",
        fx.name,
        fx.get::<String>("difference")
    );
}

/// Every fixture is reproduced by gradlab's training step, and the fixtures cover every cell
/// at depth 1 and 2, every loss, every clipping mode and every optimiser with two cells.
#[test]
fn training_steps_match_pytorch() {
    let files = fixtures();
    assert_eq!(
        files.len(),
        EXPECTED_FIXTURES,
        "fixtures in {} (write them with scripts/torch_parity_fixtures.py): {files:?}",
        fixture_dir().display()
    );
    let dir = std::env::temp_dir().join(format!("gradlab-torch-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut covered: Vec<RunConfig> = Vec::new();
    let (mut differ, mut failures) = (0, Vec::new());
    for path in &files {
        let fx = Fixture::read(path);
        let trained = train(&fx, &dir);
        match fx.get::<String>("expect").as_str() {
            "match" => {
                check_match(&fx, &trained, &mut failures);
                covered.push(trained.trainer.cfg);
            }
            "differ" => {
                check_differ(&fx, &trained, &mut failures);
                differ += 1;
            }
            other => panic!("{}: expect = {other:?}, not match or differ", fx.name),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        failures.is_empty(),
        "{} mismatches with PyTorch:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(differ >= 1, "no fixture of PyTorch's defaults");
    assert_covers(&covered);
}

/// The matched cases have every cell at depth 1 and 2, every loss, every clipping mode, and
/// every optimiser with at least two cells.
fn assert_covers(cases: &[RunConfig]) {
    let cell = |c: &RunConfig| kernel_cell(c.cell, c.nonlinearity);
    let cells = [
        Cell::Rnn(Activation::Tanh),
        Cell::Rnn(Activation::Relu),
        Cell::Lstm,
        Cell::Gru,
    ];
    for want in cells {
        for depth in [1, 2] {
            assert!(
                cases.iter().any(|c| cell(c) == want && c.depth == depth),
                "no case of {want:?} with {depth} layers"
            );
        }
    }
    // MSE many-to-one, cross-entropy many-to-one, cross-entropy many-to-many.
    for task in [TaskKind::Adding, TaskKind::TemporalOrder, TaskKind::Charlm] {
        assert!(cases.iter().any(|c| c.task == task), "no {task:?} case");
    }
    for kind in ["none", "norm", "value"] {
        assert!(
            cases
                .iter()
                .any(|c| c.value_string("clip").split(':').next() == Some(kind)),
            "no case with clip {kind}"
        );
    }
    for (opt, momentum, nesterov) in [
        (OptimizerKind::Sgd, false, false),
        (OptimizerKind::Sgd, true, false),
        (OptimizerKind::Sgd, true, true),
        (OptimizerKind::Adagrad, false, false),
        (OptimizerKind::Rmsprop, false, false),
        (OptimizerKind::Adam, false, false),
    ] {
        let with = |c: &&RunConfig| {
            (c.optimizer, c.momentum > 0.0, c.nesterov) == (opt, momentum, nesterov)
        };
        let n = cells
            .iter()
            .filter(|&&want| cases.iter().filter(with).any(|c| cell(c) == want))
            .count();
        assert!(
            n >= 2,
            "{opt:?} (momentum {momentum}, nesterov {nesterov}) with {n} cell(s), not two"
        );
    }
}
