//! The model: a stack of recurrent layers and a linear output head in PyTorch's layout, with
//! everything that makes or reads one: the mapping from the configuration to the kernels'
//! cell ([`kernel_cell`]), the one head forward used by training and sampling ([`head`]),
//! initialisation ([`init`]), step Jacobians of the recurrence ([`jacobian`]), spectra
//! ([`spectra`]), safetensors
//! checkpoints ([`checkpoint`]), text sampling ([`sample`]) and the `gradlab grad` tool
//! ([`grad`]).

pub mod checkpoint;
pub mod grad;
pub mod head;
pub mod init;
pub mod jacobian;
pub mod sample;
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

/// Stacked RNN/LSTM/GRU + linear head. Parameters are one flat vector: the stack in
/// `named_parameters()` order, then `head.weight` `(O, H)` and `head.bias` `(O)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub stack: StackShape,
    pub output: usize,
    pub params: Vec<f32>,
}

impl Model {
    /// A zero-initialised model of this shape.
    pub fn new(stack: StackShape, output: usize) -> Self {
        let n = stack.num_params() + output * stack.hidden + output;
        Model {
            stack,
            output,
            params: vec![0.0; n],
        }
    }

    /// The recurrent stack's parameters (before the head's).
    pub fn stack_params(&self) -> &[f32] {
        &self.params[..self.stack.num_params()]
    }

    /// `head.weight` and `head.bias` in the flat vector.
    pub fn head_ranges(&self) -> (Range<usize>, Range<usize>) {
        let w = self.stack.num_params()..self.stack.num_params() + self.output * self.stack.hidden;
        let b = w.end..w.end + self.output;
        (w, b)
    }

    /// PyTorch names, shapes and ranges of every parameter.
    pub fn param_names(&self) -> Vec<(String, Vec<usize>, Range<usize>)> {
        let (w, b) = self.head_ranges();
        let mut names = self.stack.param_names();
        names.push((
            "head.weight".into(),
            vec![self.output, self.stack.hidden],
            w,
        ));
        names.push(("head.bias".into(), vec![self.output], b));
        names
    }
}
