//! Multi-layer vanilla RNN, LSTM and GRU: forward over a sequence, backward (BPTT) over a window.
//!
//! Shapes are time-major as in PyTorch: input `[T][B][I]`, states `[L][B][H]`, output
//! `[T][B][H]`; parameters are one flat vector holding, per layer, `weight_ih_l{k}` `(G·H, I)`,
//! `weight_hh_l{k}` `(G·H, H)`, `bias_ih_l{k}`, `bias_hh_l{k}` (G = 4 for LSTM, gates i,f,g,o;
//! G = 3 for GRU, gates r,z,n; G = 1 for RNN), in PyTorch's `named_parameters()` order, so
//! weights move unchanged.
//!
//! The GRU keeps `hn = W_hn h + b_hn` apart from the input side's `W_in x` (b_hn sits inside
//! `r ⊙ (W_hn h + b_hn)`): its gate rows are `[r | z | n | hn]`, the recurrent product adds to
//! r and z and writes hn, and backward has two gradient rows, `[dr | dz | dhn]` for W_hh and
//! b_hh and `[dr | dz | dn]` for W_ih, b_ih and dX.
//!
//! Per layer, what batches across time is one large GEMM (the input projection for all T steps;
//! dX, dW_ih, dW_hh over all T·B columns). Only the recurrent product stays sequential; it runs on
//! W_hh packed once per call ([`crate::gemm::PackedB`]) with the gate math fused on each tile.
//! The time loop is split into batch shards that run independently (no barrier per step); every
//! row's arithmetic is independent of the split and every reduction runs in a fixed order, so
//! results are bit-identical for any [`Par`]. Nothing is allocated inside the time loop.

use std::ops::Range;

use crate::gates::{
    self, Activation, GruBackwardIn, GruBackwardOut, GruForwardOut, LstmBackwardIn,
    LstmBackwardOut, LstmForwardOut,
};
use crate::gemm::{
    contiguous_spans, gate_panel_units, gate_spans, gemm, packed_product, sgemm, GemmShape, Mat,
    MatMut, PackedB,
};
use crate::norm::sum_squares;
use crate::par::{split_range, Par, SyncPtr};
use crate::simd::{axpy, LANES};

/// The recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cell {
    /// `h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`.
    Rnn(Activation),
    /// PyTorch's LSTM, gates i, f, g, o.
    Lstm,
    /// PyTorch's GRU, gates r, z, n: `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`,
    /// `h' = (1 − z) ⊙ n + z ⊙ h`.
    Gru,
}

impl Cell {
    /// Gates per hidden unit (G).
    pub fn gates(self) -> usize {
        match self {
            Cell::Rnn(_) => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }

    /// Whether the cell carries a cell state c beside h (LSTM only).
    pub fn has_cell_state(self) -> bool {
        self == Cell::Lstm
    }

    /// Width of the gate row a forward stores per step and batch row: `[i | f | g | o]` for an
    /// LSTM, `[r | z | n | hn]` for a GRU (see [`Workspace::gates`]); none for an RNN.
    pub fn stored_gates(self, hidden: usize) -> usize {
        match self {
            Cell::Rnn(_) => 0,
            Cell::Gru | Cell::Lstm => 4 * hidden,
        }
    }
}

/// The shape of a stack of recurrent layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StackShape {
    pub cell: Cell,
    pub input: usize,
    pub hidden: usize,
    pub layers: usize,
}

/// Where one layer's parameters sit in the flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerRanges {
    pub w_ih: Range<usize>,
    pub w_hh: Range<usize>,
    pub b_ih: Range<usize>,
    pub b_hh: Range<usize>,
}

impl StackShape {
    /// Input width of layer `l`.
    pub fn layer_input(&self, l: usize) -> usize {
        if l == 0 {
            self.input
        } else {
            self.hidden
        }
    }

    fn layer_len(&self, l: usize) -> usize {
        let gh = self.cell.gates() * self.hidden;
        gh * (self.layer_input(l) + self.hidden) + 2 * gh
    }

    /// Parameter ranges of layer `l`.
    pub fn layer_ranges(&self, l: usize) -> LayerRanges {
        assert!(
            l < self.layers,
            "layer {l} out of range (stack has {})",
            self.layers
        );
        let start: usize = (0..l).map(|k| self.layer_len(k)).sum();
        let gh = self.cell.gates() * self.hidden;
        let w_ih = start..start + gh * self.layer_input(l);
        let w_hh = w_ih.end..w_ih.end + gh * self.hidden;
        let b_ih = w_hh.end..w_hh.end + gh;
        let b_hh = b_ih.end..b_ih.end + gh;
        LayerRanges {
            w_ih,
            w_hh,
            b_ih,
            b_hh,
        }
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        (0..self.layers).map(|l| self.layer_len(l)).sum()
    }

