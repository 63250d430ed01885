//! The encoder-decoder (`model = "seq2seq"`) and its tasks: the generators' shapes, seeds and
//! answers; the exact-match metric; the configuration errors; the full model's gradient
//! (encoder, bottleneck, decoder, head) against an f64 reference composed from
//! `gradlab_kernels::reference`, itself checked against central finite differences; the flow
//! rows; checkpoints; and an LSTM that learns to reverse 10 symbols.

mod common;

use std::time::Instant;

use common::{assert_matches_finite_differences, assert_matches_reference};

use gradlab_experiments::config::{ConfigError, RunConfig, TaskKind};
use gradlab_experiments::model::checkpoint;
use gradlab_experiments::model::sample::Decoding;
use gradlab_experiments::model::seq2seq::sample_target;
use gradlab_experiments::report::plot::{FigureOptions, PlotFormat};
use gradlab_experiments::report::{self, Format, Options};
use gradlab_experiments::store::Provenance;
use gradlab_experiments::sweep::{execute, PlannedRun, RunnerOptions, Spec};
use gradlab_experiments::task::seq2seq::{exact_matches, example, parse_source, LETTERS};
use gradlab_experiments::task::{Batch, Targets, Task, NO_LABEL};
use gradlab_experiments::train::optim::Optimizer;
use gradlab_experiments::train::record::FlowSource;
use gradlab_experiments::train::Trainer;
use gradlab_kernels::norm::clip_global_norm;
use gradlab_kernels::reference;
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::rnn::OutputGrads;
use gradlab_kernels::{Cell, Par, StackShape};

