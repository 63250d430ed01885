//! `gradlab activations`: what the units of a trained character model do over a text. The
//! stack runs over the text [`BLOCK`] characters at a time with the state carried
//! ([`crate::model::activations::Stream`]: the values are those of training bit for bit, in
//! bounded memory whatever the text's length), and writes
//!
//! - `activations.parquet`: h, c and the gate values of every unit at every character (columns
//!   in `results/README.md`), one row group at a time;
//! - `ranking.csv`: every unit's h (and an LSTM's c) ranked by its Pearson correlation with
//!   each text feature of [`features`];
//! - `activations.html`: the first characters coloured by one of the top-ranked units
//!   ([`page`]), a self-contained page that opens offline.

pub mod features;
pub mod page;

use std::path::{Path, PathBuf};

use gradlab_kernels::Cell;
use polars::prelude::*;

use self::features::{Correlations, FeatureScan, Probe, Ranked, State, FEATURES};
use crate::fs::write_atomic;
use crate::model::activations::{gate_names, Steps, Stream, BLOCK, GATE_COLUMNS};
use crate::model::checkpoint::Checkpoint;
use crate::model::sample::{text_vocab, SampleError};
use crate::model::Model;
use crate::store::write::RowGroups;

/// Rows of `activations.parquet` buffered before they are written as a row group.
const GROUP_ROWS: usize = 1 << 18;

/// Why the activations of a text cannot be computed or written.
#[derive(Debug, thiserror::Error)]
pub enum ActivationsError {
    #[error(transparent)]
    Vocab(#[from] SampleError),
    #[error(
        "the checkpoint is an encoder-decoder (seq2seq); activations need a one-stack \
         character model (charlm or hello)"
    )]
    Seq2seq,
    #[error(
        "{path}: the character {ch:?} at line {line}, column {column} is not in the model's \
         vocabulary of {size} characters ({known:?}); use a text made of those characters"
    )]
    UnknownChar {
        path: String,
        ch: char,
        line: usize,
        column: usize,
        size: usize,
        known: String,
    },
    #[error("{path} has no characters to run the model on")]
    EmptyText { path: String },
    #[error("--layer {layer}: the model has {layers} layer(s), numbered 0 to {}", layers - 1)]
    Layer { layer: usize, layers: usize },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// What to compute, beside the checkpoint and the text.
#[derive(Clone, Debug)]
pub struct Options {
    /// Characters from the start of the text to run (`None`: all).
    pub chars: Option<usize>,
    /// The one layer to write and rank (`None`: every layer).
    pub layer: Option<usize>,
    /// Units per feature in the printed table and on the page.
    pub top: usize,
    /// Characters the page shows (from the start).
    pub page_chars: usize,
}

/// What [`activations`] found and wrote.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// Characters run.
    pub chars: usize,
    /// Every probe ranked for every feature that varies over the text.
    pub ranking: Vec<Ranked>,
    /// Features constant over the text (not ranked).
    pub constant: Vec<&'static str>,
    /// `activations.parquet`, `ranking.csv` and `activations.html` in the output folder.
    pub files: [PathBuf; 3],
}

/// The text's characters as vocabulary indices, or an error naming the first one the model
/// does not know, with its line and column (1-based).
pub fn encode(vocab: &[char], chars: &[char], path: &str) -> Result<Vec<usize>, ActivationsError> {
    let mut index = std::collections::HashMap::with_capacity(vocab.len());
    for (i, &ch) in vocab.iter().enumerate() {
        index.entry(ch).or_insert(i);
    }
    let (mut line, mut column) = (1, 1);
    let mut ids = Vec::with_capacity(chars.len());
    for &ch in chars {
        let Some(&id) = index.get(&ch) else {
            return Err(ActivationsError::UnknownChar {
                path: path.into(),
                ch,
                line,
                column,
                size: vocab.len(),
                known: vocab.iter().collect(),
            });
        };
        ids.push(id);
        (line, column) = if ch == '\n' {
            (line + 1, 1)
        } else {
            (line, column + 1)
        };
    }
    Ok(ids)
}