    /// PyTorch parameter names and shapes with their ranges, in `named_parameters()` order.
    pub fn param_names(&self) -> Vec<(String, Vec<usize>, Range<usize>)> {
        let gh = self.cell.gates() * self.hidden;
        (0..self.layers)
            .flat_map(|l| {
                let r = self.layer_ranges(l);
                [
                    (
                        format!("weight_ih_l{l}"),
                        vec![gh, self.layer_input(l)],
                        r.w_ih,
                    ),
                    (format!("weight_hh_l{l}"), vec![gh, self.hidden], r.w_hh),
                    (format!("bias_ih_l{l}"), vec![gh], r.b_ih),
                    (format!("bias_hh_l{l}"), vec![gh], r.b_hh),
                ]
            })
            .collect()
    }

    /// FLOPs of forward and backward over `t` steps of batch `b`: 3× the forward count.
    pub fn train_flops(&self, t: usize, b: usize) -> f64 {
        3.0 * self.forward_flops(t, b)
    }

    /// FLOPs of a forward pass over `t` steps of batch `b`: 2·T·B·G·H·(I+H) per layer, the
    /// matrix products only (the element-wise gate math, O(T·B·H), is not counted for any cell).
    pub fn forward_flops(&self, t: usize, b: usize) -> f64 {
        let gh = (self.cell.gates() * self.hidden) as f64;
        (0..self.layers)
            .map(|l| 2.0 * (t * b) as f64 * gh * (self.layer_input(l) + self.hidden) as f64)
            .sum()
    }
}

/// Per-layer buffers for (shape, T, B). Every buffer has exactly the length its comment gives
/// for the current T and B (see [`LayerWs::resize`]).
#[derive(Clone, Debug, Default)]
struct LayerWs {
    /// Gates `[T][B][4H]`: pre-activations, then activations (LSTM `[i | f | g | o]`, GRU
    /// `[r | z | n | hn]`). Empty for RNN (see `hs`).
    gates: Vec<f32>,
    /// `[(T+1)][B][H]`: slot 0 is h0, slot t+1 is h_t (for an RNN, pre-activation first).
    hs: Vec<f32>,
    /// LSTM cell states `[(T+1)][B][H]`, slot 0 is c0.
    cs: Vec<f32>,
    /// LSTM `tanh(c_t)`, `[T][B][H]`.
    tcs: Vec<f32>,
    /// `b_ih + b_hh`, `[G·H]` (GRU: `[b_ir + b_hr | b_iz + b_hz | b_in]`).
    bias: Vec<f32>,
    /// Pre-activation gradients `[T][B][G·H]` (GRU: of the recurrent side, `[dr | dz | dhn]`).
    dgates: Vec<f32>,
    /// GRU only: the input side's `[dr | dz | dn]`, `[T][B][3H]`.
    dgates_ih: Vec<f32>,
    /// Gradient of b_hh (= that of b_ih but for a GRU) per batch row, summed over the window,
    /// `[B][G·H]`.
    db_rows: Vec<f32>,
    /// GRU only: the same for b_ih, `[B][3H]`.
    db_ih_rows: Vec<f32>,
    /// Gradient of h_t, then of h_{t-1} (`[B][H]`).
    dh: Vec<f32>,
    /// GRU only: the total gradient of h_t at the current step, for the flow (`[B][H]`).
    d: Vec<f32>,
    /// LSTM gradient of c_t, then of c_{t-1} (`[B][H]`).
    dc: Vec<f32>,
    /// ‖∂L/∂h_t‖² per step and batch row, `[T][B]`.
    flow_rows: Vec<f64>,
    /// For layers above the first: gradient of the layer below's output, `[T][B][H]`.
    dx: Vec<f32>,
    /// W_hhᵀ for the forward recurrence (LSTM: gate-interleaved panels).
    packed_fwd: PackedB,
    /// W_hh for the backward recurrence.
    packed_bwd: PackedB,
    /// W_ihᵀ for the input projection, then W_ih for dX.
    packed_ih: PackedB,
    /// The inputs, then the previous hidden states, as right operands of dW_ih and dW_hh.
    packed_cols: PackedB,
}

impl LayerWs {
    /// Sets every buffer's length for `t` steps of batch `b` (layer `l` of `shape`), reusing the
    /// allocations that are large enough. The packed operands depend on the shape only, except
    /// `packed_cols`, which `PackedB::pack` sizes for each window and which reuses its
    /// allocation in the same way.
    fn resize(&mut self, shape: StackShape, l: usize, t: usize, b: usize) {
        let (h, gh) = (shape.hidden, shape.cell.gates() * shape.hidden);
        let lstm_only = |n: usize| if shape.cell.has_cell_state() { n } else { 0 };
        let gru_only = |n: usize| if shape.cell == Cell::Gru { n } else { 0 };
        set_len(&mut self.gates, t * b * shape.cell.stored_gates(h));
        set_len(&mut self.hs, (t + 1) * b * h);
        set_len(&mut self.cs, lstm_only((t + 1) * b * h));
        set_len(&mut self.tcs, lstm_only(t * b * h));
        set_len(&mut self.dgates, t * b * gh);
        set_len(&mut self.dgates_ih, gru_only(t * b * gh));
        set_len(&mut self.db_rows, b * gh);
        set_len(&mut self.db_ih_rows, gru_only(b * gh));
        set_len(&mut self.dh, b * h);
        set_len(&mut self.d, gru_only(b * h));
        set_len(&mut self.dc, lstm_only(b * h));
        set_len(&mut self.flow_rows, t * b);
        set_len(&mut self.dx, if l > 0 { t * b * h } else { 0 });
    }
}

