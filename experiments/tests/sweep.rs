//! Sweep specs: expansion order and size, random samples, the written spec, shards and run ids.

use std::collections::BTreeSet;

use gradlab_experiments::config::{identity_toml, key_help, CellKind, RunConfig, KEYS};
use gradlab_experiments::sweep::identity::fnv1a_hex;
use gradlab_experiments::sweep::{parse_shard, shard, Spec};
use gradlab_experiments::sweep::{run_id, SpecErrorKind};

const SPEC: &str = r#"
name = "s"
seeds = [3, 4]
[base]
hidden = 16
steps = 10
[grid]
cell = ["rnn", "lstm"]
truncation = [10, "full"]
clip = ["none", "norm:1", "value:0.5"]
[random]
n = 3
seed = 7
lr = { log_uniform = [1e-4, 1e-1] }
depth = { int = [1, 3] }
init = { choice = ["default", "orthogonal"] }
"#;

#[test]
fn a_spec_expands_to_the_product_of_its_axes_samples_and_seeds_in_order() {
    let spec = Spec::parse(SPEC, "spec.toml").unwrap();
    let runs = spec.expand().unwrap();
    assert_eq!(runs.len(), 2 * 2 * 3 * 3 * 2);
    let ids: BTreeSet<_> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), runs.len(), "run ids collide");
    // Last axis fastest, then samples, then seeds innermost.
    assert_eq!(
        runs[0].label().split(' ').take(3).collect::<Vec<_>>(),
        ["cell=rnn", "truncation=10", "clip=none"]
    );
    assert_eq!(runs[1].config.seed, 4);
    assert_eq!(runs[6].config.clip.to_string(), "norm:1");
    assert_eq!(runs.last().unwrap().config.cell, CellKind::Lstm);
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r.index, i);
        assert_eq!(r.id, run_id(&r.config));
        assert_eq!(r.config.name, "s");
        assert_eq!(r.config.hidden, 16);
        assert!((1e-4..1e-1).contains(&r.config.lr), "lr {}", r.config.lr);
        assert!((1..=3).contains(&r.config.depth));
    }
    // Every grid point sees the same samples; the samples differ from each other.
    let lrs: Vec<f64> = runs
        .iter()
        .step_by(2)
        .take(3)
        .map(|r| r.config.lr)
        .collect();
    assert_eq!(
        lrs,
        runs.iter()
            .skip(6)
            .step_by(2)
            .take(3)
            .map(|r| r.config.lr)
            .collect::<Vec<_>>()
    );
    assert!(lrs[0] != lrs[1] && lrs[1] != lrs[2]);
}

#[test]
fn the_written_spec_expands_to_the_same_runs_and_writes_itself_again() {
    let mut spec = Spec::parse(SPEC, "spec.toml").unwrap();
    spec.set("batch", "7").unwrap();
    spec.set_axis("hidden", "8,32").unwrap();
    let written = spec.to_toml();
    let again = Spec::parse(&written, "sweep.toml").unwrap();
    assert_eq!(again.expand().unwrap(), spec.expand().unwrap());
    assert_eq!(again.to_toml(), written);
    assert!(spec.expand().unwrap().iter().all(|r| r.config.batch == 7));
}

#[test]
fn shards_are_disjoint_balanced_and_make_the_whole_sweep() {
    let runs = Spec::parse(SPEC, "spec.toml").unwrap().expand().unwrap();
    for n in [1, 2, 5, 72, 100] {
        let mut all = Vec::new();
        for i in 0..n {
            let part = shard(&runs, i, n);
            assert!(part.len().abs_diff(runs.len() / n) <= 1);
            all.extend(part.iter().map(|r| r.index));
        }
        all.sort();
        assert_eq!(all, (0..runs.len()).collect::<Vec<_>>(), "n = {n}");
    }
    assert_eq!(parse_shard("2/5").unwrap(), (2, 5));
    for bad in ["5/5", "1/0", "-1/2", "1", "a/b", "1/2/3"] {
        assert!(parse_shard(bad).is_err(), "{bad}");
    }
}

/// The run id is a contract: results folders written by one build are resumed by the next.
/// The values are FNV-1a of the canonical TOML of the keys that differ from their default,
/// computed independently (Python).
#[test]
fn run_ids_are_stable_across_builds() {
    assert_eq!(run_id(&RunConfig::default()), "cbf29ce484222325");
    let mut cfg = RunConfig::default();
    for (k, v) in [
        ("task", "copy"),
        ("cell", "lstm"),
        ("hidden", "64"),
        ("lr", "0.001"),
        ("truncation", "20"),
        ("clip", "none"),
        ("seed", "3"),
    ] {
        cfg.set(k, v).unwrap();
    }
    assert_eq!(
        cfg.identity_toml(),
        "task = \"copy\"\ncell = \"lstm\"\nhidden = 64\nlr = 0.001\ntruncation = 20\nclip = \"none\"\nseed = 3\n"
    );
    assert_eq!(run_id(&cfg), "5defed0867bcee1e");
    // A run of the built-in demo (lstm, truncation 5, clip norm:1 = the default, seed 2).
    let demo = Spec::parse(include_str!("../configs/demo.toml"), "demo.toml")
        .unwrap()
        .expand()
        .unwrap();
    let run = demo
        .iter()
        .find(|r| r.label() == "cell=lstm truncation=5 clip=norm:1 seed=2")
        .unwrap();
    assert_eq!(run.id, "859a4fd9f9e39acc", "{}", run.config.identity_toml());
}

