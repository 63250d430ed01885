//! `gradlab data` writes exactly the batches a run trains on. Each case exports a run's data
//! with the binary, trains the run the file's metadata describes in process while the training
//! loop shows every batch it takes, and compares the file with those batches bit for bit (and
//! its evaluation data and initial parameters with the run's); `gradlab run` with the same
//! flags must then log the same loss at every update, so the exported configuration is the one
//! the command line trains. The file is read here with a reader of its own (the format's
//! header and raw bytes), not with the code that wrote it.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use common::{fails, gradlab, s, text, text_file, tmpdir};
use gradlab_experiments::config::RunConfig;
use gradlab_experiments::store::read_table;
use gradlab_experiments::sweep::run_id;
use gradlab_experiments::task::{Batch, LossKind, Targets, Task, TaskKind, NO_LABEL};
use gradlab_experiments::train::eval::FINAL_EVAL_SEQUENCES;
use gradlab_experiments::train::{Control, RunEnd, Trainer};
use gradlab_kernels::Par;

/// A safetensors file: its metadata and, per tensor, dtype, shape and bytes.
struct Tensors {
    meta: HashMap<String, String>,
    tensors: HashMap<String, (String, Vec<usize>, Vec<u8>)>,
}

impl Tensors {
    /// Reads the format directly: a little-endian u64 header length, a JSON header naming each
    /// tensor's dtype, shape and byte range, then the bytes.
    fn read(path: &Path) -> Tensors {
        let bytes = std::fs::read(path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let data = &bytes[8 + n..];
        let mut out = Tensors {
            meta: HashMap::new(),
            tensors: HashMap::new(),
        };
        for (name, v) in header {
            if name == "__metadata__" {
                out.meta = serde_json::from_value(v).unwrap();
                continue;
            }
            let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).unwrap();
            let [a, b]: [usize; 2] = serde_json::from_value(v["data_offsets"].clone()).unwrap();
            let dtype = v["dtype"].as_str().unwrap().to_string();
            out.tensors
                .insert(name, (dtype, shape, data[a..b].to_vec()));
        }
        out
    }

    /// Tensor `name`, which must have `dtype`: its shape and bytes.
    fn get(&self, name: &str, dtype: &str) -> (&[usize], &[u8]) {
        let (d, shape, bytes) = self
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("no tensor {name}; has {:?}", self.tensors.keys()));
        assert_eq!(d, dtype, "{name}'s dtype");
        (shape, bytes)
    }

    fn json(&self, key: &str) -> serde_json::Value {
        serde_json::from_str(&self.meta[key]).unwrap_or_else(|e| panic!("metadata {key}: {e}"))
    }
}