/// Sets `v` to length `n` without allocating when its capacity suffices. What it held is left
/// unspecified (every pass writes a buffer before it reads it). A new allocation comes zeroed
/// from the allocator (`vec!`), not copied and filled: pages that a forward-only workspace never
/// touches (the gradient buffers) are then never made resident.
fn set_len<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
    if n <= v.capacity() {
        v.resize(n, T::default());
    } else {
        *v = vec![T::default(); n];
    }
}

/// Everything a forward pass keeps for backward, for `t` steps of batch `b`; reused across calls,
/// and re-dimensioned for another window or batch by [`Workspace::resize`].
#[derive(Clone, Debug)]
pub struct Workspace {
    shape: StackShape,
    t: usize,
    b: usize,
    layers: Vec<LayerWs>,
}

impl Workspace {
    /// Buffers for `t` steps of batch `b`.
    ///
    /// # Panics
    /// If the shape has no layers or a zero width.
    pub fn new(shape: StackShape, t: usize, b: usize) -> Self {
        assert!(
            shape.layers > 0 && shape.input > 0 && shape.hidden > 0,
            "a stack needs at least one layer and non-zero input and hidden sizes: {shape:?}"
        );
        let mut ws = Workspace {
            shape,
            t,
            b,
            layers: vec![LayerWs::default(); shape.layers],
        };
        ws.resize(t, b);
        ws
    }

    /// Re-dimensions the workspace for `t` steps of batch `b`, keeping the shape.
    ///
    /// Nothing is allocated when every buffer fits in what it held before (a smaller size keeps
    /// the memory of the larger one): a workspace made by `Workspace::new(shape, t_max, b_max)`
    /// serves every `t <= t_max`, `b <= b_max` without allocating, from the first `backward` at
    /// the largest window on. What the buffers held is unspecified until the next [`forward`].
    pub fn resize(&mut self, t: usize, b: usize) {
        let shape = self.shape;
        for (l, lw) in self.layers.iter_mut().enumerate() {
            lw.resize(shape, l, t, b);
        }
        (self.t, self.b) = (t, b);
    }

    /// The shape this workspace was sized for.
    pub fn shape(&self) -> StackShape {
        self.shape
    }
    /// Steps T.
    pub fn steps(&self) -> usize {
        self.t
    }
    /// Batch B.
    pub fn batch(&self) -> usize {
        self.b
    }

    /// Output of the last forward pass, `[T][B][H]` (the top layer's h_t).
    pub fn output(&self) -> &[f32] {
        let bh = self.b * self.shape.hidden;
        &self.layers[self.shape.layers - 1].hs[bh..(self.t + 1) * bh]
    }

    /// Final hidden state of layer `l`, `[B][H]`.
    pub fn h_n(&self, l: usize) -> &[f32] {
        self.h_at(l, self.t)
    }

    /// Final cell state of layer `l`, `[B][H]` (empty but for an LSTM).
    pub fn c_n(&self, l: usize) -> &[f32] {
        self.c_at(l, self.t)
    }

    /// Hidden state of layer `l` after `s` steps (`s = 0`: the initial state), `[B][H]`.
    ///
    /// # Panics
    /// If `s > T`.
    pub fn h_at(&self, l: usize, s: usize) -> &[f32] {
        self.check_step(s);
        let bh = self.b * self.shape.hidden;
        &self.layers[l].hs[s * bh..(s + 1) * bh]
    }

    /// Cell state of layer `l` after `s` steps, `[B][H]` (empty but for an LSTM).
    ///
    /// # Panics
    /// If `s > T`.
    pub fn c_at(&self, l: usize, s: usize) -> &[f32] {
        self.check_step(s);
        let bh = self.b * self.shape.hidden;
        if self.shape.cell.has_cell_state() {
            &self.layers[l].cs[s * bh..(s + 1) * bh]
        } else {
            &[]
        }
    }

    fn check_step(&self, s: usize) {
        assert!(
            s <= self.t,
            "step {s} is past the window: this workspace holds states 0..={}",
            self.t
        );
    }

    /// Every layer's state after `s` steps, `[L][B][H]` each (`c` empty but for an LSTM).
    pub fn state(&self, s: usize) -> (Vec<f32>, Vec<f32>) {
        let lbh = self.shape.layers * self.b * self.shape.hidden;
        let lstm = self.shape.cell.has_cell_state();
        let c_len = if lstm { lbh } else { 0 };
        let (mut h, mut c) = (vec![0.0; lbh], vec![0.0; c_len]);
        self.state_into(s, &mut h, &mut c);
        (h, c)
    }