fn config(toml: &str) -> RunConfig {
    RunConfig::from_toml(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

fn task(kind: TaskKind, l: usize, reverse_source: bool) -> Task {
    let mut t = Task::new(kind, l, None).unwrap();
    t.reverse_source = reverse_source;
    t
}

const KINDS: [TaskKind; 3] = [TaskKind::Reverse, TaskKind::Addition, TaskKind::CopySeq];

/// The symbol of each step of row `row` of a one-hot `[T][B][I]` buffer (`None`: a zero
/// vector).
fn one_hot_column(x: &[f32], t: usize, b: usize, row: usize) -> Vec<Option<usize>> {
    let i = x.len() / (t * b);
    (0..t)
        .map(|step| {
            let v = &x[(step * b + row) * i..][..i];
            let ones: Vec<usize> = (0..i).filter(|&k| v[k] == 1.0).collect();
            assert!(
                v.iter().all(|&e| e == 0.0 || e == 1.0) && ones.len() <= 1,
                "step {step} row {row} is not one-hot or zero: {v:?}"
            );
            ones.first().copied()
        })
        .collect()
}

/// The source text (without padding) and the target text (without the end symbol) of row
/// `row`, read back from the batch's encoding.
fn texts(t: &Task, batch: &Batch, row: usize) -> (String, String) {
    let (src_symbols, tgt_symbols) = t.seq2seq_symbols().unwrap();
    let (src_symbols, tgt_symbols): (Vec<char>, Vec<char>) =
        (src_symbols.chars().collect(), tgt_symbols.chars().collect());
    let src = batch.source.as_ref().unwrap();
    let b = batch.batch;
    let source: String = one_hot_column(&src.x, src.time_steps, b, row)
        .into_iter()
        .flatten()
        .map(|k| src_symbols[k])
        .collect();
    let Targets::Classes(labels) = &batch.targets else {
        panic!("seq2seq targets are classes")
    };
    let end = tgt_symbols.len() as u32;
    let target: String = (0..batch.time_steps)
        .map(|s| labels[s * b + row])
        .take_while(|&l| l != end)
        .map(|l| tgt_symbols[l as usize])
        .collect();
    (source, target)
}

#[test]
fn generators_have_the_documented_shapes_and_teacher_forcing() {
    // Catches a decoder input that is not the previous target symbol (or the start symbol at
    // step 0), labels past the end symbol, padding at the end instead of the front.
    for kind in KINDS {
        for l in [1, 3, 7] {
            let t = task(kind, l, false);
            let b = 5;
            let batch = t.fresh_batch(&mut SplitMix64(3), b);
            let src = batch.source.as_ref().expect("a source");
            let (t_src, i_src) = t.source_shape();
            let (t_dec, i_dec, o) = (t.time_steps(), t.input_size(), t.output_size());
            let (want_src, want_dec, symbols) = match kind {
                TaskKind::Addition => (2 * l + 2, l + 2, 10),
                _ => (l, l + 1, 8),
            };
            assert_eq!((t_src, t_dec), (want_src, want_dec), "{kind} L={l}");
            assert_eq!((i_dec, o), (symbols + 1, symbols + 1), "{kind}");
            assert_eq!(i_src, if kind == TaskKind::Addition { 12 } else { 8 });
            assert_eq!(
                (src.time_steps, batch.time_steps, batch.batch),
                (t_src, t_dec, b)
            );
            assert_eq!(src.x.len(), t_src * b * i_src);
            assert_eq!(batch.x.len(), t_dec * b * i_dec);
            let Targets::Classes(labels) = &batch.targets else {
                panic!("classes")
            };
            let end = symbols as u32;
            for row in 0..b {
                let inputs = one_hot_column(&batch.x, t_dec, b, row);
                let column: Vec<u32> = (0..t_dec).map(|s| labels[s * b + row]).collect();
                let len = column
                    .iter()
                    .position(|&l| l == end)
                    .expect("an end symbol")
                    + 1;
                assert!(column[len..].iter().all(|&l| l == NO_LABEL), "{column:?}");
                assert_eq!(inputs[0], Some(symbols), "the start symbol first");
                for s in 1..len {
                    assert_eq!(inputs[s], Some(column[s - 1] as usize), "teacher forcing");
                }
                assert!(inputs[len..].iter().all(Option::is_none));
                // Every source ends at the encoder's last step; padding is in front.
                let steps = one_hot_column(&src.x, t_src, b, row);
                let first = steps.iter().position(Option::is_some).unwrap();
                assert!(steps[first..].iter().all(Option::is_some), "{steps:?}");
            }
        }
    }
}

#[test]
fn generators_are_deterministic_in_their_seed() {
    for kind in KINDS {
        let t = task(kind, 6, false);
        let a = t.fresh_batch(&mut SplitMix64(11), 4);
        assert_eq!(a, t.fresh_batch(&mut SplitMix64(11), 4), "{kind}");
        assert_ne!(a, t.fresh_batch(&mut SplitMix64(12), 4), "{kind}");
    }
    // Pinned: the same seed gives these sequences on every machine and every later build.
    let mut rng = SplitMix64(1);
    assert_eq!(
        example(TaskKind::Addition, 4, &mut rng),
        ("794+78=".to_string(), "872".to_string())
    );
    assert_eq!(
        example(TaskKind::Reverse, 6, &mut SplitMix64(1)),
        ("efhddg".to_string(), "gddhfe".to_string())
    );
}

#[test]
fn addition_targets_are_the_sums_of_their_sources() {
    // Catches a dropped carry, a reversed sum, leading zeros, or numbers longer than L digits.
    for l in [1, 2, 5, 12] {
        let t = task(TaskKind::Addition, l, false);
        let batch = t.fresh_batch(&mut SplitMix64(l as u64), 300);
        let mut lengths = std::collections::BTreeSet::new();
        for row in 0..300 {
            let (source, target) = texts(&t, &batch, row);
            let body = source.strip_suffix('=').expect("ends with =");
            let (a, b) = body.split_once('+').expect("A+B");
            for n in [a, b] {
                assert!((1..=l).contains(&n.len()), "{source}");
                assert!(
                    n.len() == 1 || !n.starts_with('0'),
                    "leading zero: {source}"
                );
                lengths.insert(n.len());
            }
            let sum = a.parse::<u128>().unwrap() + b.parse::<u128>().unwrap();
            assert_eq!(target, sum.to_string(), "{source}");
        }
        assert_eq!(
            lengths.len(),
            l,
            "every number of digits from 1 to {l} occurs"
        );
    }
    // The worked example of the README, through the encoder's padding.
    let batch = gradlab_experiments::task::seq2seq::encode(
        TaskKind::Addition,
        4,
        false,
        &[("123+4567=".into(), "4690".into())],
    );
    let t = task(TaskKind::Addition, 4, false);
    assert_eq!(texts(&t, &batch, 0), ("123+4567=".into(), "4690".into()));
    let steps = one_hot_column(&batch.source.as_ref().unwrap().x, 10, 1, 0);
    assert_eq!(steps[0], None, "one step of padding in front of 9 symbols");
}

#[test]
fn reverse_and_copy_seq_targets_and_the_reversed_source() {
    // Catches reverse_source reversing the target too, or reversing the padding.
    for (kind, reversed) in [(TaskKind::Reverse, true), (TaskKind::CopySeq, false)] {
        let plain = task(kind, 7, false).fresh_batch(&mut SplitMix64(5), 4);
        let flipped = task(kind, 7, true).fresh_batch(&mut SplitMix64(5), 4);
        assert_eq!(
            plain.targets, flipped.targets,
            "{kind}: the target is unchanged"
        );
        for row in 0..4 {
            let (source, target) = texts(&task(kind, 7, false), &plain, row);
            let want: String = if reversed {
                source.chars().rev().collect()
            } else {
                source.clone()
            };
            assert_eq!(target, want, "{kind}");
            assert!(source.chars().all(|c| LETTERS.contains(c)));
            let (read, _) = texts(&task(kind, 7, true), &flipped, row);
            assert_eq!(read, source.chars().rev().collect::<String>(), "{kind}");
        }
    }
    let plain = task(TaskKind::Addition, 3, false).fresh_batch(&mut SplitMix64(2), 6);
    let flipped = task(TaskKind::Addition, 3, true).fresh_batch(&mut SplitMix64(2), 6);
    let t = task(TaskKind::Addition, 3, false);
    for row in 0..6 {
        let ((a, _), (b, _)) = (texts(&t, &plain, row), texts(&t, &flipped, row));
        assert_eq!(b, a.chars().rev().collect::<String>());
        let steps = one_hot_column(&flipped.source.as_ref().unwrap().x, 8, 6, row);
        assert!(steps.last().unwrap().is_some(), "padding stays in front");
    }
}

#[test]
fn exact_match_counts_whole_sequences_up_to_the_end_symbol() {
    // Catches a metric that counts symbols, ignores the end symbol, or reads past it.
    const E: u32 = 3;
    const N: u32 = NO_LABEL;
    // [T][B] with B = 4; columns: targets "0 1 E", "2 E", "1 E", "0 E".
    let labels = [0, 2, 1, 0, 1, E, E, E, E, N, N, N];
    let ids = [
        0, 2, 1, 0, //
        1, E, 2, 1, // row 2 wrong; row 3 misses its end symbol
        E, 0, E, E, // row 1: what follows its end symbol does not count
        2, 2, 2, 2,
    ];
    assert_eq!(exact_matches(&ids, &labels, 4), 2);
    let mut acc = gradlab_experiments::task::MetricAcc::default();
    (acc.correct, acc.scored) = (2, 4);
    assert_eq!(task(TaskKind::Reverse, 2, false).metric(&acc), 0.5);
    assert_eq!(TaskKind::CopySeq.metric_name(), "exact match");
    assert_eq!(TaskKind::Addition.success(0.99), Some(true));
    assert_eq!(TaskKind::Addition.success(0.9899), Some(false));
}

fn bad_key(toml: &str) -> (String, String) {
    match config(toml).validate() {
        Err(e @ ConfigError::BadValue { .. }) => {
            let ConfigError::BadValue { ref key, .. } = e else {
                unreachable!()
            };
            (key.clone(), e.to_string())
        }
        other => panic!("{toml}: expected a bad value, got {other:?}"),
    }
}

#[test]
fn bad_model_and_task_combinations_name_the_key_and_the_fix() {
    let (key, e) = bad_key("model = 'seq2seq'\ntask = 'adding'\n");
    assert_eq!(key, "model");
    assert!(
        e.contains("reverse, addition or copy-seq") && e.contains("stack"),
        "{e}"
    );
    let (key, e) = bad_key("task = 'reverse'\nseq_len = 5\n");
    assert_eq!(key, "task");
    assert!(e.contains("model = \"seq2seq\""), "{e}");
    let (key, e) = bad_key("task = 'copy'\nreverse_source = true\n");
    assert_eq!(key, "reverse_source");
    assert!(e.contains("seq2seq"), "{e}");
    let (key, e) =
        bad_key("model = 'seq2seq'\ntask = 'addition'\ntruncation_k1 = 2\ntruncation_k2 = 4\n");
    assert_eq!(key, "truncation_k1");
    assert!(e.contains("truncation = k"), "{e}");
    config("model = 'seq2seq'\ntask = 'copy-seq'\nreverse_source = true\ntruncation = 3\n")
        .validate()
        .unwrap();
}

#[test]
fn sources_from_the_command_line_are_checked() {
    assert_eq!(
        parse_source(TaskKind::Addition, 4, "123+4567").unwrap(),
        "123+4567="
    );
    assert_eq!(parse_source(TaskKind::Addition, 4, "1+2=").unwrap(), "1+2=");
    assert_eq!(parse_source(TaskKind::Reverse, 3, "abh").unwrap(), "abh");
    for (kind, l, bad) in [
        (TaskKind::Addition, 3, "1234+5="),
        (TaskKind::Addition, 3, "12-5="),
        (TaskKind::Addition, 3, "+5="),
        (TaskKind::Reverse, 3, "abcd"),
        (TaskKind::CopySeq, 3, "abz"),
    ] {
        let e = parse_source(kind, l, bad).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{kind} with seq_len {l}")) && e.contains("e.g."),
            "{e}"
        );
    }
}

/// An encoder-decoder in f64: the decoder's stack, the head, then the encoder's stack.
struct Net<'a> {
    encoder: StackShape,
    decoder: StackShape,
    output: usize,
    params: &'a [f64],
}