/// Runs `ck`'s model over `text` (read from `path`, which errors name) as `opts` says, and
/// writes the table, the ranking and the page into the existing folder `out`.
pub fn activations(
    ck: &Checkpoint,
    text: &str,
    path: &str,
    opts: &Options,
    out: &Path,
) -> Result<Analysis, ActivationsError> {
    if ck.model.encoder.is_some() {
        return Err(ActivationsError::Seq2seq);
    }
    let vocab = text_vocab(ck)?;
    let model = &ck.model;
    let stack = model.stack;
    if let Some(layer) = opts.layer.filter(|&l| l >= stack.layers) {
        return Err(ActivationsError::Layer {
            layer,
            layers: stack.layers,
        });
    }
    let chars: Vec<char> = text
        .chars()
        .take(opts.chars.unwrap_or(usize::MAX))
        .collect();
    if chars.is_empty() {
        return Err(ActivationsError::EmptyText { path: path.into() });
    }
    let ids = encode(vocab, &chars, path)?;
    let layers: Vec<usize> = match opts.layer {
        Some(l) => vec![l],
        None => (0..stack.layers).collect(),
    };
    let probes = probes(stack.cell, stack.hidden, &layers);
    let files = ["activations.parquet", "ranking.csv", "activations.html"].map(|f| out.join(f));
    let write_err = |p: &Path| {
        let path = p.display().to_string();
        move |source| ActivationsError::Write { path, source }
    };

    let mut corr = Correlations::new(probes.len());
    write_atomic(&files[0], |f| {
        let mut table = Table::new(model, vocab, &layers);
        let mut groups = RowGroups::new(f, table.frame().schema())?;
        let (mut stream, mut scan) = (Stream::new(model), FeatureScan::default());
        let (mut x, mut y) = (Vec::new(), vec![0.0f32; probes.len()]);
        for start in (0..ids.len()).step_by(BLOCK) {
            let end = (start + BLOCK).min(ids.len());
            let steps = stream.run(&ids[start..end]);
            scan.scan(&chars, start..end, &mut x);
            for (t, xt) in x.iter().enumerate() {
                for (v, p) in y.iter_mut().zip(&probes) {
                    *v = probe_value(&steps, *p, t);
                }
                corr.add(xt, &y);
            }
            table.push(&steps, &ids[start..end], start);
            if table.rows() >= GROUP_ROWS {
                groups.write(&mut table.frame())?;
                table.clear();
            }
        }
        if table.rows() > 0 {
            groups.write(&mut table.frame())?;
        }
        groups.finish()
    })
    .map_err(write_err(&files[0]))?;

    let ranking = corr.ranking(&probes);
    let constant = (0..FEATURES.len())
        .filter(|&f| !corr.varies(f))
        .map(|f| FEATURES[f])
        .collect();
    crate::fs::write_bytes_atomic(&files[1], ranking_csv(&ranking).as_bytes())
        .map_err(write_err(&files[1]))?;
    let top: Vec<Ranked> = ranking
        .iter()
        .filter(|r| r.rank <= opts.top)
        .copied()
        .collect();
    let page_ids = &ids[..ids.len().min(opts.page_chars)];
    let html = page::render(model, vocab, page_ids, &top, chars.len(), path);
    crate::fs::write_bytes_atomic(&files[2], html.as_bytes()).map_err(write_err(&files[2]))?;
    Ok(Analysis {
        chars: chars.len(),
        ranking,
        constant,
        files,
    })
}

/// The states ranked: per layer, every unit's h, then (LSTM) every unit's c.
fn probes(cell: Cell, hidden: usize, layers: &[usize]) -> Vec<Probe> {
    let states: &[State] = if cell.has_cell_state() {
        &[State::H, State::C]
    } else {
        &[State::H]
    };
    layers
        .iter()
        .flat_map(|&layer| {
            states
                .iter()
                .flat_map(move |&state| (0..hidden).map(move |unit| Probe { layer, unit, state }))
        })
        .collect()
}

