//! Training as DESIGN.md defines it: tasks are learned, clipping bounds every update, TBPTT with
//! k ≥ T is full BPTT, results do not depend on threads, divergence is an outcome, and bad
//! configurations are rejected with a message that names the key.

use gradlab_experiments::config::{Clip, RunConfig, TaskKind, Truncation};
use gradlab_experiments::task::text::min_chars;
use gradlab_experiments::task::{MetricAcc, Task, TextError, VALIDATION_STREAMS};
use gradlab_experiments::train::record::{RunRecord, Status};
use gradlab_experiments::train::{TrainError, Trainer};
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::Par;

fn config(toml: &str) -> RunConfig {
    RunConfig::from_toml(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

fn train(cfg: RunConfig, par: Par) -> RunRecord {
    Trainer::new(cfg, par).expect("valid config").run(|_, _| {})
}

/// Everything but start time, wall time and steps/s.
fn without_timing(mut r: RunRecord) -> RunRecord {
    (r.outcome.wall_seconds, r.outcome.steps_per_sec) = (0.0, 0.0);
    r.outcome.started_at = std::time::SystemTime::UNIX_EPOCH;
    r
}

#[test]
fn an_lstm_learns_hello() {
    let cfg = config("task = 'hello'\ncell = 'lstm'\nhidden = 16\nbatch = 1\nsteps = 200\noptimizer = 'adam'\nlr = 0.05\n");
    let out = train(cfg, Par::Seq).outcome;
    assert_eq!(out.status, Status::Ok);
    assert!(out.final_loss < 0.01, "hello loss {}", out.final_loss);
    assert_eq!(
        out.success,
        Some(true),
        "argmax from 'h' must spell 'hello'"
    );
}

#[test]
fn a_fixed_seed_lstm_solves_adding_at_t50() {
    let cfg = config(
        "task = 'adding'\nseq_len = 50\ncell = 'lstm'\nhidden = 32\nbatch = 50\nsteps = 1500\n\
         optimizer = 'adam'\nlr = 0.01\nclip = 'norm:1'\nlog_every = 500\neval_every = 500\nseed = 1\n",
    );
    let out = train(cfg, Par::rayon(2)).outcome;
    assert!(
        out.metric < 0.01,
        "test MSE {} on 10,000 fresh sequences (baseline 0.167)",
        out.metric
    );
    assert_eq!(out.success, Some(true));
}

#[test]
fn clipping_by_norm_never_applies_an_update_above_the_threshold() {
    for clip in ["norm:0.5", "norm:0.01"] {
        let cfg = config(&format!(
            "task = 'temporal-order'\nseq_len = 30\nhidden = 20\nbatch = 10\nsteps = 60\nlr = 0.1\nclip = '{clip}'\nlog_every = 1\neval_every = 1000\n"
        ));
        let tau = match cfg.clip {
            Clip::Norm(t) => f64::from(t),
            _ => unreachable!(),
        };
        let rec = train(cfg, Par::Seq);
        assert_eq!(rec.logged.len(), 60, "every step is logged");
        for r in &rec.logged {
            assert!(
                r.grad_norm_clipped <= tau,
                "step {}: update norm {} > {tau}",
                r.step,
                r.grad_norm_clipped
            );
            assert_eq!(r.clipped, r.grad_norm > tau, "step {}", r.step);
            assert!(r.grad_norm_clipped <= r.grad_norm);
        }
        assert!(
            rec.logged.iter().any(|r| r.clipped),
            "{clip}: some steps must clip"
        );
    }
}

#[test]
fn truncation_of_at_least_t_is_exactly_full_bptt() {
    let base = "task = 'copy'\nseq_len = 10\ncell = 'lstm'\nhidden = 12\nbatch = 4\nsteps = 20\nlog_every = 1\neval_every = 1000\neval_sequences = 50\n";
    let full = without_timing(train(config(base), Par::Seq));
    // The copy task's sequences are seq_len + 20 = 30 steps long.
    for trunc in [
        "truncation = 30",
        "truncation = 31",
        "truncation = 1000",
        "truncation_k1 = 30\ntruncation_k2 = 30",
    ] {
        let rec = without_timing(train(config(&format!("{base}{trunc}\n")), Par::Seq));
        assert_eq!(rec, full, "{trunc} differs from full BPTT");
    }
    let truncated = without_timing(train(config(&format!("{base}truncation = 5\n")), Par::Seq));
    assert_ne!(truncated.logged, full.logged, "k = 5 < T must truncate");
}

#[test]
fn tbptt_k1_less_than_k2_equal_to_t_gives_the_full_gradient() {
    // Every loss is then backpropagated to the start of the window: the same gradient as full
    // BPTT, summed in another order.
    let base = "task = 'copy'\nseq_len = 10\nhidden = 12\nbatch = 4\nsteps = 1\nlog_every = 1\neval_every = 1000\neval_sequences = 10\nclip = 'none'\n";
    let full = train(config(base), Par::Seq);
    let split = train(
        config(&format!("{base}truncation_k1 = 7\ntruncation_k2 = 30\n")),
        Par::Seq,
    );
    let (a, b) = (&full.logged[0], &split.logged[0]);
    assert!(
        (a.loss - b.loss).abs() < 1e-6 * a.loss,
        "loss {} vs {}",
        a.loss,
        b.loss
    );
    assert!(
        (a.grad_norm - b.grad_norm).abs() < 1e-5 * a.grad_norm,
        "norm {} vs {}",
        a.grad_norm,
        b.grad_norm
    );
    // With the only loss at the last step and k = 5 < T, the truncated gradient drops every
    // contribution from more than 5 steps back. The probe's norm ratio must equal the ratio of
    // the norms that a truncated and a full run log for the same first batch (same seed).
    let order = "task = 'temporal-order'\nseq_len = 30\nhidden = 12\nbatch = 8\nsteps = 1\nlog_every = 1\neval_sequences = 10\nclip = 'none'\n";
    let row = &train(config(&format!("{order}truncation = 5\n")), Par::Seq).logged[0];
    let full_row = &train(config(order), Par::Seq).logged[0];
    let (cos, ratio) = (row.trunc_cosine.unwrap(), row.trunc_norm_ratio.unwrap());
    let want = row.grad_norm / full_row.grad_norm;
    assert!(
        (ratio - want).abs() < 1e-6 * want,
        "norm ratio {ratio}, want {want}"
    );
    assert!(
        cos < 1.0 - 1e-9,
        "truncation must change the direction: cosine {cos}"
    );
    assert_eq!(
        full_row.trunc_cosine,
        Some(1.0),
        "full BPTT has no truncation bias"
    );
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    for cell in ["rnn", "lstm", "gru"] {
        let cfg = config(&format!(
            "task = 'temporal-order'\nseq_len = 20\ncell = '{cell}'\nhidden = 24\ndepth = 2\nbatch = 9\nsteps = 30\ntruncation = 7\nlog_every = 5\neval_every = 10\neval_sequences = 100\noptimizer = 'rmsprop'\nlr = 0.003\n"
        ));
        let seq = without_timing(train(cfg.clone(), Par::Seq));
        let par = without_timing(train(cfg, Par::rayon(2)));
        assert_eq!(seq, par, "{cell}: Rayon(2) differs from Seq");
    }
}

#[test]
fn a_huge_learning_rate_diverges_as_an_outcome() {
    let cfg = config("task = 'adding'\nseq_len = 30\ncell = 'rnn'\nnonlinearity = 'relu'\ninit = 'identity'\nhidden = 20\nlr = 1e6\nclip = 'none'\nsteps = 200\n");
    let out = train(cfg, Par::Seq).outcome;
    assert_eq!(out.status, Status::Diverged);
    assert!(out.diverged_at_step.is_some() && out.final_loss.is_nan());
    assert_eq!(out.success, Some(false));
}

#[test]
fn every_optimizer_and_init_trains_without_error() {
    for opt in ["sgd", "adagrad", "rmsprop", "adam"] {
        for (cell, init) in [
            ("rnn", "default"),
            ("rnn", "normal:0.1"),
            ("rnn", "smart-tanh"),
            ("rnn", "identity"),
            ("lstm", "orthogonal"),
            ("lstm", "default"),
            ("gru", "orthogonal"),
            ("gru", "smart-tanh"),
        ] {
            let cfg = config(&format!(
                "task = 'adding'\nseq_len = 12\ncell = '{cell}'\ninit = '{init}'\noptimizer = '{opt}'\nlr = 0.01\nmomentum = 0.0\nhidden = 8\nsteps = 5\neval_sequences = 10\nlog_every = 1\nlr_schedule = 'step:2:0.5'\n"
            ));
            let rec = train(cfg, Par::Seq);
            assert_eq!(rec.outcome.status, Status::Ok, "{opt} {cell} {init}");
            assert_eq!(rec.logged[4].lr, 0.01 * 0.25, "step decay: lr at step 4");
        }
    }
}

#[test]
fn tasks_are_reproducible_from_their_seed() {
    for task in ["adding", "adding-1997", "copy", "temporal-order"] {
        let cfg = config(&format!("task = '{task}'\nseq_len = 20\n"));
        let t = Task::new(cfg.task, cfg.seq_len, None).unwrap();
        let a = t.fresh_batch(&mut SplitMix64(7), 3);
        assert_eq!(a, t.fresh_batch(&mut SplitMix64(7), 3));
        assert_ne!(a, t.fresh_batch(&mut SplitMix64(8), 3));
        assert_eq!(a.x.len(), t.time_steps() * 3 * t.input_size());
    }
}

#[test]
fn bad_configurations_name_the_key_and_what_is_allowed() {
    let cases: [(&str, &str); 16] = [
        (
            "hidden = 0",
            "invalid value 0 for 'hidden': must be at least 1",
        ),
        (
            "lr = -1.0",
            "invalid value -1 for 'lr': must be a finite number > 0",
        ),
        ("momentum = 1.5", "'momentum': must be in [0, 1)"),
        ("clip = 'norm:-1'", "invalid norm threshold '-1'"),
        ("clip = 'maybe'", "expected none, norm:<τ> or value:<τ>"),
        (
            "init = 'xavier'",
            "expected default, uniform:<a>, normal:<σ>, smart-tanh, identity or orthogonal",
        ),
        ("truncation = 0", "expected \"full\" or an integer k >= 1"),
        (
            "truncation_k1 = 20\ntruncation_k2 = 10",
            "'truncation_k1': must not exceed truncation_k2 = 10",
        ),
        ("task = 'charlm'", "charlm needs a text file"),
        (
            "cell = 'lstm'\ninit = 'identity'",
            "identity (IRNN) applies to rnn cells only",
        ),
        (
            "cell = 'gru'\ninit = 'identity'",
            "for cell = \"gru\" use default, uniform:<a>, normal:<σ>, smart-tanh",
        ),
        ("rmsprop_decay = 1.0", "'rmsprop_decay': must be in (0, 1)"),
        (
            "task = 'charlm'\ntext = 'x.txt'\nstop_at_success = true",
            "'stop_at_success': the charlm task has no success criterion",
        ),
        (
            "lr_schedule = 'epoch:10:0.97'",
            "an epoch is one pass over the training text of charlm",
        ),
        ("hiden = 10", "unknown field `hiden`"),
        ("task = 'sorting'", "unknown variant `sorting`"),
    ];
    for (toml, want) in cases {
        let err = RunConfig::from_toml(toml)
            .and_then(|c| c.validate())
            .expect_err(toml)
            .to_string();
        assert!(err.contains(want), "{toml:?}: got {err:?}, want {want:?}");
    }
}

#[test]
fn set_overrides_keys_like_the_toml_file() {
    let mut cfg = RunConfig::default();
    for (k, v) in [
        ("cell", "lstm"),
        ("hidden", "64"),
        ("clip", "value:5"),
        ("truncation", "full"),
        ("truncation", "20"),
        ("task", "copy"),
    ] {
        cfg.set(k, v).unwrap();
    }
    assert_eq!(
        (cfg.hidden, cfg.clip, cfg.truncation, cfg.task),
        (64, Clip::Value(5.0), Truncation::K(20), TaskKind::Copy)
    );
    assert!(cfg
        .set("hiden", "3")
        .unwrap_err()
        .to_string()
        .contains("unknown key 'hiden' (did you mean `hidden`?); allowed keys: name, task"));
    assert!(cfg.set("hidden", "many").is_err());
    // The TOML form reads back unchanged.
    assert_eq!(RunConfig::from_toml(&cfg.to_toml()).unwrap(), cfg);
}

#[test]
fn the_training_gradient_of_head_and_stack_matches_finite_differences() {
    // Softmax cross-entropy through the head and a 2-layer LSTM over a copy window (f32, so the
    // differences use a large step and a loose, but factor-of-2-catching, tolerance).
    for (task, loss) in [("copy", "CE"), ("adding", "MSE")] {
        let cfg = config(&format!("task = '{task}'\nseq_len = 6\ncell = 'lstm'\nhidden = 7\ndepth = 2\nbatch = 3\nclip = 'none'\n"));
        let mut tr = Trainer::new(cfg, Par::Seq).unwrap();
        let batch = tr.task.fresh_batch(&mut SplitMix64(5), 3);
        let (_, g) = tr.loss_and_gradient(&batch);
        let g = g.to_vec();
        let n = tr.model.params.len();
        let (head_w, head_b) = tr.model.head_ranges();
        let r0 = tr.model.stack.layer_ranges(0);
        let r1 = tr.model.stack.layer_ranges(1);
        for e in [
            r0.w_ih.start + 3,
            r0.w_hh.start + 11,
            r0.b_ih.start + 9,
            r1.w_hh.start + 40,
            r1.b_hh.start + 2,
            head_w.start + 5,
            head_b.start,
            n - 1,
        ] {
            let eps = 1e-2f32;
            let orig = tr.model.params[e];
            tr.model.params[e] = orig + eps;
            let plus = tr.loss_and_gradient(&batch).0;
            tr.model.params[e] = orig - eps;
            let minus = tr.loss_and_gradient(&batch).0;
            tr.model.params[e] = orig;
            let fd = (plus - minus) / (2.0 * f64::from(eps));
            let got = f64::from(g[e]);
            assert!(
                (got - fd).abs() <= 0.02 * fd.abs().max(1e-3),
                "{loss}: parameter {e}: gradient {got}, finite differences {fd}"
            );
        }
    }
}

/// A text of `n` characters from a small alphabet.
fn text_of(n: usize) -> String {
    let mut rng = SplitMix64(3);
    (0..n)
        .map(|_| b"abcde fgh\n"[rng.below(10)] as char)
        .collect()
}

/// Regression (issue 9): at T = 50 an 8,160-character text left no validation window for the
/// 16 validation streams, and the validation loss was silently reported as 0.
#[test]
fn charlm_text_too_short_for_its_validation_streams_is_an_error() {
    let dir = std::env::temp_dir().join(format!("gradlab-charlm-short-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let need = min_chars(50);
    assert!(
        need > 8_160,
        "the text of the report must be too short (need {need})"
    );
    let path = dir.join("short.txt");
    std::fs::write(&path, text_of(8_160)).unwrap();
    let cfg = |path: &std::path::Path| {
        let mut c = config("task = 'charlm'\nseq_len = 50\nhidden = 8\nbatch = 4\nsteps = 2\n");
        c.text = Some(path.to_path_buf());
        c
    };
    match Trainer::new(cfg(&path), Par::Seq) {
        Err(TrainError::Text(TextError::TooShort { chars, need: n, .. })) => {
            assert_eq!((chars, n), (8_160, need));
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a text too short for its validation windows must be refused"),
    }
    let message = Trainer::new(cfg(&path), Par::Seq)
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&format!("need at least {need}")),
        "{message}"
    );
    // At the minimum length every validation stream holds one window: a real, non-zero loss.
    let path = dir.join("enough.txt");
    std::fs::write(&path, text_of(need)).unwrap();
    let mut tr = Trainer::new(cfg(&path), Par::Seq).unwrap();
    let acc = tr.evaluate(1);
    assert_eq!(acc.loss_terms, VALIDATION_STREAMS * 50);
    assert!(acc.loss().is_finite() && acc.loss() > 0.0, "{}", acc.loss());
    std::fs::remove_dir_all(&dir).ok();
}

/// Regression (issue 9): `MetricAcc::loss()` of nothing was 0, a perfect score.
#[test]
fn a_metric_with_no_terms_is_never_reported_as_zero() {
    let empty = MetricAcc::default();
    assert!(empty.loss().is_nan());
    for task in ["adding", "copy", "temporal-order"] {
        let t = Task::new(config(&format!("task = '{task}'")).task, 20, None).unwrap();
        assert!(t.metric(&empty).is_nan(), "{task}");
        assert_eq!(t.success(t.metric(&empty)), Some(false), "{task}");
    }
}

/// `stop_at_success` ends the run at the first evaluation that meets the criterion (confirmed on
/// the final evaluation), and without it the same run trains to the end along the same path.
#[test]
fn stop_at_success_ends_at_the_first_evaluation_that_solves_the_task() {
    let base = "task = 'adding'\nseq_len = 50\ncell = 'lstm'\nhidden = 32\nbatch = 50\nsteps = 1500\n\
                optimizer = 'adam'\nlr = 0.01\nclip = 'norm:1'\nlog_every = 100\neval_every = 100\nseed = 1\n";
    let full = train(config(base), Par::rayon(2));
    let solved_at = full
        .logged
        .iter()
        .find(|r| r.eval_metric.is_some_and(|m| m < 0.01))
        .map(|r| r.step)
        .expect("this seed solves adding at T = 50 within 1,500 updates");
    let early = train(
        config(&format!("{base}stop_at_success = true\n")),
        Par::rayon(2),
    );
    let o = &early.outcome;
    assert_eq!(o.success, Some(true));
    assert!(o.metric < 0.01, "final MSE {}", o.metric);
    // It stops at the first evaluation that is confirmed: never before the first one that
    // meets the criterion, and (on this seed) long before the end.
    assert!(
        o.steps > solved_at && o.steps < 1500,
        "stopped after {} updates",
        o.steps
    );
    assert_eq!(early.logged.last().map(|r| r.step + 1), Some(o.steps));
    // Up to the stop, the two runs are the same run.
    let n = early.logged.len() - 1;
    assert_eq!(early.logged[..n], full.logged[..n]);
}

/// `uniform:a` draws every parameter from U(-a, a), the head's included; `smart-tanh` gives
/// N(0, 0.01) input and head weights and zero biases, as Pascanu et al.'s code does.
#[test]
fn uniform_and_smart_tanh_initialise_every_parameter_as_documented() {
    let t = Trainer::new(
        config("cell = 'lstm'\nhidden = 40\ninit = 'uniform:0.08'\nforget_bias = 0.0\n"),
        Par::Seq,
    )
    .unwrap();
    let p = &t.model.params;
    let max = p.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max <= 0.08 && max > 0.079, "max |p| = {max}");
    let mean_sq = p.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / p.len() as f64;
    assert!(
        (mean_sq / (0.08f64.powi(2) / 3.0) - 1.0).abs() < 0.05,
        "E p² = {mean_sq}"
    );

    let t = Trainer::new(
        config("init = 'smart-tanh'\nhidden = 50\ntask = 'temporal-order'\n"),
        Par::Seq,
    )
    .unwrap();
    let m = &t.model;
    let (hw, hb) = m.head_ranges();
    let r = m.stack.layer_ranges(0);
    for (what, range) in [("head", hw), ("W_ih", r.w_ih.clone())] {
        let v = &m.params[range];
        let sd = (v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!((sd / 0.01 - 1.0).abs() < 0.2, "{what}: σ = {sd}");
    }
    assert!(m.params[hb]
        .iter()
        .chain(&m.params[r.b_ih.start..r.b_hh.end])
        .all(|v| *v == 0.0));
    let nonzero_per_row = m.params[r.w_hh.clone()]
        .chunks(50)
        .map(|row| row.iter().filter(|v| **v != 0.0).count())
        .max();
    assert_eq!(nonzero_per_row, Some(15));
}

/// char-rnn's decay: ×gamma after every epoch from epoch `after` on; charlm only.
#[test]
fn the_epoch_schedule_decays_as_char_rnn_does() {
    let text = text_of(200_000);
    let dir = std::env::temp_dir().join(format!("gradlab-epoch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.txt");
    std::fs::write(&path, &text).unwrap();
    let cfg = config(&format!(
        "task = 'charlm'\ntext = '{}'\nseq_len = 10\nbatch = 100\nhidden = 8\nsteps = 1000\n\
         optimizer = 'rmsprop'\nlr = 0.5\nlr_schedule = 'epoch:2:0.5'\nlog_every = 1\n\
         eval_every = 1000\nlyapunov_steps = 0\n",
        path.display()
    ));
    let t = Trainer::new(cfg.clone(), Par::Seq).unwrap();
    let per_epoch = t.task.updates_per_epoch(100);
    let train_chars = t.task.corpus.as_ref().unwrap().train.len();
    assert_eq!(per_epoch, train_chars / 1000);
    let cfg = RunConfig {
        steps: 4 * per_epoch,
        ..cfg
    };
    let r = Trainer::new(cfg, Par::Seq).unwrap().run(|_, _| {});
    let lr: Vec<f64> = r.logged.iter().map(|row| row.lr).collect();
    // Updates 1..=2E run at lr; char-rnn decays after update 2E (epoch 2 >= after), then after 3E.
    let e = per_epoch;
    assert_eq!((lr[0], lr[2 * e - 1]), (0.5, 0.5));
    assert_eq!((lr[2 * e], lr[3 * e - 1]), (0.25, 0.25));
    assert_eq!(lr[3 * e], 0.125);
    std::fs::remove_dir_all(&dir).ok();

    for bad in ["epoch:0:0.5", "epoch:3:0", "epoch:3", "epochs:3:0.5"] {
        let err = RunConfig::from_toml(&format!("lr_schedule = '{bad}'\n")).unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }
}

/// Hochreiter & Schmidhuber's adding problem: its sequences as their paper defines them, and
/// its metric the fraction of sequences whose absolute error is at least 0.04.
#[test]
fn adding_1997_follows_the_1997_definition_and_scores_each_sequence() {
    use gradlab_experiments::task::Targets;
    let t = 60;
    let task = Task::new(TaskKind::Adding1997, t, None).unwrap();
    let b = 500;
    let batch = task.fresh_batch(&mut SplitMix64(5), b);
    let Targets::Last(y) = &batch.targets else {
        panic!("adding-1997 has one target per sequence")
    };
    let mut first_marked = 0;
    for (row, &target) in y.iter().enumerate() {
        let at = |step: usize| (step * b + row) * 2;
        let marks: Vec<usize> = (0..t).filter(|&s| batch.x[at(s) + 1] == 1.0).collect();
        assert_eq!(marks.len(), 2, "row {row}: two marks");
        assert!(
            marks[0] < t / 2 && marks[1] < t / 2,
            "both marks in the first half"
        );
        assert!(
            marks.iter().any(|&m| m < 10),
            "one mark in the first ten pairs"
        );
        for s in [0, t - 1] {
            if !marks.contains(&s) {
                assert_eq!(
                    batch.x[at(s) + 1],
                    -1.0,
                    "the first and last pair are marked -1"
                );
            }
        }
        let others = (1..t - 1).filter(|s| !marks.contains(s));
        assert!(others.clone().all(|s| batch.x[at(s) + 1] == 0.0));
        assert!((0..t).all(|s| (-1.0..=1.0).contains(&batch.x[at(s)])));
        first_marked += usize::from(marks[0] == 0);
        if marks[0] == 0 {
            assert_eq!(batch.x[at(0)], 0.0, "X1 is 0 when the first pair is marked");
        }
        let want = 0.5 + (batch.x[at(marks[0])] + batch.x[at(marks[1])]) / 4.0;
        assert_eq!(target, want);
    }
    assert!(
        first_marked > 0,
        "the first pair is marked in about 1 of 10 sequences"
    );

    // The metric counts sequences off by 0.04 or more; success is at most 1 in 2,560.
    let acc = MetricAcc {
        loss_sum: 1.0,
        loss_terms: 2560,
        correct: 2559,
        scored: 2560,
    };
    let m = task.metric(&acc);
    assert_eq!(m, 1.0 / 2560.0);
    assert_eq!(task.success(m), Some(true));
    let two_wrong = MetricAcc {
        correct: 2558,
        ..acc
    };
    assert_eq!(task.success(task.metric(&two_wrong)), Some(false));
    // And a trained run scores it per sequence: a model that outputs ~0.5 gets most wrong.
    let cfg = config("task = 'adding-1997'\nseq_len = 30\ncell = 'lstm'\nhidden = 4\nsteps = 3\neval_sequences = 200\nlyapunov_steps = 0\n");
    let out = train(cfg, Par::Seq).outcome;
    assert!(
        out.metric > 0.5 && out.metric <= 1.0,
        "error rate {}",
        out.metric
    );
}