fn f32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn i64s(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// One sequence of a batch: its inputs (bits) at every step, its targets (class per step, or
/// the regression value's bits), whether each step has a loss, and its source inputs.
#[derive(Debug, PartialEq)]
struct Sequence {
    x: Vec<u32>,
    targets: Vec<i64>,
    loss: Vec<bool>,
    source: Vec<u32>,
}

/// The sequences of `batch`, as the engine reads them: a loss where a class is given, or at
/// the last step for a regression target.
fn sequences(batch: &Batch) -> Vec<Sequence> {
    let (t, b) = (batch.time_steps, batch.batch);
    let i = batch.x.len() / (t * b);
    (0..b)
        .map(|j| {
            let x = (0..t)
                .flat_map(|s| bits(&batch.x[(s * b + j) * i..(s * b + j + 1) * i]))
                .collect();
            let (targets, loss) = match &batch.targets {
                Targets::Last(y) => (
                    vec![i64::from(y[j].to_bits())],
                    (0..t).map(|s| s + 1 == t).collect(),
                ),
                Targets::Classes(l) => (0..t)
                    .map(|s| match l[s * b + j] {
                        NO_LABEL => (-100, false),
                        c => (i64::from(c), true),
                    })
                    .unzip(),
            };
            let source = batch.source.as_ref().map_or(Vec::new(), |src| {
                let ts = src.time_steps;
                let w = src.x.len() / (ts * b);
                (0..ts)
                    .flat_map(|s| bits(&src.x[(s * b + j) * w..(s * b + j + 1) * w]))
                    .collect()
            });
            Sequence {
                x,
                targets,
                loss,
                source,
            }
        })
        .collect()
}

/// The sequences of batch `k` of the file's tensors `<prefix>inputs`, ... (shape `[n][T][B]`).
fn file_sequences(f: &Tensors, prefix: &str, k: usize, regression: bool) -> Vec<Sequence> {
    let (shape, x) = f.get(&format!("{prefix}inputs"), "F32");
    let (t, b, i) = (shape[1], shape[2], shape[3]);
    let x = &f32s(x)[k * t * b * i..(k + 1) * t * b * i];
    let (_, mask) = f.get(&format!("{prefix}loss_mask"), "BOOL");
    let mask = &mask[k * t * b..(k + 1) * t * b];
    let targets: Vec<i64> = if regression {
        let (_, y) = f.get(&format!("{prefix}targets"), "F32");
        f32s(y)[k * b..(k + 1) * b]
            .iter()
            .map(|&v| i64::from(v))
            .collect()
    } else {
        let (_, y) = f.get(&format!("{prefix}targets"), "I64");
        i64s(y)[k * t * b..(k + 1) * t * b].to_vec()
    };
    let source = f
        .tensors
        .contains_key(&format!("{prefix}source_inputs"))
        .then(|| {
            let (shape, src) = f.get(&format!("{prefix}source_inputs"), "F32");
            let (ts, w) = (shape[1], shape[3]);
            (
                f32s(src)[k * ts * b * w..(k + 1) * ts * b * w].to_vec(),
                ts,
                w,
            )
        });
    (0..b)
        .map(|j| Sequence {
            x: (0..t)
                .flat_map(|s| x[(s * b + j) * i..(s * b + j + 1) * i].to_vec())
                .collect(),
            targets: match regression {
                true => vec![targets[j]],
                false => (0..t).map(|s| targets[s * b + j]).collect(),
            },
            loss: (0..t).map(|s| mask[s * b + j] == 1).collect(),
            source: source.as_ref().map_or(Vec::new(), |(src, ts, w)| {
                (0..*ts)
                    .flat_map(|s| src[(s * b + j) * w..(s * b + j + 1) * w].to_vec())
                    .collect()
            }),
        })
        .collect()
}

/// `input_ids` (where the file has them) name the 1 of every one-hot input.
fn check_input_ids(f: &Tensors, prefix: &str) {
    let Some((_, shape, ids)) = f.tensors.get(&format!("{prefix}input_ids")) else {
        return;
    };
    let (xs, x) = f.get(&format!("{prefix}inputs"), "F32");
    let i = xs[3];
    let ids = i64s(ids);
    assert_eq!(shape[..], xs[..3], "{prefix}input_ids: the inputs' shape");
    for (row, &id) in f32s(x).chunks_exact(i).zip(&ids) {
        let ones: Vec<usize> = (0..i).filter(|&k| row[k] == 1f32.to_bits()).collect();
        assert_eq!(
            ones,
            vec![id as usize],
            "{prefix}inputs are one-hot at input_ids"
        );
        assert!(row.iter().all(|&v| v == 1f32.to_bits() || v == 0));
    }
}

/// Trains `cfg` in process and returns every batch its loop took, with the run's record.
fn train_observed(cfg: &RunConfig) -> (Vec<Batch>, gradlab_experiments::train::record::RunRecord) {
    let seen = Mutex::new(Vec::new());
    let show = |step: usize, b: &Batch| seen.lock().unwrap().push((step, b.clone()));
    let ctl = Control {
        batches: Some(&show),
        ..Control::NONE
    };
    let mut trainer = Trainer::new(cfg.clone(), Par::Seq).unwrap();
    let RunEnd::Finished(record) = trainer.run_with(&ctl, |_, _| {}).unwrap() else {
        panic!("Control::NONE never stops a run");
    };
    let seen = seen.into_inner().unwrap();
    let steps: Vec<usize> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        steps,
        (0..cfg.steps).collect::<Vec<_>>(),
        "one batch per update"
    );
    (seen.into_iter().map(|(_, b)| b).collect(), record)
}

/// The flags of a test run: `words` split at spaces, `more` (paths) and what makes it fast to
/// train and check (every update logged, a short Lyapunov stream).
fn flags(words: &str, more: &[&str]) -> Vec<String> {
    let fast = ["--log-every", "1", "--lyapunov-steps", "20"];
    let words = words.split_whitespace().chain(more.iter().copied());
    words.chain(fast).map(String::from).collect()
}

