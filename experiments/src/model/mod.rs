//! The model: a stack of recurrent layers and a linear output head in PyTorch's layout, or an
//! encoder-decoder (seq2seq) whose encoder's final state starts that stack as the decoder; with
//! everything that makes or reads one: the mapping from the configuration to the kernels'
//! cell ([`kernel_cell`]), the one head forward used by training and sampling ([`head`]),
//! initialisation ([`init`]), step Jacobians of the recurrence ([`jacobian`]), spectra
//! ([`spectra`]), safetensors
//! checkpoints ([`checkpoint`]), text sampling ([`sample`]), the encoder-decoder's encoding and
//! decoding ([`seq2seq`]), the `gradlab grad` tool ([`grad`]) and a character model's
//! activations over a text, streamed ([`activations`]).

pub mod activations;
pub mod checkpoint;
pub mod grad;
pub mod head;
pub mod init;
pub mod jacobian;
pub mod sample;
pub mod seq2seq;
pub mod spectra;

use std::ops::Range;

use gradlab_kernels::{Activation, Cell, StackShape};

use crate::config::{CellKind, Nonlinearity};

/// The kernels' cell for a configuration's `cell` and `nonlinearity` (the one place the
/// configuration's enums become the kernels').
pub fn kernel_cell(cell: CellKind, nonlinearity: Nonlinearity) -> Cell {
    match (cell, nonlinearity) {
        (CellKind::Lstm, _) => Cell::Lstm,
        (CellKind::Gru, _) => Cell::Gru,
        (CellKind::Rnn, Nonlinearity::Tanh) => Cell::Rnn(Activation::Tanh),
        (CellKind::Rnn, Nonlinearity::Relu) => Cell::Rnn(Activation::Relu),
    }
}

/// Stacked RNN/LSTM/GRU + linear head, or encoder + decoder + linear head. Parameters are one flat
/// vector: the stack in `named_parameters()` order, then `head.weight` `(O, H)` and `head.bias`
/// `(O)`, then, for seq2seq, the encoder's stack. The stack is the decoder of a seq2seq model,
/// so whatever reads the stack and the head (the head itself, initialisation, diagnostics)
/// finds them where a one-stack model has them.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The stack the head reads (seq2seq: the decoder).
    pub stack: StackShape,
    pub output: usize,
    pub params: Vec<f32>,
    /// seq2seq: the encoder, whose final state per layer starts the decoder. It has the
    /// decoder's cell, hidden size and depth, and parameters of its own.
    pub encoder: Option<StackShape>,
}

impl Model {
    /// A zero-initialised model of this shape.
    pub fn new(stack: StackShape, output: usize) -> Self {
        let n = stack.num_params() + output * stack.hidden + output;
        Model {
            stack,
            output,
            params: vec![0.0; n],
            encoder: None,
        }
    }

    /// A zero-initialised encoder-decoder: `encoder`'s final (h, c) per layer starts `decoder`.
    ///
    /// # Panics
    /// If the two stacks differ in cell, hidden size or depth (the state must fit).
    pub fn seq2seq(encoder: StackShape, decoder: StackShape, output: usize) -> Self {
        assert!(
            encoder.cell == decoder.cell
                && encoder.hidden == decoder.hidden
                && encoder.layers == decoder.layers,
            "the encoder's final state starts the decoder: their cell, hidden size and depth \
             must agree ({encoder:?}, {decoder:?})"
        );
        let mut model = Model::new(decoder, output);
        model
            .params
            .resize(model.params.len() + encoder.num_params(), 0.0);
        model.encoder = Some(encoder);
        model
    }

    /// The recurrent stack's parameters (before the head's; seq2seq: the decoder's).
    pub fn stack_params(&self) -> &[f32] {
        &self.params[..self.stack.num_params()]
    }

    /// `head.weight` and `head.bias` in the flat vector.
    pub fn head_ranges(&self) -> (Range<usize>, Range<usize>) {
        let w = self.stack.num_params()..self.stack.num_params() + self.output * self.stack.hidden;
        let b = w.end..w.end + self.output;
        (w, b)
    }

    /// seq2seq: the encoder's parameters in the flat vector (after the head's).
    pub fn encoder_range(&self) -> Option<Range<usize>> {
        let (_, head_b) = self.head_ranges();
        self.encoder
            .map(|e| head_b.end..head_b.end + e.num_params())
    }

    /// seq2seq: the encoder's parameters.
    pub fn encoder_params(&self) -> Option<&[f32]> {
        self.encoder_range().map(|r| &self.params[r])
    }

    /// Every recurrent stack with the offset of its parameters, in layer order: the encoder's
    /// (seq2seq), then the stack the head reads.
    pub fn stacks(&self) -> Vec<(StackShape, usize)> {
        let encoder = self.encoder.zip(self.encoder_range().map(|r| r.start));
        encoder.into_iter().chain([(self.stack, 0)]).collect()
    }

    /// The parameters of every recurrent layer in the flat vector, in the order of
    /// [`Model::stacks`] (the rows of the `layers` table).
    pub fn layer_ranges(&self) -> Vec<Range<usize>> {
        self.stacks()
            .into_iter()
            .flat_map(|(s, at)| {
                (0..s.layers).map(move |l| {
                    let r = s.layer_ranges(l);
                    at + r.w_ih.start..at + r.b_hh.end
                })
            })
            .collect()
    }

    /// PyTorch names, shapes and ranges of every parameter: the stack's (`weight_ih_l0`, ...),
    /// or for seq2seq `encoder.weight_ih_l0`, ..., `decoder.weight_ih_l0`, ...; then
    /// `head.weight` and `head.bias`.
    pub fn param_names(&self) -> Vec<(String, Vec<usize>, Range<usize>)> {
        let (w, b) = self.head_ranges();
        let stack_prefix = if self.encoder.is_some() {
            "decoder."
        } else {
            ""
        };
        let mut names = Vec::new();
        if let (Some(e), Some(r)) = (self.encoder, self.encoder_range()) {
            names.extend(e.param_names().into_iter().map(|(n, dims, p)| {
                (
                    format!("encoder.{n}"),
                    dims,
                    r.start + p.start..r.start + p.end,
                )
            }));
        }
        names.extend(
            self.stack
                .param_names()
                .into_iter()
                .map(|(n, dims, p)| (format!("{stack_prefix}{n}"), dims, p)),
        );
        names.push((
            "head.weight".into(),
            vec![self.output, self.stack.hidden],
            w,
        ));
        names.push(("head.bias".into(), vec![self.output], b));
        names
    }
}