impl Net<'_> {
    fn parts(&self) -> (&[f64], &[f64], &[f64], &[f64]) {
        let (dec, rest) = self.params.split_at(self.decoder.num_params());
        let (w, rest) = rest.split_at(self.output * self.decoder.hidden);
        let (b, enc) = rest.split_at(self.output);
        (dec, w, b, enc)
    }
}

/// The mean cross-entropy of `batch` and, with the encoder backpropagated `k` steps, its
/// gradient in the model's layout, composed from the f64 reference: encoder forward from zero,
/// decoder forward from its final state, the head and the loss by hand, decoder backward, and
/// encoder backward from the decoder's initial-state gradient.
fn reference(net: &Net<'_>, batch: &Batch, k: usize) -> (f64, Vec<f64>) {
    let (dec_p, w, bias, enc_p) = net.parts();
    let src = batch.source.as_ref().unwrap();
    let (ts, td, b) = (src.time_steps, batch.time_steps, batch.batch);
    let (h, o) = (net.decoder.hidden, net.output);
    let f64s = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let (xs, xd) = (f64s(&src.x), f64s(&batch.x));
    let enc = reference::forward(net.encoder, enc_p, &xs, None, None, ts, b);
    let lstm = net.decoder.cell == Cell::Lstm;
    let h0: Vec<f64> = (0..net.encoder.layers)
        .flat_map(|l| enc.h_n(l).to_vec())
        .collect();
    let c0: Vec<f64> = (0..net.encoder.layers)
        .flat_map(|l| enc.c_n(l).to_vec())
        .collect();
    let dec = reference::forward(
        net.decoder,
        dec_p,
        &xd,
        Some(&h0),
        lstm.then_some(&c0[..]),
        td,
        b,
    );
    let Targets::Classes(labels) = &batch.targets else {
        panic!("classes")
    };
    let terms = labels.iter().filter(|&&l| l != NO_LABEL).count() as f64;
    let (mut loss, mut dy) = (0.0, vec![0.0; td * b * h]);
    let (mut dw, mut db) = (vec![0.0; o * h], vec![0.0; o]);
    for (at, &label) in labels.iter().enumerate() {
        if label == NO_LABEL {
            continue;
        }
        let y = &dec.output()[at * h..][..h];
        let z: Vec<f64> = (0..o)
            .map(|c| bias[c] + (0..h).map(|j| w[c * h + j] * y[j]).sum::<f64>())
            .collect();
        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
        loss -= z[label as usize] - max - sum.ln();
        for c in 0..o {
            let g = ((z[c] - max).exp() / sum - f64::from(u8::from(c == label as usize))) / terms;
            db[c] += g;
            for j in 0..h {
                dw[c * h + j] += g * y[j];
                dy[at * h + j] += g * w[c * h + j];
            }
        }
    }
    let out = OutputGrads {
        dy: &dy,
        dh_n: None,
        dc_n: None,
    };
    let gd = reference::backward(net.decoder, dec_p, &xd, &dec, out, td);
    let zeros = vec![0.0; ts * b * h];
    let out = OutputGrads {
        dy: &zeros,
        dh_n: Some(&gd.dh0),
        dc_n: lstm.then_some(&gd.dc0[..]),
    };
    let ge = reference::backward(net.encoder, enc_p, &xs, &enc, out, k);
    let grad = [gd.params, dw, db, ge.params].concat();
    (loss / terms, grad)
}