    /// Copies every layer's state after `s` steps into `h` and `c`, `[L][B][H]` each (`c` empty
    /// but for an LSTM): [`Workspace::state`] without allocating.
    ///
    /// # Panics
    /// If `s > T` or a buffer has another length.
    pub fn state_into(&self, s: usize, h: &mut [f32], c: &mut [f32]) {
        let (bh, layers) = (self.b * self.shape.hidden, self.shape.layers);
        let lstm = self.shape.cell.has_cell_state();
        assert_eq!(h.len(), layers * bh, "state_into: h must be [L][B][H]");
        assert_eq!(
            c.len(),
            if lstm { layers * bh } else { 0 },
            "state_into: c must be [L][B][H] for an LSTM, empty for an RNN or a GRU"
        );
        for l in 0..layers {
            h[l * bh..][..bh].copy_from_slice(self.h_at(l, s));
            if lstm {
                c[l * bh..][..bh].copy_from_slice(self.c_at(l, s));
            }
        }
    }

    /// Gate activations of layer `l` in the last forward, `[T][B][4H]`: LSTM `[i | f | g | o]`,
    /// GRU `[r | z | n | hn]` with `hn = W_hn h + b_hn` (empty for an RNN). In both, block 1
    /// is the gate that keeps the previous state (f, z).
    pub fn gates(&self, l: usize) -> &[f32] {
        let n = self.t * self.b * self.shape.cell.stored_gates(self.shape.hidden);
        &self.layers[l].gates[..n]
    }

    /// What the last [`backward`] left of layer `l` of a vanilla RNN, per step and batch row:
    /// the pre-activation gradients `v_t ⊙ f'(h_t)` `[T][B][H]` and the squared norms
    /// `‖v_t‖²` `[T][B]`, `v_t` being the total gradient ∂L/∂h_t (steps before the backward's
    /// window hold stale values).
    pub(crate) fn rnn_backward_rows(&self, l: usize) -> (&[f32], &[f64]) {
        assert!(
            matches!(self.shape.cell, Cell::Rnn(_)),
            "rnn_backward_rows: a {:?} stores other gate gradients",
            self.shape.cell
        );
        let lw = &self.layers[l];
        (&lw.dgates, &lw.flow_rows)
    }
}

/// Gradients written by [`backward`].
pub struct Grads<'a> {
    /// Flat, same layout as the parameters (overwritten).
    pub params: &'a mut [f32],
    /// `[T][B][I]`; zero before the window. Empty: not computed (training needs no input
    /// gradient, and for narrow inputs it is a large share of the work).
    pub dx: &'a mut [f32],
    /// `[L][B][H]`; zero when the window does not reach step 0.
    pub dh0: &'a mut [f32],
    /// `[L][B][H]` for LSTM, empty for RNN and GRU.
    pub dc0: &'a mut [f32],
    /// ‖∂L/∂h_t‖ per layer and step, `[L][T]` (layer-major); zero before the window.
    pub flow: &'a mut [f32],
}

/// The loss gradients of what [`forward`] produced, which [`backward`] propagates: `dy` of the
/// output `[T][B][H]`, `dh_n` and `dc_n` of the final states `[L][B][H]` (zeros when `None`;
/// `dc_n` LSTM only). Generic over the float type so that [`crate::reference::backward`] takes
/// the same at f64.
#[derive(Clone, Copy, Debug)]
pub struct OutputGrads<'a, R = f32> {
    pub dy: &'a [R],
    pub dh_n: Option<&'a [R]>,
    pub dc_n: Option<&'a [R]>,
}

/// Rows `rows` of step `t` of a `[..][B][w]` buffer.
///
/// # Safety
/// `p` points to a live buffer holding step `t`, and no other live reference overlaps these rows.
unsafe fn rows_mut<'a, T>(
    p: SyncPtr<T>,
    b: usize,
    w: usize,
    t: usize,
    rows: &Range<usize>,
) -> &'a mut [T] {
    // SAFETY: forwarded to the caller.
    unsafe { std::slice::from_raw_parts_mut(p.get().add((t * b + rows.start) * w), rows.len() * w) }
}

/// Copies `src` into `dst`, or zeroes `dst` when there is no `src`.
fn copy_or_zero(dst: &mut [f32], src: Option<&[f32]>) {
    match src {
        Some(s) => dst.copy_from_slice(s),
        None => dst.fill(0.0),
    }
}

/// Forward over all T steps. `h0`, `c0` are `[L][B][H]` (zeros when `None`; `c0` LSTM only).
/// Read the results with [`Workspace::output`], [`Workspace::h_n`] and [`Workspace::c_n`].
pub fn forward(
    params: &[f32],
    x: &[f32],
    h0: Option<&[f32]>,
    c0: Option<&[f32]>,
    ws: &mut Workspace,
    par: Par,
) {
    let (shape, t, b) = (ws.shape, ws.t, ws.b);
    let bh = b * shape.hidden;
    assert_eq!(params.len(), shape.num_params(), "forward: parameter count");
    assert_eq!(x.len(), t * b * shape.input, "forward: x must be [T][B][I]");
    check_state("forward: h0", h0, shape.layers * bh);
    check_state("forward: c0", c0, shape.layers * bh);
    assert!(
        c0.is_none() || shape.cell.has_cell_state(),
        "forward: c0 given to a cell without one (only an LSTM has c)"
    );
    for l in 0..shape.layers {
        let (below, rest) = ws.layers.split_at_mut(l);
        let input = below.last().map_or(x, |prev| &prev.hs[bh..]);
        let pass = LayerPass {
            shape,
            l,
            params,
            x: input,
            t,
            b,
        };
        let (h0, c0) = (layer_state(h0, l, bh), layer_state(c0, l, bh));
        layer_forward(pass, h0, c0, &mut rest[0], par);
    }
}

