//! Results and checkpoints on disk: Parquet tables with the documented columns, atomic writes,
//! and checkpoints that round-trip bit-exactly with PyTorch names.

use gradlab_experiments::config::RunConfig;
use gradlab_experiments::model::checkpoint::{self, TensorFile};
use gradlab_experiments::store::{self, read_parquet, Provenance};
use gradlab_experiments::sweep::run_id;
use gradlab_experiments::train::Trainer;
use gradlab_kernels::Par;
use polars::prelude::*;

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gradlab-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn prov() -> Provenance {
    Provenance {
        sweep: "test".into(),
        isa: "isa".into(),
        gradlab_version: "0".into(),
        git_commit: "abc".into(),
    }
}

#[test]
fn a_run_writes_the_three_tables_with_the_documented_columns() {
    let dir = tmpdir("tables");
    let cfg = RunConfig::from_toml("task = 'temporal-order'\nseq_len = 20\ncell = 'lstm'\nhidden = 8\ndepth = 2\nsteps = 12\nlog_every = 5\neval_every = 10\neval_sequences = 20\ntruncation = 6\n").unwrap();
    let rec = Trainer::new(cfg.clone(), Par::Seq).unwrap().run(|_, _| {});
    let id = run_id(&cfg);
    store::write_run(&dir, &id, &cfg, &rec, &prov()).unwrap();
    assert_eq!(id, run_id(&cfg));
    let [runs, steps, flow] = store::run_paths(&dir, &id).map(|p| read_parquet(&p).unwrap());
    assert_eq!(runs.height(), 1);
    for col in [
        "run_id",
        "sweep",
        "seed",
        "task",
        "truncation",
        "clip",
        "status",
        "final_loss",
        "best_loss",
        "metric",
        "success",
        "diverged_at_step",
        "clip_fraction",
        "decay_rate",
        "steps",
        "steps_completed",
        "wall_seconds",
        "steps_per_sec",
        "isa",
        "gradlab_version",
        "git_commit",
    ] {
        assert!(runs.column(col).is_ok(), "runs lacks {col}");
    }
    assert_eq!(
        runs.column("truncation").unwrap().str().unwrap().get(0),
        Some("6")
    );
    assert_eq!(
        runs.column("status").unwrap().str().unwrap().get(0),
        Some("ok")
    );
    assert_eq!(
        runs.column("steps_completed")
            .unwrap()
            .i64()
            .unwrap()
            .get(0),
        Some(12)
    );
    // Steps 0, 5, 10 (and the eval at 9), 11.
    let logged: Vec<i64> = steps
        .column("step")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(logged, [0, 5, 9, 10, 11]);
    for col in [
        "loss",
        "grad_norm",
        "grad_norm_clipped",
        "clipped",
        "lr",
        "grad_norm_l0",
        "grad_norm_l1",
        "eval_loss",
        "eval_metric",
        "trunc_cosine",
        "trunc_norm_ratio",
        "sigma_max_l1",
        "spectral_radius_l0",
        "forget_mean_l1",
    ] {
        assert!(steps.column(col).is_ok(), "steps lacks {col}");
    }
    // Probe rows cover every lag of the 20-step window, train rows the 6 of the truncation.
    assert_eq!(
        count_source(&flow, "probe"),
        4 * 2 * 20,
        "4 diagnosed steps x 2 layers x 20 lags"
    );
    assert_eq!(
        count_source(&flow, "train"),
        4 * 2 * 6,
        "the last window of k = 6 steps"
    );
    // No temporary file is left behind.
    for t in ["runs", "steps", "flow"] {
        let names: Vec<_> = std::fs::read_dir(dir.join(t))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{t}: {names:?}");
    }
}

fn count_source(flow: &DataFrame, source: &str) -> usize {
    flow.column("source")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .filter(|s| *s == Some(source))
        .count()
}

#[test]
fn a_checkpoint_round_trips_bit_exactly_with_pytorch_names() {
    let dir = tmpdir("checkpoint");
    for cell in ["rnn", "lstm"] {
        let cfg = RunConfig::from_toml(&format!("task = 'hello'\ncell = '{cell}'\nhidden = 6\ndepth = 2\nsteps = 3\nnonlinearity = 'relu'\n")).unwrap();
        let mut tr = Trainer::new(cfg.clone(), Par::Seq).unwrap();
        tr.run(|_, _| {});
        let path = dir.join(format!("{cell}.safetensors"));
        let vocab = tr.task.corpus.as_ref().unwrap().vocab.clone();
        checkpoint::save(&path, &tr.model, Some(&cfg), Some(&vocab)).unwrap();
        let ck = checkpoint::load(&path).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&ck.model.params),
            bits(&tr.model.params),
            "{cell}: parameters"
        );
        assert_eq!(ck.model.stack, tr.model.stack);
        assert_eq!(ck.config.as_ref(), Some(&cfg));
        assert_eq!(ck.vocab.as_ref(), Some(&vocab));
        let file = TensorFile::read(&path).unwrap();
        let g = if cell == "lstm" { 4 } else { 1 };
        assert_eq!(file.shape("weight_ih_l0").unwrap(), [g * 6, 4]);
        assert_eq!(file.shape("weight_hh_l1").unwrap(), [g * 6, 6]);
        assert_eq!(file.shape("bias_hh_l1").unwrap(), [g * 6]);
        assert_eq!(file.shape("head.weight").unwrap(), [4, 6]);
    }
}

#[test]
fn a_failed_write_leaves_no_file_and_no_temporary() {
    let dir = tmpdir("atomic");
    let path = dir.join("x.bin");
    let err =
        gradlab_experiments::fs::write_atomic(&path, |_| Err(std::io::Error::other("disk full")))
            .unwrap_err();
    assert_eq!(err.to_string(), "disk full");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing may remain"
    );
}