fn seq2seq_trainer(cell: &str, depth: usize, task: &str, l: usize, extra: &str) -> Trainer {
    let cfg = config(&format!(
        "model = 'seq2seq'\ntask = '{task}'\nseq_len = {l}\ncell = '{cell}'\nhidden = 5\n\
         depth = {depth}\nbatch = 3\nclip = 'none'\nseed = {depth}\n{extra}\n"
    ));
    Trainer::new(cfg, Par::Seq).expect("valid config")
}

const CASES: [(&str, usize, &str, usize); 6] = [
    ("rnn", 1, "reverse", 4),
    ("rnn", 2, "addition", 2),
    ("lstm", 1, "addition", 2),
    ("lstm", 2, "reverse", 4),
    ("lstm", 1, "copy-seq", 3),
    ("rnn", 1, "copy-seq", 3),
];

#[test]
fn the_f64_reference_gradient_matches_finite_differences() {
    // The oracle of the next test: catches a composition that drops the bottleneck's gradient
    // (the encoder's would be zero), passes h but not c across it, or mis-scales the mean.
    for (cell, depth, task, l) in CASES {
        let tr = seq2seq_trainer(cell, depth, task, l, "");
        let batch = tr.task.fresh_batch(&mut SplitMix64(9), 3);
        let encoder = tr.model.encoder.unwrap();
        let (decoder, output) = (tr.model.stack, tr.model.output);
        let p: Vec<f64> = tr.model.params.iter().map(|&v| f64::from(v)).collect();
        let net = |p: &[f64]| -> (f64, Vec<f64>) {
            let n = Net {
                encoder,
                decoder,
                output,
                params: p,
            };
            reference(&n, &batch, usize::MAX)
        };
        let (_, g) = net(&p);
        let encoder_start = p.len() - encoder.num_params();
        assert!(
            g[encoder_start..].iter().any(|&v| v.abs() > 1e-6),
            "the encoder gets a gradient across the bottleneck"
        );
        let what = format!("{cell} depth {depth} {task}");
        assert_matches_finite_differences(&what, &p, &g, |p| net(p).0);
    }
}