/// Exports a run with `gradlab data FLAGS DATA_ONLY`, checks the file against the batches,
/// evaluation data and initial parameters of the run it describes, and `gradlab run FLAGS`
/// against that run's losses. Returns the file.
fn round_trip(name: &str, flags: &[String], data_only: &[&str]) -> Tensors {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let dir = tmpdir(&format!("data-{name}"));
    let file = dir.join("data.safetensors");
    let o = gradlab(&[&["data"], &flags[..], data_only, &["--out", s(&file)]].concat());
    assert!(o.status.success(), "{name}: {}", text(&o.stderr));
    assert!(text(&o.stdout).contains("wrote"), "{}", text(&o.stdout));
    let f = Tensors::read(&file);
    let cfg: RunConfig = serde_json::from_str(&f.meta["config"]).unwrap();
    assert_eq!(
        f.meta["run_id"],
        run_id(&cfg),
        "{name}: run_id of its config"
    );
    let task = Task::new(cfg.task, cfg.seq_len, cfg.text.as_deref()).unwrap();
    let regression = cfg.task.loss() == LossKind::Mse;

    let (batches, record) = train_observed(&cfg);
    let n: usize = f.meta["batches"].parse().unwrap();
    assert!(n <= batches.len(), "{name}: at most the run's updates");
    assert_eq!(
        f.get("inputs", "F32").0[0],
        n,
        "{name}: batches in the file"
    );
    for (k, batch) in batches.iter().take(n).enumerate() {
        assert_eq!(
            file_sequences(&f, "", k, regression),
            sequences(batch),
            "{name}: batch {k} differs from the one the training loop took"
        );
    }
    check_input_ids(&f, "");

    // The evaluation data: every window of the final evaluation, in order.
    let trainer = Trainer::new(cfg.clone(), Par::Seq).unwrap();
    let eval_n = cfg.eval_sequences.max(FINAL_EVAL_SEQUENCES);
    let eval: Vec<Batch> = trainer
        .task
        .evaluation_batches(eval_n, cfg.batch.max(64), cfg.seed)
        .collect();
    let windows = f.get("eval_inputs", "F32").0[0];
    let want: Vec<Vec<Sequence>> = match task.carries_state() {
        true => eval.iter().map(sequences).collect(),
        false => vec![eval.iter().flat_map(sequences).collect()],
    };
    assert_eq!(windows, want.len(), "{name}: evaluation windows");
    for (w, want) in want.iter().enumerate() {
        assert!(
            file_sequences(&f, "eval_", w, regression) == *want,
            "{name}: evaluation window {w} differs"
        );
    }
    check_input_ids(&f, "eval_");
    if let Some((_, _, metric)) = f.tensors.get("eval_metric_mask") {
        let (_, loss) = f.get("eval_loss_mask", "BOOL");
        let t = task.time_steps();
        let b = f.get("eval_inputs", "F32").0[2];
        for (k, (&m, &l)) in metric.iter().zip(loss).enumerate() {
            // Copy scores only its 10 recall steps; every other task every step with a loss.
            let step = k / b % t;
            let scored = cfg.task != TaskKind::Copy || step >= t - 10;
            assert_eq!(m == 1, l == 1 && scored, "{name}: metric mask at {k}");
        }
    }

    // The initial parameters.
    for (pname, shape, r) in trainer.model.param_names() {
        let (s, v) = f.get(&format!("init.{pname}"), "F32");
        assert_eq!(s, &shape[..], "{name}: init.{pname}'s shape");
        assert_eq!(
            f32s(v),
            bits(&trainer.model.params[r]),
            "{name}: init.{pname}"
        );
    }

    // `gradlab run` with the same flags trains the same run: same id, same loss at every update.
    let out = dir.join("run");
    let o = gradlab(&[&["run"], &flags[..], &["--out", s(&out)]].concat());
    assert!(o.status.success(), "{name}: {}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains(&format!("run {}:", f.meta["run_id"])),
        "{name}: {}",
        text(&o.stdout)
    );
    let steps = read_table(&out, "steps").unwrap().unwrap();
    let losses: Vec<u64> = steps
        .column("loss")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .map(f64::to_bits)
        .collect();
    let want: Vec<u64> = record.logged.iter().map(|r| r.loss.to_bits()).collect();
    assert_eq!(
        want.len(),
        cfg.steps,
        "{name}: log_every = 1 logs every update"
    );
    assert_eq!(losses, want, "{name}: gradlab run's losses");
    f
}

#[test]
fn adding_batches_are_the_ones_the_run_trains_on() {
    let run = "--task adding --seq-len 12 --cell lstm --hidden 8 --batch 4 --steps 6 \
               --optimizer adam --lr 0.01 --seed 3";
    let f = round_trip("adding", &flags(run, &[]), &[]);
    assert_eq!(f.get("targets", "F32").0, &[6, 4]);
    assert_eq!(f.get("loss_mask", "BOOL").0, &[6, 12, 4]);
    let task = f.json("task");
    assert_eq!(task["loss"], "mse");
    assert_eq!(task["criterion"]["op"], "<");
    assert_eq!(task["criterion"]["threshold"], 0.01);
}

#[test]
fn temporal_order_batches_are_the_ones_the_run_trains_on() {
    let run = "--task temporal-order --seq-len 20 --cell gru --hidden 8 --batch 5 --steps 5 \
               --truncation 7";
    let f = round_trip("temporal-order", &flags(run, &[]), &[]);
    assert_eq!(f.get("targets", "I64").0, &[5, 20, 5]);
    // The class is read at the last step only.
    let (_, mask) = f.get("loss_mask", "BOOL");
    let per_step: Vec<u8> = (0..20).map(|s| mask[s * 5]).collect();
    assert_eq!(per_step, [vec![0; 19], vec![1]].concat());
}