/// Regression (issue 9): the id hashed the whole config, so adding any key with a default
/// changed every id and made every existing results folder run again.
#[test]
fn a_new_key_at_its_default_leaves_run_ids_unchanged() {
    let mut cfg = RunConfig::default();
    cfg.set("cell", "lstm").unwrap();
    cfg.seed = 7;
    let (mut values, mut defaults) = (cfg.to_table(), RunConfig::default().to_table());
    let before = fnv1a_hex(&identity_toml(&values, &defaults));
    assert_eq!(before, run_id(&cfg));
    let new_key = (
        "regularizer".to_string(),
        toml::Value::String("none".into()),
    );
    values.insert(new_key.0.clone(), new_key.1.clone());
    defaults.insert(new_key.0.clone(), new_key.1);
    assert_eq!(fnv1a_hex(&identity_toml(&values, &defaults)), before);
    values.insert(new_key.0, toml::Value::String("pascanu:2".into()));
    assert_ne!(fnv1a_hex(&identity_toml(&values, &defaults)), before);
}

/// The defaults are part of every run's identity (a key at its default is left out of the
/// hash): changing one would make existing ids name different runs. Change them only with a
/// note that old results folders must be rerun.
#[test]
fn the_defaults_behind_run_ids_are_pinned() {
    assert_eq!(
        RunConfig::default().to_toml(),
        "name = \"run\"\ntask = \"adding\"\nmodel = \"stack\"\nreverse_source = false\n\
         seq_len = 100\ncell = \"rnn\"\nnonlinearity = \"tanh\"\n\
         hidden = 50\ndepth = 1\nbatch = 20\nsteps = 2000\noptimizer = \"sgd\"\nlr = 0.01\n\
         momentum = 0.0\nnesterov = false\nrmsprop_decay = 0.95\nlr_schedule = \"constant\"\ntruncation = \"full\"\n\
         clip = \"norm:1\"\ninit = \"default\"\nforget_bias = 1.0\nregularizer = \"none\"\nlog_every = 50\n\
         eval_every = 500\neval_sequences = 1000\nstop_at_success = false\ndiag_every = 0\nlyapunov_steps = 500\nseed = 0\n\
         checkpoint_every = 0\ncheckpoint_seconds = 30.0\ntags = []\nnote = \"\"\n"
    );
}

/// Every key of the table is a field of the struct and has help, and every field is a key.
#[test]
fn the_key_list_and_the_config_struct_agree() {
    let cfg = RunConfig {
        text: Some("t.txt".into()),
        truncation_k1: Some(1),
        truncation_k2: Some(2),
        ..RunConfig::default()
    };
    let fields: Vec<String> = cfg.to_table().keys().cloned().collect();
    assert_eq!(fields, KEYS);
    for key in KEYS {
        assert!(
            key_help(key).is_some_and(|h| !h.is_empty()),
            "{key} has no help"
        );
        let value = cfg.to_table()[*key].clone();
        let mut other = RunConfig::default();
        other
            .set_value(key, value)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
    }
}

/// Errors say what kind of problem they are, for callers that branch on it.
#[test]
fn spec_errors_carry_their_kind() {
    let cases = [
        ("name = 'a b'\nseeds = [0]\n", SpecErrorKind::Name),
        ("name = 'a'\nseeds = []\n", SpecErrorKind::Seeds),
        (
            "name = 'a'\nseeds = [0]\n[base]\nhiden = 3\n",
            SpecErrorKind::Key,
        ),
        (
            "name = 'a'\nseeds = [0]\n[base]\nhidden = 'x'\n",
            SpecErrorKind::Value,
        ),
        (
            "name = 'a'\nseeds = [0]\n[grid]\nhidden = []\n",
            SpecErrorKind::Axis,
        ),
        (
            "name = 'a'\nseeds = [0]\n[random]\nlr = { uniform = [0.1, 0.2] }\n",
            SpecErrorKind::Random,
        ),
        (
            "name = 'a'\nseeds = [0]\n[grid]\ntruncation_k1 = [5]\ntruncation_k2 = [3]\n",
            SpecErrorKind::Run,
        ),
        ("name = 'a'\nseeds = [0\n", SpecErrorKind::Syntax),
    ];
    for (text, kind) in cases {
        let err = Spec::parse(text, "s.toml")
            .and_then(|s| s.expand())
            .unwrap_err();
        assert_eq!(err.kind, kind, "{text:?}: {err}");
    }
    assert_eq!(parse_shard("3/2").unwrap_err().kind, SpecErrorKind::Shard);
}

/// `tags` and `note` label runs without entering `run_id`, so sweeping them would give several
/// runs one id: refused with a message that says to set them in `[base]`; in `[base]` they are
/// recorded and leave every id as it was.
#[test]
fn labels_are_not_axes_and_do_not_change_ids() {
    let err = Spec::parse(
        "name = 'a'\nseeds = [0]\n[grid]\ntags = ['x', 'y']\n",
        "s.toml",
    )
    .unwrap_err();
    assert_eq!(err.kind, SpecErrorKind::Axis, "{err}");
    assert!(err.to_string().contains("set them in [base]"), "{err}");
    let plain = Spec::parse("name = 'a'\nseeds = [0, 1]\n", "s.toml")
        .unwrap()
        .expand()
        .unwrap();
    let labelled = Spec::parse(
        "name = 'a'\nseeds = [0, 1]\n[base]\ntags = ['x', 'y']\nnote = 'why'\n",
        "s.toml",
    )
    .unwrap()
    .expand()
    .unwrap();
    let ids = |runs: &[gradlab_experiments::sweep::PlannedRun]| {
        runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&plain), ids(&labelled));
    assert_eq!(labelled[0].config.tags.0, ["x", "y"]);
}