#[test]
fn the_training_gradient_matches_the_f64_reference_full_and_truncated() {
    // Catches a wrong encoder-decoder gradient in f32 training: a missing dc across the
    // bottleneck, parameters in the wrong place, or an encoder truncation at the wrong end.
    for (cell, depth, task, l) in CASES {
        for k in [None, Some(1), Some(3)] {
            let extra = k.map_or(String::new(), |k| format!("truncation = {k}"));
            let mut tr = seq2seq_trainer(cell, depth, task, l, &extra);
            let batch = tr.task.fresh_batch(&mut SplitMix64(4), 3);
            let p: Vec<f64> = tr.model.params.iter().map(|&v| f64::from(v)).collect();
            let net = Net {
                encoder: tr.model.encoder.unwrap(),
                decoder: tr.model.stack,
                output: tr.model.output,
                params: &p,
            };
            let (want_loss, want) = reference(&net, &batch, k.unwrap_or(usize::MAX));
            let what = format!("{cell} depth {depth} {task} L={l} k={k:?}");
            assert_matches_reference(&what, tr.loss_and_gradient(&batch), (want_loss, &want));
            if k.is_some_and(|k| k < batch.source.as_ref().unwrap().time_steps) {
                let (_, full) = reference(&net, &batch, usize::MAX);
                let diff = full
                    .iter()
                    .zip(&want)
                    .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    diff > 1e-6,
                    "{what}: truncation must change the encoder's gradient"
                );
            }
        }
    }
}

