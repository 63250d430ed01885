//! A character model's activations over a text, [`BLOCK`] characters per forward call with the
//! state carried: the kernels' own forward (so the values are those of training, bit for bit)
//! in a workspace of one block, whatever the text's length. `gradlab activations`
//! ([`crate::report::activations`]) writes and ranks them.

use gradlab_kernels::rnn::{self, Workspace};
use gradlab_kernels::{Cell, Par};

use super::Model;

/// Characters per forward call: long enough that the input projection is one product per
/// block, short enough that the workspace stays small.
pub const BLOCK: usize = 64;

/// The gates of every cell, LSTM's then GRU's (the gate columns of `gradlab activations`'
/// table).
pub const GATE_COLUMNS: [&str; 7] = ["i", "f", "g", "o", "r", "z", "n"];

/// The gates of `cell` in the order the kernels store them: LSTM i, f, g, o; GRU r, z, n; none
/// for an RNN.
pub fn gate_names(cell: Cell) -> &'static [&'static str] {
    match cell {
        Cell::Lstm => &GATE_COLUMNS[..4],
        Cell::Gru => &GATE_COLUMNS[4..],
        Cell::Rnn(_) => &[],
    }
}

/// The model's activations over a text, a block of characters at a time with the state
/// carried; batch 1, [`Par::Seq`].
pub struct Stream<'m> {
    model: &'m Model,
    ws: Workspace,
    x: Vec<f32>,
    h: Vec<f32>,
    c: Vec<f32>,
}

impl<'m> Stream<'m> {
    /// A stream from the zero state.
    pub fn new(model: &'m Model) -> Self {
        let s = model.stack;
        let lh = s.layers * s.hidden;
        Stream {
            model,
            ws: Workspace::new(s, BLOCK, 1),
            x: Vec::with_capacity(BLOCK * s.input),
            h: vec![0.0; lh],
            c: vec![0.0; if s.cell.has_cell_state() { lh } else { 0 }],
        }
    }

    /// Runs the characters `ids` (vocabulary indices, at most [`BLOCK`]) from the carried
    /// state, carries the state on, and returns their activations.
    ///
    /// # Panics
    /// If `ids` is empty or longer than [`BLOCK`], or an id is outside the vocabulary.
    pub fn run(&mut self, ids: &[usize]) -> Steps<'_> {
        assert!(
            (1..=BLOCK).contains(&ids.len()),
            "a block has 1 to {BLOCK} characters"
        );
        let s = self.model.stack;
        self.x.clear();
        self.x.resize(ids.len() * s.input, 0.0);
        for (t, &id) in ids.iter().enumerate() {
            self.x[t * s.input + id] = 1.0;
        }
        self.ws.resize(ids.len(), 1);
        let c = s.cell.has_cell_state().then_some(&self.c[..]);
        rnn::forward(
            self.model.stack_params(),
            &self.x,
            Some(&self.h),
            c,
            &mut self.ws,
            Par::Seq,
        );
        self.ws.state_into(ids.len(), &mut self.h, &mut self.c);
        Steps { ws: &self.ws }
    }
}

/// The activations of one block of characters (see [`Stream::run`]).
pub struct Steps<'a> {
    ws: &'a Workspace,
}

impl Steps<'_> {
    /// Characters in the block.
    pub fn len(&self) -> usize {
        self.ws.steps()
    }

    /// Whether the block is empty (never: [`Stream::run`] refuses an empty one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// h of `layer` after the block's `t`-th character, `[H]`.
    pub fn h(&self, layer: usize, t: usize) -> &[f32] {
        self.ws.h_at(layer, t + 1)
    }

    /// c of `layer` after the block's `t`-th character, `[H]` (empty but for an LSTM).
    pub fn c(&self, layer: usize, t: usize) -> &[f32] {
        self.ws.c_at(layer, t + 1)
    }

    /// The gate values of `layer` at the block's `t`-th character, `[G][H]` in the order of
    /// [`gate_names`] (the GRU's stored `hn` left out; empty for an RNN).
    pub fn gates(&self, layer: usize, t: usize) -> &[f32] {
        let shape = self.ws.shape();
        let width = shape.cell.stored_gates(shape.hidden);
        let n = gate_names(shape.cell).len() * shape.hidden;
        &self.ws.gates(layer)[t * width..][..n]
    }
}
