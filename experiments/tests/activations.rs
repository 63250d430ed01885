//! `gradlab activations`' library: the text features, the streamed activations against the
//! training forward pass (bit for bit), and the ranking on a model built by hand so that one
//! unit follows "inside double quotes".

use std::path::PathBuf;

use gradlab_experiments::config::Init;
use gradlab_experiments::model::activations::{gate_names, Stream, BLOCK};
use gradlab_experiments::model::checkpoint::{self, Checkpoint};
use gradlab_experiments::model::init::initialize;
use gradlab_experiments::model::Model;
use gradlab_experiments::report::activations::features::{Correlations, FeatureScan, FEATURES, NF};
use gradlab_experiments::report::activations::{self, Options};
use gradlab_experiments::store::read_parquet;
use gradlab_experiments::task::{Task, TaskKind};
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::rnn::{self, Workspace};
use gradlab_kernels::{Activation, Cell, Par, StackShape};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradlab-act-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn features(text: &str, block: usize) -> Vec<[f64; NF]> {
    let chars: Vec<char> = text.chars().collect();
    let (mut scan, mut rows, mut all) = (FeatureScan::default(), Vec::new(), Vec::new());
    for start in (0..chars.len()).step_by(block) {
        scan.scan(&chars, start..(start + block).min(chars.len()), &mut rows);
        all.extend_from_slice(&rows);
    }
    all
}

fn feature(name: &str) -> usize {
    FEATURES.iter().position(|&n| n == name).unwrap()
}

fn column(rows: &[[f64; NF]], name: &str) -> Vec<f64> {
    rows.iter().map(|r| r[feature(name)]).collect()
}

/// Each feature as `features.rs` defines it, whatever the block size.
#[test]
fn features_follow_their_definitions_across_blocks() {
    let text = "a \"b(c]\n]X\" 9\nz";
    for block in [1, 2, 3, 5, 100] {
        let rows = features(text, block);
        #[rustfmt::skip]
        let want: [(&str, [f64; 15]); 7] = [
            ("inside_quotes",   [0., 0., 1., 1., 1., 1., 1., 1., 1., 1., 0., 0., 0., 0., 0.]),
            ("inside_brackets", [0., 0., 0., 0., 1., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0.]),
            ("bracket_depth",   [0., 0., 0., 0., 1., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0.]),
            ("line_position",   [0., 1., 2., 3., 4., 5., 6., 7., 0., 1., 2., 3., 4., 5., 0.]),
            ("to_newline",      [7., 6., 5., 4., 3., 2., 1., 0., 5., 4., 3., 2., 1., 0., 1.]),
            ("after_space",     [0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0.]),
            ("upper_case",      [0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0.]),
        ];
        for (name, values) in want {
            assert_eq!(column(&rows, name), values, "{name}, block {block}");
        }
        let digit = column(&rows, "digit");
        assert_eq!(digit.iter().sum::<f64>(), 1.0);
        assert_eq!(digit[12], 1.0, "the 9");
    }
    // Nested brackets count their depth; a stray closer never goes below 0.
    let rows = features("(a[b{c}]))x", 4);
    assert_eq!(
        column(&rows, "bracket_depth"),
        [1., 1., 2., 2., 3., 3., 2., 1., 0., 0., 0.]
    );
}

/// r of a probe that is an affine map of a feature is ±1; a constant feature or probe has none.
#[test]
fn correlation_of_an_affine_copy_is_one() {
    let rows = features("ab\ncd e\"f\"g\nhij\n", 4);
    let line = column(&rows, "line_position");
    let mut acc = Correlations::new(2);
    for (x, &l) in rows.iter().zip(&line) {
        acc.add(x, &[(0.5 - 0.1 * l) as f32, 0.25]);
    }
    let f = feature("line_position");
    assert!((acc.r(f, 0).unwrap() + 1.0).abs() < 1e-6);
    assert_eq!(acc.r(f, 1), None, "a constant probe has no r");
    let digit = feature("digit");
    assert!(!acc.varies(digit));
    assert_eq!(acc.r(digit, 0), None);
}