#[test]
fn logged_updates_write_encoder_and_decoder_flow_and_both_stacks_layers() {
    // Catches seq2seq flow written as `train`/`probe`, lags counted from the wrong end, an
    // encoder profile cut off by the truncation, or per-layer rows of one stack only.
    for truncation in ["full", "2"] {
        let cfg = config(&format!(
            "model = 'seq2seq'\ntask = 'copy-seq'\nseq_len = 5\ncell = 'lstm'\nhidden = 6\n\
             depth = 2\nbatch = 4\nsteps = 3\nlog_every = 2\neval_every = 100\n\
             eval_sequences = 20\ntruncation = \"{truncation}\"\n"
        ));
        let rec = Trainer::new(cfg, Par::Seq).unwrap().run(|_, _| {});
        let logged: Vec<usize> = rec.logged.iter().map(|r| r.step).collect();
        assert_eq!(logged, [0, 2]);
        for r in &rec.logged {
            assert_eq!(r.grad_norm_layers.len(), 4, "encoder and decoder layers");
            assert_eq!(r.sigma_max.len(), 4);
            assert_eq!(r.forget_mean.len(), 4);
            let bias = r.trunc_cosine.unwrap();
            if truncation == "full" {
                assert_eq!(bias, 1.0);
            } else {
                assert!(
                    bias < 1.0,
                    "truncation k = 2 < 5 changes the gradient: {bias}"
                );
            }
        }
        for (source, len) in [(FlowSource::Encoder, 5), (FlowSource::Decoder, 6)] {
            let rows: Vec<_> = rec.flow.iter().filter(|f| f.source == source).collect();
            assert_eq!(rows.len(), 2 * 2 * len, "{source:?}: steps x layers x lags");
            let mut lags: Vec<usize> = rows.iter().map(|f| f.lag).collect();
            lags.sort();
            lags.dedup();
            assert_eq!(lags, (0..len).collect::<Vec<_>>());
            assert!(
                rows.iter().all(|f| f.grad_norm > 0.0),
                "{source:?} at every lag"
            );
        }
        assert_eq!(rec.flow.len(), 2 * 2 * (5 + 6), "no other source");
        assert!(rec.outcome.decay_rate.is_some_and(f64::is_finite));
    }
}

