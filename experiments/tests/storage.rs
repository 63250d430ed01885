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
fn a_run_writes_the_five_tables_with_the_documented_columns() {
    // A GRU logs its update gate z in the forget-gate columns, as an LSTM logs f.
    for cell in ["lstm", "gru"] {
        writes_the_five_tables(cell);
    }
}

fn writes_the_five_tables(cell: &str) {
    let dir = tmpdir(&format!("tables-{cell}"));
    let cfg = RunConfig::from_toml(&format!("task = 'temporal-order'\nseq_len = 20\ncell = '{cell}'\nhidden = 8\ndepth = 2\nsteps = 12\nlog_every = 5\neval_every = 10\neval_sequences = 20\ntruncation = 6\n")).unwrap();
    let rec = Trainer::new(cfg.clone(), Par::Seq).unwrap().run(|_, _| {});
    let id = run_id(&cfg);
    store::write_run(&dir, &id, &cfg, &rec, &prov()).unwrap();
    assert_eq!(id, run_id(&cfg));
    let [runs, steps, layers, flow, spectrum] =
        store::run_paths(&dir, &id).map(|p| read_parquet(&p).unwrap());
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
        "success_op",
        "success_threshold",
        "diverged_at_step",
        "clip_fraction",
        "decay_rate",
        "steps",
        "steps_completed",
        "started_at",
        "host",
        "tags",
        "note",
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
        "eval_loss",
        "eval_metric",
        "trunc_cosine",
        "trunc_norm_ratio",
        "norm_ratio_mean",
        "norm_ratio_min",
        "omega",
    ] {
        assert!(steps.column(col).is_ok(), "steps lacks {col}");
    }
    // No regulariser: Ω is null in both tables.
    assert_eq!(steps.column("omega").unwrap().null_count(), steps.height());
    assert_eq!(
        layers.column("omega").unwrap().null_count(),
        layers.height()
    );
    // Per-layer quantities are rows of `layers`: 5 logged steps x 2 layers.
    assert_eq!(layers.height(), 5 * 2);
    let layer: Vec<i64> = layers
        .column("layer")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(layer, [0, 1].repeat(5));
    assert_eq!(layers.column("grad_norm").unwrap().null_count(), 0);
    // Diagnostics at the 4 logged steps, not at the evaluation-only step 9.
    for col in [
        "sigma_max",
        "forget_mean",
        "forget_saturation",
        "orthogonality",
    ] {
        let c = layers.column(col).unwrap();
        assert_eq!(
            c.null_count(),
            2,
            "{cell} layers.{col}: nulls other than step 9's"
        );
    }
    let gate_mean = layers.column("forget_mean").unwrap().f64().unwrap();
    assert!(
        gate_mean.iter().flatten().all(|m| m > 0.0 && m < 1.0),
        "{cell}: a gate mean is in (0, 1)"
    );
    // The spectra at the first and last update (0 and 11) only.
    for col in ["lyapunov_max", "kaplan_yorke_dim", "lyapunov_positive"] {
        let c = layers.column(col).unwrap();
        assert_eq!(
            c.null_count(),
            3 * 2,
            "layers.{col}: measured at steps 0 and 11"
        );
    }
    assert_eq!(
        layers.column("lyapunov_positive").unwrap().dtype(),
        &polars::prelude::DataType::Int64
    );
    // Per measured step (2) and layer (2): an exponent per state dimension (the joint (h, c)
    // of an LSTM's 8 units, a GRU's h), and as many singular values for each k in 1, 2, 4, 8,
    // 16, 20.
    let dim = if cell == "lstm" { 16 } else { 8 };
    assert_eq!(spectrum.height(), 2 * 2 * dim * 7);
    let kinds = spectrum.column("kind").unwrap().str().unwrap();
    let kinds: std::collections::BTreeSet<&str> = kinds.iter().flatten().collect();
    let want = [
        "jacobian_sv_k1",
        "jacobian_sv_k16",
        "jacobian_sv_k2",
        "jacobian_sv_k20",
    ];
    assert!(want.iter().all(|k| kinds.contains(k)) && kinds.contains("lyapunov"));
    assert_eq!(kinds.len(), 7, "{kinds:?}");
    assert_eq!(
        layers.column("spectral_radius").unwrap().null_count(),
        10,
        "an {cell}'s W_hh is not square"
    );
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
    for t in store::TABLES {
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
    for cell in ["rnn", "lstm", "gru"] {
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
        let g = match cell {
            "lstm" => 4,
            "gru" => 3,
            _ => 1,
        };
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

/// Regression (issue 13): a sweep over depth wrote `grad_norm_l1` and friends only for its
/// deeper runs, so `steps/*.parquet` had files of different schemas and DuckDB, polars and
/// pyarrow failed or dropped columns on the glob. Every table's schema is now the same for any
/// depth and cell.
#[test]
fn every_file_of_a_table_has_the_same_schema() {
    let dir = tmpdir("schemas");
    let mut ids = Vec::new();
    for (cell, depth) in [("rnn", 1), ("lstm", 3), ("gru", 2)] {
        let cfg = RunConfig::from_toml(&format!(
            "cell = '{cell}'\ndepth = {depth}\nseq_len = 8\nhidden = 4\nsteps = 3\nlog_every = 1\neval_sequences = 4\n"
        ))
        .unwrap();
        let rec = Trainer::new(cfg.clone(), Par::Seq).unwrap().run(|_, _| {});
        let id = run_id(&cfg);
        store::write_run(&dir, &id, &cfg, &rec, &prov()).unwrap();
        ids.push(id);
    }
    let [a, b, c] = [&ids[0], &ids[1], &ids[2]].map(|id| store::run_paths(&dir, id));
    for ((pa, pb), pc) in a.iter().zip(&b).zip(&c) {
        let [sa, sb, sc] = [pa, pb, pc].map(|p| read_parquet(p).unwrap().schema().clone());
        assert_eq!(sa, sb, "{} and {} differ", pa.display(), pb.display());
        assert_eq!(sa, sc, "{} and {} differ", pa.display(), pc.display());
    }
}

/// The runs table states numeric forms of the string-valued axes, the task's criterion and
/// when and where the run ran; `tags` and `note` are recorded but leave `run_id` unchanged.
#[test]
fn runs_record_numeric_axes_criterion_and_labels() {
    let dir = tmpdir("runs-columns");
    let base = "seq_len = 8\nhidden = 4\nsteps = 2\neval_sequences = 4\n";
    let mut cfg = RunConfig::from_toml(base).unwrap();
    cfg.set("truncation", "full").unwrap();
    cfg.set("clip", "value:2.5").unwrap();
    let unlabelled = run_id(&cfg);
    cfg.set("tags", "baseline, v2").unwrap();
    cfg.set("note", "first try").unwrap();
    assert_eq!(run_id(&cfg), unlabelled, "labels changed the run id");
    let rec = Trainer::new(cfg.clone(), Par::Seq).unwrap().run(|_, _| {});
    let id = run_id(&cfg);
    store::write_run(&dir, &id, &cfg, &rec, &prov()).unwrap();
    let runs = read_parquet(&store::run_paths(&dir, &id)[0]).unwrap();
    let get = |c: &str| runs.column(c).unwrap().get(0).unwrap().into_static();
    assert_eq!(get("truncation_k"), AnyValue::Null);
    assert_eq!(get("clip_kind").str_value(), "value");
    assert_eq!(get("clip_threshold"), AnyValue::Float64(2.5));
    assert_eq!(get("success_op").str_value(), "<");
    assert_eq!(get("success_threshold"), AnyValue::Float64(0.01));
    let tags = runs
        .column("tags")
        .unwrap()
        .list()
        .unwrap()
        .get_as_series(0);
    let tags = tags.unwrap();
    let tags: Vec<_> = tags.str().unwrap().iter().collect();
    assert_eq!(tags, [Some("baseline"), Some("v2")]);
    assert_eq!(get("note").str_value(), "first try");
    assert_eq!(
        get("host").str_value(),
        gradlab_experiments::fs::host().as_str()
    );
    let started = get("started_at").str_value().to_string();
    let t = humantime::parse_rfc3339(&started).expect("started_at is RFC 3339");
    let age = std::time::SystemTime::now().duration_since(t).unwrap();
    assert!(age.as_secs() < 600, "started_at {started} is not now");

    let mut truncated = cfg.clone();
    truncated.set("truncation", "7").unwrap();
    truncated.set("clip", "none").unwrap();
    let rec = Trainer::new(truncated.clone(), Par::Seq)
        .unwrap()
        .run(|_, _| {});
    let id = run_id(&truncated);
    store::write_run(&dir, &id, &truncated, &rec, &prov()).unwrap();
    let runs = read_parquet(&store::run_paths(&dir, &id)[0]).unwrap();
    let get = |c: &str| runs.column(c).unwrap().get(0).unwrap().into_static();
    assert_eq!(get("truncation_k"), AnyValue::Int64(7));
    assert_eq!(get("clip_kind").str_value(), "none");
    assert_eq!(get("clip_threshold"), AnyValue::Null);
}

#[test]
fn a_regularised_run_writes_omega_to_steps_and_layers() {
    let dir = tmpdir("omega");
    let cfg = RunConfig::from_toml(
        "seq_len = 10\nhidden = 6\ndepth = 2\nsteps = 7\nlog_every = 3\neval_sequences = 4\n\
         regularizer = 'pascanu:2'\n",
    )
    .unwrap();
    let rec = Trainer::new(cfg.clone(), Par::Seq).unwrap().run(|_, _| {});
    let id = run_id(&cfg);
    store::write_run(&dir, &id, &cfg, &rec, &prov()).unwrap();
    let [runs, steps, layers, _, _] =
        store::run_paths(&dir, &id).map(|p| read_parquet(&p).unwrap());
    let get = |c: &str| runs.column(c).unwrap().get(0).unwrap().into_static();
    assert_eq!(get("regularizer").str_value(), "pascanu:2");
    let omega: Vec<Option<f64>> = steps
        .column("omega")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .collect();
    let want: Vec<Option<f64>> = rec.logged.iter().map(|r| r.omega).collect();
    assert_eq!(omega, want);
    assert!(
        want.iter().all(|o| o.is_some_and(f64::is_finite)),
        "{want:?}"
    );
    let per_layer = layers.column("omega").unwrap().f64().unwrap().clone();
    assert_eq!(per_layer.len(), 2 * rec.logged.len());
    assert_eq!(per_layer.null_count(), 0);
    std::fs::remove_dir_all(&dir).ok();
}