/// One layer's part of a pass: layer `l` of `shape`, the stack's flat parameters, and the
/// layer's input `x` (`[T][B][I_l]`: the stack's input or the output of the layer below) over
/// `t` steps of batch `b`.
#[derive(Clone, Copy)]
struct LayerPass<'a> {
    shape: StackShape,
    l: usize,
    params: &'a [f32],
    x: &'a [f32],
    t: usize,
    b: usize,
}

/// Layer `l`'s `[B][H]` part of an `[L][B][H]` state.
fn layer_state(s: Option<&[f32]>, l: usize, bh: usize) -> Option<&[f32]> {
    s.map(|s| &s[l * bh..][..bh])
}

/// Batch shards of the time loop: one per task, at most one per row.
fn shards(par: Par, b: usize) -> usize {
    par.degree().min(b).max(1)
}

fn check_state(what: &str, s: Option<&[f32]>, len: usize) {
    if let Some(s) = s {
        assert_eq!(s.len(), len, "{what} must be [L][B][H]");
    }
}

fn layer_forward(
    pass: LayerPass<'_>,
    h0: Option<&[f32]>,
    c0: Option<&[f32]>,
    lw: &mut LayerWs,
    par: Par,
) {
    let LayerPass {
        shape,
        l,
        params,
        x,
        t,
        b,
    } = pass;
    let (h, i) = (shape.hidden, shape.layer_input(l));
    let (gh, bh) = (shape.cell.gates() * h, b * h);
    let r = shape.layer_ranges(l);
    let (w_ih, w_hh) = (&params[r.w_ih], &params[r.w_hh]);
    let (b_ih, b_hh) = (&params[r.b_ih], &params[r.b_hh]);
    copy_or_zero(&mut lw.hs[..bh], h0);
    if shape.cell.has_cell_state() {
        copy_or_zero(&mut lw.cs[..bh], c0);
    }

    // The input projection of all T steps as one GEMM; the biases are added with the gate math
    // (a GRU's b_hn is where its recurrent product starts, see below).
    let (pre, ld): (&mut [f32], usize) = match shape.cell {
        Cell::Lstm | Cell::Gru => (&mut lw.gates, shape.cell.stored_gates(h)),
        Cell::Rnn(_) => (&mut lw.hs[bh..], h),
    };
    lw.packed_ih
        .pack(i, contiguous_spans(gh), Mat::transposed(w_ih, i), par);
    gemm(
        t * b,
        Mat::rows(x, i),
        &lw.packed_ih,
        MatMut::rows(pre, ld),
        false,
        par,
    );
    lw.bias.clear();
    match shape.cell {
        // [b_ir + b_hr | b_iz + b_hz | b_in]
        Cell::Gru => lw
            .bias
            .extend(
                b_ih.iter()
                    .zip(b_hh)
                    .enumerate()
                    .map(|(k, (p, q))| if k < 2 * h { p + q } else { *p }),
            ),
        _ => lw.bias.extend(b_ih.iter().zip(b_hh).map(|(p, q)| p + q)),
    }
    let b_hn: &[f32] = if shape.cell == Cell::Gru {
        &b_hh[2 * h..]
    } else {
        &[]
    };

    // W_hhᵀ packed once for all steps, each panel's columns landing on their gates' columns of
    // the stored row (an LSTM panel holds the four gates of 16 units; see `gate_spans`).
    let g = shape.cell.gates();
    let rows_of_w_hh = [0, h, 2 * h, 3 * h];
    lw.packed_fwd.pack(
        h,
        gate_spans(h, &rows_of_w_hh[..g]),
        Mat::transposed(w_hh, h),
        par,
    );
    if shape.cell == Cell::Gru {
        // n's product goes to hn, apart from W_in x.
        lw.packed_fwd.retarget(gate_spans(h, &[0, h, 3 * h]));
    }
    let (packed, bias) = (&lw.packed_fwd, &lw.bias[..]);
    let (hs, cs) = (SyncPtr(lw.hs.as_mut_ptr()), SyncPtr(lw.cs.as_mut_ptr()));
    let (tcs, gates) = (SyncPtr(lw.tcs.as_mut_ptr()), SyncPtr(lw.gates.as_mut_ptr()));
    let (sg, gru) = (shape.cell.stored_gates(h), shape.cell == Cell::Gru);
    let hc = if shape.cell.has_cell_state() { h } else { 0 };
    let ns = shards(par, b);
    par.for_each_task(ns, |s| {
        let rows = split_range(b, ns, s);
        for step in 0..t {
            // SAFETY: each task owns batch rows `rows` of every buffer; within a task the slices
            // below are different steps (slots) of their buffers, so none overlap.
            let (a, h_new) = unsafe {
                (
                    rows_mut(hs, b, h, step, &rows) as &[f32],
                    rows_mut(hs, b, h, step + 1, &rows),
                )
            };
            match shape.cell {
                Cell::Lstm | Cell::Gru => {
                    // SAFETY: as above; a width of 0 (a GRU has no c) gives empty slices.
                    let (c_prev, c_new, tc, g) = unsafe {
                        (
                            rows_mut(cs, b, hc, step, &rows) as &[f32],
                            rows_mut(cs, b, hc, step + 1, &rows),
                            rows_mut(tcs, b, hc, step, &rows),
                            rows_mut(gates, b, sg, step, &rows),
                        )
                    };
                    if gru {
                        // The recurrent product adds W_hn h to b_hn: hn as backward needs it.
                        for row in g.chunks_exact_mut(sg) {
                            row[3 * h..].copy_from_slice(b_hn);
                        }
                    }
                    packed_product(
                        rows.len(),
                        Mat::rows(a, h),
                        packed,
                        MatMut::rows(g, sg),
                        true,
                        |g, p, r0, mr| {
                            let (g, h_out) = (&mut g[r0 * sg..], &mut h_new[r0 * h..]);
                            let units = gate_panel_units(p, shape.cell.gates(), h);
                            if gru {
                                let out = GruForwardOut { gates: g, h: h_out };
                                gates::gru_forward_units(out, bias, &a[r0 * h..], h, mr, units);
                            } else {
                                let out = LstmForwardOut {
                                    gates: g,
                                    c: &mut c_new[r0 * h..],
                                    tc: &mut tc[r0 * h..],
                                    h: h_out,
                                };
                                let c_prev = &c_prev[r0 * h..];
                                gates::lstm_forward_units(out, bias, c_prev, h, mr, units);
                            }
                        },
                    );
                }
                Cell::Rnn(act) => {
                    packed_product(
                        rows.len(),
                        Mat::rows(a, h),
                        packed,
                        MatMut::rows(h_new, h),
                        true,
                        |c, p, r0, mr| {
                            let units = gate_panel_units(p, 1, h);
                            for r in r0..r0 + mr {
                                gates::rnn_forward_units(
                                    act,
                                    &mut c[r * h..][..h],
                                    bias,
                                    units.clone(),
                                );
                            }
                        },
                    );
                }
            }
        }
    });
}