/// The value of `p` at the block's `t`-th character.
fn probe_value(steps: &Steps<'_>, p: Probe, t: usize) -> f32 {
    match p.state {
        State::H => steps.h(p.layer, t)[p.unit],
        State::C => steps.c(p.layer, t)[p.unit],
    }
}

/// `feature,rank,layer,unit,state,r`, one line per ranked probe.
fn ranking_csv(ranking: &[Ranked]) -> String {
    let mut csv = String::from("feature,rank,layer,unit,state,r\n");
    for r in ranking {
        csv += &r.cells(|r| r.to_string()).join(",");
        csv.push('\n');
    }
    csv
}

/// The rows of `activations.parquet` not yet written: one per character, layer and unit.
struct Table<'a> {
    cell: Cell,
    hidden: usize,
    layers: &'a [usize],
    /// Each vocabulary character as a string (the `char` column borrows them).
    strings: Vec<String>,
    position: Vec<i64>,
    ch: Vec<usize>,
    layer: Vec<i64>,
    unit: Vec<i64>,
    h: Vec<f32>,
    c: Vec<f32>,
    /// `[gate][row]`, in the order of [`gate_names`].
    gates: Vec<Vec<f32>>,
}

impl<'a> Table<'a> {
    fn new(model: &Model, vocab: &[char], layers: &'a [usize]) -> Self {
        let cell = model.stack.cell;
        Table {
            cell,
            hidden: model.stack.hidden,
            layers,
            strings: vocab.iter().map(char::to_string).collect(),
            position: Vec::new(),
            ch: Vec::new(),
            layer: Vec::new(),
            unit: Vec::new(),
            h: Vec::new(),
            c: Vec::new(),
            gates: vec![Vec::new(); gate_names(cell).len()],
        }
    }

    fn rows(&self) -> usize {
        self.position.len()
    }

    fn clear(&mut self) {
        self.position.clear();
        self.ch.clear();
        self.layer.clear();
        self.unit.clear();
        self.h.clear();
        self.c.clear();
        self.gates.iter_mut().for_each(Vec::clear);
    }

    /// Appends the block that starts at character `start`.
    fn push(&mut self, steps: &Steps<'_>, ids: &[usize], start: usize) {
        let hd = self.hidden;
        for (t, &id) in ids.iter().enumerate() {
            for &l in self.layers {
                self.position
                    .extend(std::iter::repeat_n((start + t) as i64, hd));
                self.ch.extend(std::iter::repeat_n(id, hd));
                self.layer.extend(std::iter::repeat_n(l as i64, hd));
                self.unit.extend(0..hd as i64);
                self.h.extend_from_slice(steps.h(l, t));
                self.c.extend_from_slice(steps.c(l, t));
                for (g, column) in steps.gates(l, t).chunks(hd).zip(&mut self.gates) {
                    column.extend_from_slice(g);
                }
            }
        }
    }

    /// The buffered rows as a frame: every column of the table, null where the cell has no
    /// such state or gate.
    fn frame(&self) -> DataFrame {
        let n = self.rows();
        let nulls = || vec![None::<f32>; n];
        let mut columns = vec![
            Column::new("position".into(), &self.position),
            Column::new(
                "char".into(),
                self.ch
                    .iter()
                    .map(|&i| self.strings[i].as_str())
                    .collect::<Vec<_>>(),
            ),
            Column::new("layer".into(), &self.layer),
            Column::new("unit".into(), &self.unit),
            Column::new("h".into(), &self.h),
            if self.cell.has_cell_state() {
                Column::new("c".into(), &self.c)
            } else {
                Column::new("c".into(), nulls())
            },
        ];
        let names = gate_names(self.cell);
        for name in GATE_COLUMNS {
            columns.push(match names.iter().position(|&g| g == name) {
                Some(k) => Column::new(name.into(), &self.gates[k]),
                None => Column::new(name.into(), nulls()),
            });
        }
        DataFrame::new_infer_height(columns).expect("columns of one table have equal lengths")
    }
}