#[test]
fn copy_batches_are_the_ones_the_run_trains_on() {
    let dir = tmpdir("data-copy-config");
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        "task = 'copy'\nseq_len = 5\nhidden = 8\nbatch = 3\n",
    )
    .unwrap();
    let run = flags(
        "--steps 5 --set cell=rnn --set seed=9",
        &["--config", s(&config)],
    );
    let f = round_trip("copy", &run, &["--batches", "3"]);
    assert_eq!(
        f.get("inputs", "F32").0,
        &[3, 25, 3, 10],
        "--batches 3 of 25 steps"
    );
    assert_eq!(f.get("input_ids", "I64").0, &[3, 25, 3]);
}

#[test]
fn charlm_batches_and_validation_are_the_ones_the_run_uses() {
    let dir = tmpdir("data-charlm-text");
    let path = text_file(&dir, 6_000);
    let run = "--task charlm --seq-len 8 --cell lstm --depth 2 --hidden 8 --batch 3 --steps 6 \
               --eval-every 3 --optimizer rmsprop --lr 0.002";
    let f = round_trip("charlm", &flags(run, &["--text", s(&path)]), &[]);
    let vocab: String = serde_json::from_str(&f.meta["vocab"]).unwrap();
    let mut want: Vec<char> = std::fs::read_to_string(&path).unwrap().chars().collect();
    want.sort_unstable();
    want.dedup();
    assert_eq!(
        vocab,
        want.into_iter().collect::<String>(),
        "the vocabulary in id order"
    );
    assert_eq!(f.json("evaluation")["carries_state"], true);
    assert_eq!(
        f.get("eval_inputs", "F32").0[2],
        16,
        "16 validation streams"
    );
}

#[test]
fn charlm_on_tinyshakespeare_round_trips() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tinyshakespeare.txt");
    if !path.exists() {
        eprintln!("skipping: {} is absent", path.display());
        return;
    }
    let run = "--task charlm --seq-len 16 --cell lstm --hidden 8 --batch 4 --steps 4 \
               --optimizer adam --lr 0.002";
    let f = round_trip("tinyshakespeare", &flags(run, &["--text", s(&path)]), &[]);
    assert_eq!(f.get("inputs", "F32").0, &[4, 16, 4, 65]);
}

#[test]
fn hello_and_seq2seq_batches_round_trip() {
    let hello = "--task hello --hidden 8 --batch 2 --steps 3";
    round_trip("hello", &flags(hello, &[]), &[]);
    let reverse = "--model seq2seq --task reverse --seq-len 4 --hidden 8 --batch 3 --steps 4";
    let f = round_trip("reverse", &flags(reverse, &[]), &[]);
    assert_eq!(f.get("source_inputs", "F32").0, &[4, 4, 3, 8]);
    assert!(
        !f.tensors.contains_key("eval_metric_mask"),
        "exact match is per sequence"
    );
}

#[test]
fn bad_input_is_refused_with_what_to_fix() {
    let dir = tmpdir("data-errors");
    let out = dir.join("d.safetensors");
    let missing = dir.join("no-such-folder").join("d.safetensors");
    // (flags, out, what the error must say)
    let cases: [(&str, &Path, &[&str]); 7] = [
        ("--task nope", &out, &["task", "nope", "adding"]),
        ("--batches 0", &out, &["--batches", "'0'"]),
        (
            "--batches 2",
            &missing,
            &["no-such-folder", "does not exist"],
        ),
        ("--batches 2", &dir, &["is a folder"]),
        (
            "--task charlm --batches 2",
            &out,
            &["text", "charlm needs a text file"],
        ),
        (
            "--batches 200000000",
            &out,
            &["--batches 200000000", "at most", "batches fit"],
        ),
        (
            "--steps 200000000",
            &out,
            &["--batches (default: steps = 200000000)"],
        ),
    ];
    for (words, out, says) in cases {
        let args: Vec<&str> = ["data"]
            .into_iter()
            .chain(words.split_whitespace())
            .collect();
        let e = fails(&[&args[..], &["--out", s(out)]].concat());
        for what in says {
            assert!(e.contains(what), "gradlab data {words}: says {what}: {e}");
        }
    }
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "a refused export leaves nothing: {left:?}");
}

#[test]
fn an_export_replaces_the_file_whole_and_leaves_no_temporary() {
    let dir = tmpdir("data-atomic");
    let out = dir.join("d.safetensors");
    std::fs::write(&out, "an older file").unwrap();
    let o = gradlab(&[
        "data",
        "--task",
        "adding",
        "--batches",
        "2",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let f = Tensors::read(&out);
    assert_eq!(f.get("inputs", "F32").0, &[2, 100, 20, 2]);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("d.safetensors")]);
}