/// Backward (BPTT) through the last `steps` steps of the sequence of the preceding [`forward`].
///
/// `loss` holds the loss gradients of the output and of the final states. With `steps >= T` this
/// is full BPTT; with fewer, gradients stop at step `T - steps` (truncated BPTT): earlier `dx`
/// rows, `dh0` and `dc0` are zero.
pub fn backward(
    params: &[f32],
    x: &[f32],
    loss: OutputGrads<'_>,
    steps: usize,
    ws: &mut Workspace,
    out: Grads<'_>,
    par: Par,
) {
    let OutputGrads { dy, dh_n, dc_n } = loss;
    let (shape, t, b) = (ws.shape, ws.t, ws.b);
    let (bh, l_n) = (b * shape.hidden, shape.layers);
    let lstm = shape.cell.has_cell_state();
    assert_eq!(
        params.len(),
        shape.num_params(),
        "backward: parameter count"
    );
    assert_eq!(
        x.len(),
        t * b * shape.input,
        "backward: x must be [T][B][I]"
    );
    assert_eq!(dy.len(), t * bh, "backward: dy must be [T][B][H]");
    check_state("backward: dh_n", dh_n, l_n * bh);
    check_state("backward: dc_n", dc_n, l_n * bh);
    assert!(
        dc_n.is_none() || lstm,
        "backward: dc_n given to a cell without c (only an LSTM has one)"
    );
    assert_eq!(
        out.params.len(),
        shape.num_params(),
        "backward: gradient count"
    );
    assert!(
        out.dx.is_empty() || out.dx.len() == x.len(),
        "backward: dx must be [T][B][I] or empty"
    );
    assert_eq!(out.dh0.len(), l_n * bh, "backward: dh0 must be [L][B][H]");
    assert_eq!(
        out.dc0.len(),
        if lstm { l_n * bh } else { 0 },
        "backward: dc0 is [L][B][H] for LSTM, empty for RNN and GRU"
    );
    assert_eq!(out.flow.len(), l_n * t, "backward: flow must be [L][T]");
    let t0 = t - steps.min(t);
    for l in (0..l_n).rev() {
        let (below, rest) = ws.layers.split_at_mut(l);
        let (cur, above) = rest.split_first_mut().expect("layer exists");
        let input = below.last().map_or(x, |prev| &prev.hs[bh..]);
        let dy_l = above.first().map_or(dy, |a| &a.dx[..]);
        let r = shape.layer_ranges(l);
        let mut dx_l = std::mem::take(&mut cur.dx);
        let dx: &mut [f32] = if l == 0 { &mut *out.dx } else { &mut dx_l };
        let dc0: &mut [f32] = if lstm {
            &mut out.dc0[l * bh..][..bh]
        } else {
            &mut []
        };
        let pass = LayerPass {
            shape,
            l,
            params,
            x: input,
            t,
            b,
        };
        let loss_l = OutputGrads {
            dy: dy_l,
            dh_n: layer_state(dh_n, l, bh),
            dc_n: layer_state(dc_n, l, bh),
        };
        let grads_l = LayerGrads {
            params: &mut out.params[r.w_ih.start..r.b_hh.end],
            dx,
            dh0: &mut out.dh0[l * bh..][..bh],
            dc0,
            flow: &mut out.flow[l * t..][..t],
        };
        layer_backward(pass, loss_l, t0, cur, grads_l, par);
        cur.dx = dx_l;
    }
}

