//! The `regularizer` key: its values and errors, and training with Pascanu et al.'s Ω (the
//! gradient itself is checked against the f64 reference in `train_reference.rs`, the kernel in
//! `gradlab-kernels`' `omega.rs`).

use gradlab_experiments::config::{Regularizer, RunConfig};
use gradlab_experiments::sweep::run_id;
use gradlab_experiments::train::record::RunRecord;
use gradlab_experiments::train::Trainer;
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::Par;

fn config(toml: &str) -> RunConfig {
    RunConfig::from_toml(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

/// Everything but start time, wall time and steps/s.
fn without_timing(mut r: RunRecord) -> RunRecord {
    (r.outcome.wall_seconds, r.outcome.steps_per_sec) = (0.0, 0.0);
    r.outcome.started_at = std::time::SystemTime::UNIX_EPOCH;
    r
}

#[test]
fn the_regularizer_reads_back_as_written() {
    for (text, value) in [
        ("none", Regularizer::None),
        ("pascanu:4", Regularizer::Pascanu(4.0)),
        ("pascanu:0.5", Regularizer::Pascanu(0.5)),
        ("pascanu:1e-3", Regularizer::Pascanu(1e-3)),
    ] {
        let parsed: Regularizer = text.parse().unwrap();
        assert_eq!(parsed, value, "{text}");
        assert_eq!(parsed.to_string().parse::<Regularizer>(), Ok(value));
        let mut cfg = RunConfig::default();
        cfg.set("regularizer", text).unwrap();
        assert_eq!(cfg.regularizer, value);
        assert_eq!(RunConfig::from_toml(&cfg.to_toml()).unwrap(), cfg);
        let toml = config(&format!("regularizer = '{text}'\n"));
        assert_eq!(toml.regularizer, value);
    }
    // At its default the key is not part of a run's identity; set, it is.
    let mut cfg = RunConfig::default();
    let plain = run_id(&cfg);
    cfg.set("regularizer", "none").unwrap();
    assert_eq!(run_id(&cfg), plain);
    cfg.set("regularizer", "pascanu:4").unwrap();
    assert_ne!(run_id(&cfg), plain);
    assert_eq!(cfg.identity_toml(), "regularizer = \"pascanu:4\"\n");
}

#[test]
fn bad_regularizers_name_the_key_the_value_and_what_is_allowed() {
    let allowed = "expected none or pascanu:<α> with α > 0";
    for (value, why) in [
        ("pascanu:0", "must be a finite number > 0"),
        ("pascanu:-1", "must be a finite number > 0"),
        ("pascanu:x", "must be a finite number > 0"),
        ("pascanu:inf", "must be a finite number > 0"),
        ("pascanu:nan", "must be a finite number > 0"),
        ("pascanu", "write pascanu:<α>"),
        ("foo", "invalid regularizer 'foo'"),
        ("l2:0.1", "invalid regularizer 'l2:0.1'"),
    ] {
        let e = RunConfig::default()
            .set("regularizer", value)
            .unwrap_err()
            .to_string();
        for want in ["'regularizer'", value, why, allowed] {
            assert!(e.contains(want), "{value}: {e:?} lacks {want:?}");
        }
        let e = RunConfig::from_toml(&format!("regularizer = '{value}'\n"))
            .unwrap_err()
            .to_string();
        for want in ["regularizer", why, allowed] {
            assert!(e.contains(want), "TOML {value}: {e:?} lacks {want:?}");
        }
    }
    for (toml, why) in [
        (
            "cell = 'lstm'",
            "applies to vanilla RNN cells only (cell = \"rnn\"",
        ),
        ("cell = 'gru'", "which a gru does not have"),
        (
            "model = 'seq2seq'\ntask = 'reverse'\nseq_len = 5",
            "not for seq2seq's encoder and decoder",
        ),
    ] {
        let e = config(&format!("{toml}\nregularizer = 'pascanu:4'\n"))
            .validate()
            .unwrap_err()
            .to_string();
        for want in [
            "'regularizer'",
            "pascanu:4",
            why,
            "use regularizer = \"none\"",
        ] {
            assert!(e.contains(want), "{toml}: {e:?} lacks {want:?}");
        }
        config(toml)
            .validate()
            .expect("valid without the regularizer");
    }
}

/// Small runs of every kind Ω supports: tanh and relu, one and two layers, full BPTT and both
/// forms of truncation, a loss at the last step and losses at many.
const RUNS: [&str; 4] = [
    "task = 'adding'\nseq_len = 20",
    "task = 'adding'\nseq_len = 20\nnonlinearity = 'relu'\ninit = 'identity'\ndepth = 2\n\
     truncation = 7",
    "task = 'temporal-order'\nseq_len = 20\ndepth = 2\ntruncation_k1 = 4\ntruncation_k2 = 9",
    "task = 'copy'\nseq_len = 5\nclip = 'none'",
];

fn run_config(kind: &str, regularizer: &str) -> RunConfig {
    config(&format!(
        "hidden = 12\nbatch = 5\nsteps = 40\nlog_every = 10\neval_every = 25\n\
         eval_sequences = 20\nlyapunov_steps = 10\n{kind}\nregularizer = '{regularizer}'\n"
    ))
}

#[test]
fn a_regularised_run_logs_omega_differs_and_does_not_depend_on_threads() {
    for kind in RUNS {
        let cfg = run_config(kind, "pascanu:4");
        let depth = cfg.depth;
        let seq = without_timing(Trainer::new(cfg.clone(), Par::Seq).unwrap().run(|_, _| {}));
        let par = without_timing(Trainer::new(cfg, Par::rayon(2)).unwrap().run(|_, _| {}));
        assert_eq!(seq, par, "{kind}: Rayon(2) differs from Seq");
        for row in &seq.logged {
            let omega = row
                .omega
                .unwrap_or_else(|| panic!("{kind}: step {} has no Ω", row.step));
            assert!(omega.is_finite() && omega >= 0.0, "{kind}: Ω {omega}");
            assert_eq!(row.omega_layers.len(), depth, "{kind}");
            let layers: f64 = row.omega_layers.iter().map(|o| o.unwrap_or(0.0)).sum();
            assert_eq!(omega, layers, "{kind}: steps' Ω is the sum of the layers'");
            assert!(
                row.omega_layers.iter().all(Option::is_some),
                "{kind}: {row:?}"
            );
        }
        let plain = without_timing(
            Trainer::new(run_config(kind, "none"), Par::Seq)
                .unwrap()
                .run(|_, _| {}),
        );
        assert!(plain
            .logged
            .iter()
            .all(|r| r.omega.is_none() && r.omega_layers.is_empty()));
        let (a, b) = (&seq.logged[0], &plain.logged[0]);
        assert_eq!(
            a.loss, b.loss,
            "{kind}: the first update's loss comes before Ω"
        );
        assert_ne!(
            a.grad_norm, b.grad_norm,
            "{kind}: Ω's gradient is in the pre-clip norm"
        );
        // The truncation bias compares the loss's gradients, Ω's left out.
        assert_eq!(a.trunc_cosine, b.trunc_cosine, "{kind}");
        assert_ne!(seq.outcome.final_loss, plain.outcome.final_loss, "{kind}");
    }
}

#[test]
fn omega_changes_only_w_hh_gradients_in_proportion_to_alpha() {
    let gradient = |regularizer: &str| {
        let cfg = run_config(RUNS[1], regularizer);
        let mut tr = Trainer::new(cfg, Par::Seq).unwrap();
        let batch = tr.task.fresh_batch(&mut SplitMix64(3), 5);
        let g = tr.loss_and_gradient(&batch).1.to_vec();
        (g, tr.model.stack)
    };
    let (plain, stack) = gradient("none");
    let (one, _) = gradient("pascanu:1");
    let (four, _) = gradient("pascanu:4");
    let w_hh: Vec<_> = (0..stack.layers)
        .map(|l| stack.layer_ranges(l).w_hh)
        .collect();
    for e in 0..plain.len() {
        if !w_hh.iter().any(|r| r.contains(&e)) {
            assert_eq!((one[e], four[e]), (plain[e], plain[e]), "parameter {e}");
        }
    }
    for r in w_hh {
        let d1: Vec<f64> = r.clone().map(|e| f64::from(one[e] - plain[e])).collect();
        let d4: Vec<f64> = r.map(|e| f64::from(four[e] - plain[e])).collect();
        let norm = d1.iter().map(|x| x * x).sum::<f64>().sqrt();
        let err = d1
            .iter()
            .zip(&d4)
            .map(|(a, b)| (4.0 * a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(norm > 0.0 && err < 1e-4 * 4.0 * norm, "{norm} {err}");
    }
}