/// A text of `n` characters with quotes, brackets, digits, capitals and lines.
fn text(n: usize, seed: u64) -> String {
    let pieces = ["ab", "c ", "\"", "(", ")", "Dd", "7", "\n", "e f", " "];
    let mut rng = SplitMix64(seed);
    let mut s = String::new();
    while s.chars().count() < n {
        s += pieces[rng.below(pieces.len())];
    }
    s.chars().take(n).collect()
}

fn vocab_of(text: &str) -> Vec<char> {
    let mut v: Vec<char> = text.chars().collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn random_model(cell: Cell, vocab: usize, seed: u64) -> Model {
    let stack = StackShape {
        cell,
        input: vocab,
        hidden: 20,
        layers: 2,
    };
    let mut model = Model::new(stack, vocab);
    initialize(&mut model, Init::Uniform(0.3), 1.0, &mut SplitMix64(seed));
    model
}

const CELLS: [Cell; 4] = [
    Cell::Lstm,
    Cell::Gru,
    Cell::Rnn(Activation::Tanh),
    Cell::Rnn(Activation::Relu),
];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// What `gradlab activations` streams, a block of characters at a time with the state carried,
/// is bit for bit what the trainer's forward pass computes for the same characters: one
/// `rnn::forward` over a charlm training batch of several sequences and a window that is not a
/// multiple of the block, from the zero state (as `train::engine::forward` calls it, on every
/// core). Every h, c and gate value of every layer, step and sequence.
#[test]
fn activations_equal_the_training_forward_pass_bit_for_bit() {
    let dir = tmp("forward");
    let path = dir.join("text.txt");
    std::fs::write(&path, text(70_000, 1)).unwrap();
    let t = 3 * BLOCK + 17;
    let mut task = Task::new(TaskKind::Charlm, t, Some(&path)).unwrap();
    let vocab = task.corpus.as_ref().unwrap().vocab.clone();
    let v = vocab.len();
    let b = 3;
    let batch = task.train_batch(&mut SplitMix64(7), b);
    for cell in CELLS {
        let model = random_model(cell, v, 11);
        let s = model.stack;
        let mut ws = Workspace::new(s, t, b);
        let lbh = s.layers * b * s.hidden;
        let c0 = vec![0.0; lbh];
        let c0 = s.cell.has_cell_state().then_some(&c0[..]);
        rnn::forward(
            model.stack_params(),
            &batch.x,
            Some(&vec![0.0; lbh]),
            c0,
            &mut ws,
            Par::rayon(2),
        );
        let h = s.hidden;
        let width = s.cell.stored_gates(h);
        let g = gate_names(s.cell).len() * h;
        for row in 0..b {
            let ids: Vec<usize> = (0..t)
                .map(|step| {
                    let x = &batch.x[(step * b + row) * v..][..v];
                    x.iter().position(|&one| one == 1.0).unwrap()
                })
                .collect();
            let mut stream = Stream::new(&model);
            for (k, block) in ids.chunks(BLOCK).enumerate() {
                let steps = stream.run(block);
                for i in 0..block.len() {
                    let step = k * BLOCK + i;
                    for l in 0..s.layers {
                        let at =
                            |all: &[f32]| all.get(row * h..(row + 1) * h).unwrap_or(&[]).to_vec();
                        let what = format!("{cell:?} row {row} step {step} layer {l}");
                        assert_eq!(
                            bits(steps.h(l, i)),
                            bits(&at(ws.h_at(l, step + 1))),
                            "h {what}"
                        );
                        assert_eq!(
                            bits(steps.c(l, i)),
                            bits(&at(ws.c_at(l, step + 1))),
                            "c {what}"
                        );
                        let gates = &ws.gates(l)[(step * b + row) * width..][..g];
                        assert_eq!(bits(steps.gates(l, i)), bits(gates), "gates {what}");
                    }
                }
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Unit `QUOTE_UNIT` of layer 0 of [`quote_model`].
const QUOTE_UNIT: usize = 4;

/// An LSTM whose unit [`QUOTE_UNIT`] of layer 0 is a flip-flop on `"`: its input and forget
/// gates open and close only on a quote (i = σ(±20), f = σ(∓20)), and its candidate
/// g = tanh(5 − 20 h) reads its own h, so a quote sets c to +1 from outside (h ≤ 0) and to −1
/// from inside (h = tanh(1) ≈ 0.76). Every other parameter is random, U(±0.3).
fn quote_model(vocab: &[char]) -> Model {
    let mut model = random_model(Cell::Lstm, vocab.len(), 5);
    let s = model.stack;
    let (h, v, k) = (s.hidden, vocab.len(), QUOTE_UNIT);
    let quote = vocab.iter().position(|&c| c == '"').unwrap();
    let r = s.layer_ranges(0);
    let p = &mut model.params;
    // Rows of the gates i, f, g, o of unit k.
    for gate in 0..4 {
        let row = gate * h + k;
        p[r.w_ih.start + row * v..][..v].fill(0.0);
        p[r.w_hh.start + row * h..][..h].fill(0.0);
        p[r.b_hh.start + row] = 0.0;
        let (quote_weight, bias) = match gate {
            0 => (40.0, -20.0),
            1 => (-40.0, 20.0),
            2 => (0.0, 5.0),
            _ => (0.0, 20.0),
        };
        p[r.w_ih.start + row * v + quote] = quote_weight;
        p[r.b_ih.start + row] = bias;
    }
    p[r.w_hh.start + (2 * h + k) * h + k] = -20.0;
    model
}

/// The unit built to follow "inside quotes" is ranked first for that feature, with r close to
/// 1, by the whole command's code path (checkpoint file, table, ranking, page); the table holds
/// one row per character, layer and unit, with the values of one forward pass over the whole
/// text as one window, bit for bit.
#[test]
fn a_unit_built_to_follow_quotes_is_ranked_first_for_inside_quotes() {
    let dir = tmp("quotes");
    let text = text(3_000, 2);
    let vocab = vocab_of(&text);
    let model = quote_model(&vocab);
    let path = dir.join("quotes.safetensors");
    checkpoint::save(&path, &model, None, Some(&vocab)).unwrap();
    let ck: Checkpoint = checkpoint::load(&path).unwrap();
    let options = Options {
        chars: Some(2_500),
        layer: None,
        top: 2,
        page_chars: 1_000,
    };
    let found = activations::activations(&ck, &text, "quotes.txt", &options, &dir).unwrap();
    assert_eq!(found.chars, 2_500);
    assert!(found.constant.is_empty(), "{:?}", found.constant);
    let first = found
        .ranking
        .iter()
        .find(|r| r.feature == "inside_quotes" && r.rank == 1)
        .unwrap();
    assert_eq!(
        (first.probe.layer, first.probe.unit),
        (0, QUOTE_UNIT),
        "{first:?}"
    );
    assert!(first.r > 0.99, "{first:?}");
    // The control: without the flip-flop, the unit is not first.
    let plain = Checkpoint {
        model: random_model(Cell::Lstm, vocab.len(), 5),
        ..ck.clone()
    };
    let control = activations::activations(&plain, &text, "quotes.txt", &options, &dir).unwrap();
    let top = control
        .ranking
        .iter()
        .find(|r| r.feature == "inside_quotes" && r.rank == 1)
        .unwrap();
    assert!(top.r < 0.9, "{top:?}");

    // The table of the flip-flop model, against one forward over the 2,500 characters.
    activations::activations(&ck, &text, "quotes.txt", &options, &dir).unwrap();
    let df = read_parquet(&found.files[0]).unwrap();
    let s = model.stack;
    assert_eq!(df.height(), 2_500 * s.layers * s.hidden);
    let chars: Vec<char> = text.chars().take(2_500).collect();
    let ids = activations::encode(&vocab, &chars, "quotes.txt").unwrap();
    let mut x = vec![0.0f32; ids.len() * vocab.len()];
    for (t, &id) in ids.iter().enumerate() {
        x[t * vocab.len() + id] = 1.0;
    }
    let mut ws = Workspace::new(s, ids.len(), 1);
    let zeros = vec![0.0; s.layers * s.hidden];
    rnn::forward(
        model.stack_params(),
        &x,
        Some(&zeros),
        Some(&zeros),
        &mut ws,
        Par::Seq,
    );
    let n = df.height();
    let f32s = |name: &str| -> Vec<Option<f32>> {
        let ca = df.column(name).unwrap().f32().unwrap();
        (0..n).map(|i| ca.get(i)).collect()
    };
    let ints = |name: &str| -> Vec<i64> {
        let ca = df.column(name).unwrap().i64().unwrap();
        (0..n).map(|i| ca.get(i).unwrap()).collect()
    };
    let (position, layer, unit) = (ints("position"), ints("layer"), ints("unit"));
    let (h, c) = (f32s("h"), f32s("c"));
    let gates: Vec<Vec<Option<f32>>> = ["i", "f", "g", "o"].map(f32s).to_vec();
    let char_ca = df.column("char").unwrap().str().unwrap();
    let char_column: Vec<String> = (0..n)
        .map(|i| char_ca.get(i).unwrap().to_string())
        .collect();
    for name in ["r", "z", "n"] {
        assert_eq!(df.column(name).unwrap().null_count(), df.height(), "{name}");
    }
    for row in 0..df.height() {
        let (t, l, u) = (
            position[row] as usize,
            layer[row] as usize,
            unit[row] as usize,
        );
        assert_eq!(char_column[row], chars[t].to_string());
        let hd = s.hidden;
        assert_eq!(
            h[row].map(f32::to_bits),
            Some(ws.h_at(l, t + 1)[u].to_bits())
        );
        assert_eq!(
            c[row].map(f32::to_bits),
            Some(ws.c_at(l, t + 1)[u].to_bits())
        );
        for (gate, values) in gates.iter().enumerate() {
            let want = ws.gates(l)[t * 4 * hd + gate * hd + u];
            assert_eq!(values[row].map(f32::to_bits), Some(want.to_bits()));
        }
    }
    // Inside quotes the flip-flop's h is tanh(1), outside −tanh(1) (after the first quote).
    let first_quote = chars.iter().position(|&c| c == '"').unwrap();
    let inside = column(&features(&text[..], 64), "inside_quotes");
    for (t, &inside) in inside
        .iter()
        .enumerate()
        .take(chars.len())
        .skip(first_quote)
    {
        let hk = ws.h_at(0, t + 1)[QUOTE_UNIT];
        let want = if inside == 1.0 { 0.76 } else { -0.76 };
        assert!((hk - want).abs() < 0.01, "h at {t}: {hk}, inside {inside}");
    }
    let csv = std::fs::read_to_string(&found.files[1]).unwrap();
    assert!(csv.starts_with("feature,rank,layer,unit,state,r\n"));
    assert_eq!(
        csv.lines().count(),
        1 + FEATURES.len() * s.layers * s.hidden * 2,
        "every h and c ranked for each feature"
    );
    assert!(
        csv.lines()
            .any(|l| l.starts_with(&format!("inside_quotes,1,0,{QUOTE_UNIT},"))),
        "{csv}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Bad input is refused with what to fix: a character the model does not know (with its
/// line and column), a layer the model does not have, a model without a vocabulary.
#[test]
fn bad_input_is_refused_with_what_to_fix() {
    let dir = tmp("bad");
    let vocab = vocab_of("ab\n");
    let model = random_model(Cell::Gru, vocab.len(), 1);
    let ck = Checkpoint {
        model,
        config: None,
        vocab: Some(vocab),
    };
    let options = Options {
        chars: None,
        layer: None,
        top: 3,
        page_chars: 100,
    };
    let e = activations::activations(&ck, "ab\nbaX", "t.txt", &options, &dir).unwrap_err();
    assert!(
        e.to_string().contains(
            "t.txt: the character 'X' at line 2, column 3 is not in the model's vocabulary"
        ),
        "{e}"
    );
    let layer = Options {
        layer: Some(2),
        ..options.clone()
    };
    let e = activations::activations(&ck, "ab", "t.txt", &layer, &dir).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--layer 2: the model has 2 layer(s), numbered 0 to 1"
    );
    let e = activations::activations(&ck, "", "t.txt", &options, &dir).unwrap_err();
    assert_eq!(e.to_string(), "t.txt has no characters to run the model on");
    let no_vocab = Checkpoint {
        vocab: None,
        ..ck.clone()
    };
    let e = activations::activations(&no_vocab, "ab", "t.txt", &options, &dir).unwrap_err();
    assert!(e.to_string().contains("has no vocabulary"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}