/// Layer `l`'s part of [`Grads`].
struct LayerGrads<'a> {
    /// The layer's `w_ih`, `w_hh`, `b_ih`, `b_hh` gradients, in that order.
    params: &'a mut [f32],
    /// `[T][B][I_l]`, or empty: not computed.
    dx: &'a mut [f32],
    /// `[B][H]`.
    dh0: &'a mut [f32],
    /// `[B][H]` for LSTM, empty for RNN.
    dc0: &'a mut [f32],
    /// `[T]`.
    flow: &'a mut [f32],
}

/// Backward of layer `l` through steps `t0..T`; `loss` holds the loss gradients of the layer's
/// output `[T][B][H]` and final states `[B][H]`.
fn layer_backward(
    pass: LayerPass<'_>,
    loss: OutputGrads<'_>,
    t0: usize,
    lw: &mut LayerWs,
    out: LayerGrads<'_>,
    par: Par,
) {
    let LayerPass {
        shape,
        l,
        params,
        x,
        t,
        b,
    } = pass;
    let OutputGrads { dy, dh_n, dc_n } = loss;
    let LayerGrads {
        params: grads,
        dx,
        dh0,
        dc0,
        flow,
    } = out;
    let (h, i) = (shape.hidden, shape.layer_input(l));
    let (gh, bh, sg) = (shape.cell.gates() * h, b * h, shape.cell.stored_gates(h));
    let (lstm, gru) = (shape.cell.has_cell_state(), shape.cell == Cell::Gru);
    let r = shape.layer_ranges(l);
    let (w_ih, w_hh) = (&params[r.w_ih], &params[r.w_hh]);
    copy_or_zero(&mut lw.dh, dh_n);
    if lstm {
        copy_or_zero(&mut lw.dc, dc_n);
    }
    // W_hh as the [G·H][H] right operand of dh_{t-1} = dG_t · W_hh.
    lw.packed_bwd
        .pack(gh, contiguous_spans(h), Mat::rows(w_hh, h), par);

    let packed = &lw.packed_bwd;
    let (dhp, dcp) = (SyncPtr(lw.dh.as_mut_ptr()), SyncPtr(lw.dc.as_mut_ptr()));
    let (dgp, fp) = (
        SyncPtr(lw.dgates.as_mut_ptr()),
        SyncPtr(lw.flow_rows.as_mut_ptr()),
    );
    let dbp = SyncPtr(lw.db_rows.as_mut_ptr());
    // GRU only (a width of 0 makes them empty for the other cells).
    let (gru_h, gru_gh) = if gru { (h, gh) } else { (0, 0) };
    let (dtp, dgip, dbip) = (
        SyncPtr(lw.d.as_mut_ptr()),
        SyncPtr(lw.dgates_ih.as_mut_ptr()),
        SyncPtr(lw.db_ih_rows.as_mut_ptr()),
    );
    let (gates, hs, cs, tcs) = (&lw.gates, &lw.hs, &lw.cs, &lw.tcs);
    let ns = shards(par, b);
    par.for_each_task(ns, |s| {
        let rows = split_range(b, ns, s);
        // SAFETY: each task owns batch rows `rows` of dh, dc, d, db_rows, db_ih_rows, dgates,
        // dgates_ih and flow_rows; a width of 0 gives an empty slice of an empty buffer.
        let (dh, dc, db, dtot, dbi) = unsafe {
            let dc = if lstm {
                rows_mut(dcp, b, h, 0, &rows)
            } else {
                &mut [][..]
            };
            (
                rows_mut(dhp, b, h, 0, &rows),
                dc,
                rows_mut(dbp, b, gh, 0, &rows),
                rows_mut(dtp, b, gru_h, 0, &rows),
                rows_mut(dbip, b, gru_gh, 0, &rows),
            )
        };
        db.fill(0.0);
        dbi.fill(0.0);
        for step in (t0..t).rev() {
            // SAFETY: as above.
            let (dg, dgi, fl) = unsafe {
                (
                    rows_mut(dgp, b, gh, step, &rows),
                    rows_mut(dgip, b, gru_gh, step, &rows),
                    rows_mut(fp, b, 1, step, &rows),
                )
            };
            for (ri, row) in rows.clone().enumerate() {
                let at = step * b + row;
                let dyr = &dy[at * h..][..h];
                let dhr = &mut dh[ri * h..][..h];
                let dgr = &mut dg[ri * gh..][..gh];
                match shape.cell {
                    Cell::Lstm => {
                        let inputs = LstmBackwardIn {
                            gates: &gates[at * sg..][..sg],
                            c_prev: &cs[at * h..][..h],
                            tc: &tcs[at * h..][..h],
                            dy: dyr,
                        };
                        let out = LstmBackwardOut {
                            dh: &mut *dhr,
                            dc: &mut dc[ri * h..][..h],
                            dgates: &mut *dgr,
                        };
                        gates::lstm_backward_units(inputs, out, h, 0..h);
                    }
                    Cell::Gru => {
                        let inputs = GruBackwardIn {
                            gates: &gates[at * sg..][..sg],
                            h_prev: &hs[at * h..][..h],
                            dy: dyr,
                        };
                        let out = GruBackwardOut {
                            dh: &mut *dhr,
                            d: &mut dtot[ri * h..][..h],
                            dgates: &mut *dgr,
                            dgates_ih: &mut dgi[ri * gh..][..gh],
                        };
                        gates::gru_backward_units(inputs, out, h, 0..h);
                    }
                    Cell::Rnn(act) => gates::rnn_backward_units(
                        act,
                        &hs[(at + b) * h..][..h],
                        dyr,
                        dhr,
                        dgr,
                        0..h,
                    ),
                }
                // The total gradient of h_t (a GRU's dh now holds only its direct part d ⊙ z).
                fl[ri] = sum_squares(if gru { &dtot[ri * h..][..h] } else { &*dhr });
                // Per-row bias gradients, summed over steps in order; rows are summed in order
                // below.
                axpy(1.0, dgr, &mut db[ri * gh..][..gh]);
                if gru {
                    axpy(1.0, &dgi[ri * gh..][..gh], &mut dbi[ri * gh..][..gh]);
                }
            }
            if step > t0 || t0 == 0 {
                // dh_{t-1} = dG_t · W_hh, added to the GRU's direct part d ⊙ z.
                let a = Mat::rows(dg, gh);
                let c = MatMut::rows(&mut *dh, h);
                packed_product(rows.len(), a, packed, c, gru, |_, _, _, _| {});
            }
        }
    });
    for (step, f) in flow.iter_mut().enumerate() {
        *f = if step < t0 {
            0.0
        } else {
            lw.flow_rows[step * b..][..b].iter().sum::<f64>().sqrt() as f32
        };
    }
    if t0 == 0 {
        dh0.copy_from_slice(&lw.dh);
        dc0.copy_from_slice(&lw.dc);
    } else {
        dh0.fill(0.0);
        dc0.fill(0.0);
    }

    // Weight gradients and dX over all T·B columns of the window, as large GEMMs: W_hh's from
    // the recurrent side's dG, W_ih's and dX from the input side's (the same but for a GRU).
    let (gw_ih, rest) = grads.split_at_mut(gh * i);
    let (gw_hh, rest) = rest.split_at_mut(gh * h);
    let (gb_ih, gb_hh) = rest.split_at_mut(gh);
    let n = (t - t0) * b;
    let dg = &lw.dgates[t0 * b * gh..t * b * gh];
    let dg_ih = if gru {
        &lw.dgates_ih[t0 * b * gh..t * b * gh]
    } else {
        dg
    };
    if !dx.is_empty() {
        dx[..t0 * b * i].fill(0.0);
    }
    sum_rows(&lw.db_rows, gb_hh);
    if gru {
        sum_rows(&lw.db_ih_rows, gb_ih);
    } else {
        gb_ih.copy_from_slice(gb_hh);
    }
    if n == 0 {
        gw_ih.fill(0.0);
        gw_hh.fill(0.0);
        return;
    }
    let (dg_t, dg_ih_t) = (Mat::transposed(dg, gh), Mat::transposed(dg_ih, gh));
    let xs = Mat::rows(&x[t0 * b * i..], i);
    let (gw_ih, gw_hh) = (MatMut::rows(gw_ih, i), MatMut::rows(gw_hh, h));
    if i < NARROW {
        let dims = GemmShape { m: gh, k: n, n: i };
        sgemm(dims, dg_ih_t, xs, 0.0, gw_ih, par);
    } else {
        lw.packed_cols.pack(n, contiguous_spans(i), xs, par);
        gemm(gh, dg_ih_t, &lw.packed_cols, gw_ih, false, par);
    }
    let hs_prev = Mat::rows(&lw.hs[t0 * bh..], h);
    lw.packed_cols.pack(n, contiguous_spans(h), hs_prev, par);
    gemm(gh, dg_t, &lw.packed_cols, gw_hh, false, par);
    if dx.is_empty() {
        return;
    }
    let (dg, dxs) = (Mat::rows(dg_ih, gh), MatMut::rows(&mut dx[t0 * b * i..], i));
    if i < NARROW {
        let dims = GemmShape { m: n, k: gh, n: i };
        sgemm(dims, dg, Mat::rows(w_ih, i), 0.0, dxs, par);
    } else {
        lw.packed_ih
            .pack(gh, contiguous_spans(i), Mat::rows(w_ih, i), par);
        gemm(n, dg, &lw.packed_ih, dxs, false, par);
    }
}

/// `out` = the sum of the `out.len()`-wide rows of `rows`, added in order.
fn sum_rows(rows: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for row in rows.chunks_exact(out.len()) {
        axpy(1.0, row, out);
    }
}

/// Below this many output columns a 64-column panel is mostly padding (N = 2 for the adding
/// task wastes 31/32 of the work), and `matrixmultiply`, which packs narrow panels, is used.
const NARROW: usize = 2 * LANES;