#[test]
fn an_lstm_seq2seq_learns_to_reverse_ten_symbols() {
    // The model as a whole: teacher-forced training, and greedy decoding without it, reach the
    // task's criterion (exact match >= 99% on 10,000 fresh sequences); the checkpoint decodes
    // the same way through `sample_target`.
    let cfg = config(
        "model = 'seq2seq'\ntask = 'reverse'\nseq_len = 10\ncell = 'lstm'\nhidden = 64\n\
         batch = 32\noptimizer = 'adam'\nlr = 0.01\nclip = 'norm:1'\nseed = 0\n",
    );
    let start = Instant::now();
    let mut tr = Trainer::new(cfg.clone(), Par::rayon(2)).unwrap();
    let mut opt = Optimizer::new(&cfg, tr.model.params.len(), 1);
    let mut rng = SplitMix64(cfg.seed);
    let (mut solved, mut metric) = (None, f64::NAN);
    // Seeds 0, 1, 2 solve it after 2,800, 2,500 and 2,100 updates (6 to 9 s on 2 cores).
    for step in 0..6000 {
        let batch = tr.task.train_batch(&mut rng, cfg.batch);
        let mut g = tr.loss_and_gradient(&batch).1.to_vec();
        clip_global_norm(&mut [&mut g], 1.0);
        opt.step(&mut tr.model.params, &g, step);
        if (step + 1) % 100 != 0 {
            continue;
        }
        let quick = tr.evaluate(500);
        if tr.task.metric(&quick) >= 0.99 {
            let acc = tr.evaluate(10_000);
            metric = tr.task.metric(&acc);
            if tr.task.success(metric) == Some(true) {
                solved = Some(step + 1);
                break;
            }
        }
    }
    eprintln!(
        "reverse L=10: solved after {solved:?} updates in {:.1} s (exact match {metric})",
        start.elapsed().as_secs_f64()
    );
    assert!(solved.is_some(), "exact match {metric} after 6000 updates");
    let dir = std::env::temp_dir().join(format!("gradlab-s2s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("reverse.safetensors");
    checkpoint::save(&path, &tr.model, Some(&cfg), None).unwrap();
    let ck = checkpoint::load(&path).unwrap();
    assert_eq!(ck.model, tr.model, "the checkpoint round trip");
    for source in ["abcdefghab", "hhhhhaaaaa", "cafebeadba"] {
        let out = sample_target(&ck, source, None, Decoding::Argmax, 0).unwrap();
        assert_eq!(out.target, source.chars().rev().collect::<String>());
        assert!(out.ended);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn seq2seq_checkpoints_round_trip_with_encoder_and_decoder_names() {
    // Catches the two stacks saved under one name (or none), or loaded into each other's place.
    let tr = seq2seq_trainer("rnn", 2, "addition", 3, "");
    let dir = std::env::temp_dir().join(format!("gradlab-s2s-ck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    checkpoint::save(&path, &tr.model, Some(&tr.cfg), None).unwrap();
    let file = checkpoint::TensorFile::read(&path).unwrap();
    let names = file.names();
    for name in [
        "encoder.weight_ih_l0",
        "encoder.bias_hh_l1",
        "decoder.weight_hh_l0",
        "decoder.weight_ih_l1",
        "head.weight",
        "head.bias",
    ] {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
    }
    assert_eq!(names.len(), 2 * 8 + 2);
    assert_eq!(file.shape("encoder.weight_ih_l0").unwrap(), [5, 12]);
    assert_eq!(file.shape("decoder.weight_ih_l0").unwrap(), [5, 11]);
    let ck = checkpoint::load(&path).unwrap();
    assert_eq!(ck.model, tr.model);
    assert_eq!(ck.config.as_ref(), Some(&tr.cfg));
    // An untrained model decodes something of the task's symbols, at most L + 2 of them.
    let out = sample_target(&ck, "12+345", None, Decoding::Temperature(1.0), 1).unwrap();
    assert_eq!(out.source, "12+345=");
    assert!(out.target.chars().all(|c| c.is_ascii_digit()) && out.target.len() <= 5);
    let e = sample_target(&ck, "1234+5", None, Decoding::Argmax, 0).unwrap_err();
    assert!(e.to_string().contains("1 to 3 digits"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_seq2seq_sweep_reports_exact_match_and_the_encoder_gradient_against_lag() {
    // Catches a report that finds no untruncated profile in seq2seq runs (no gradient_vs_lag
    // figure), plots the decoder's steps as lags, or names the metric wrongly.
    let dir = std::env::temp_dir().join(format!("gradlab-s2s-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spec = Spec::parse(
        "name = 's2s'\nseeds = [0]\n[base]\nmodel = 'seq2seq'\ntask = 'copy-seq'\nseq_len = 6\n\
         hidden = 8\nsteps = 4\nlog_every = 2\neval_every = 100\neval_sequences = 20\n\
         [grid]\nreverse_source = [false, true]\n",
        "spec.toml",
    )
    .unwrap();
    std::fs::write(dir.join("sweep.toml"), spec.to_toml()).unwrap();
    let runs = spec.expand().unwrap();
    let opts = RunnerOptions {
        jobs: 2,
        fail_fast: true,
        ..RunnerOptions::default()
    };
    let refs: Vec<&PlannedRun> = runs.iter().collect();
    let summary = execute(&dir, &refs, &opts, &Provenance::current("s2s"), &|_| {}).unwrap();
    assert_eq!((summary.finished, summary.failed), (2, 0));
    let opts = Options {
        formats: vec![Format::Markdown, Format::Csv],
        figures: FigureOptions {
            formats: vec![PlotFormat::Svg],
            ..FigureOptions::default()
        },
        ..Options::default()
    };
    let r = report::report(&dir, &opts).unwrap();
    assert_eq!(r.by, ["reverse_source"]);
    assert!(r.markdown.contains("exact match"), "{}", r.markdown);
    let csv = std::fs::read_to_string(dir.join("report/gradient_vs_lag.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = header
        .iter()
        .position(|&c| c == "lag")
        .expect("a lag column");
    let lags: std::collections::BTreeSet<usize> = lines
        .map(|l| l.split(',').nth(at).unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        lags,
        (0..6).collect(),
        "the encoder's 6 lags, not the decoder's 7:\n{csv}"
    );
    let svg = std::fs::read_to_string(dir.join("report/gradient_vs_lag.svg")).unwrap();
    assert!(
        svg.contains("encoder steps before the decoder"),
        "the x label"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
