//! Element-wise gate math of one time step, SIMD and scalar twin side by side.
//!
//! Each function works on a range of hidden units `j0..j1` of one batch row, so the recurrent
//! GEMM can apply it to the tile it has just produced while that tile is still in L1.
//! Row layouts follow PyTorch: an LSTM gate row is `[i | f | g | o]`, each `hidden` wide; a GRU
//! row is `[r | z | n | hn]`, PyTorch's three gates and `hn = W_hn h + b_hn`, which backward needs
//! on its own because b_hn sits inside `r ⊙ (W_hn h + b_hn)`.

use std::ops::Range;

use crate::isa::dispatch;
use crate::simd::{
    exp_n, fmadd, sigmoid_from_exp, sigmoid_s, tanh_exp_arg, tanh_from_exp, tanh_s, tanh_v, Vf32,
    LANES,
};

/// Non-linearity of a vanilla RNN (`tanh` as in Elman nets, `relu` as in IRNN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    Tanh,
    Relu,
}

/// Visits `units` in chunks of at most `LANES`: `(offset, length)`.
#[inline(always)]
fn chunks(units: Range<usize>) -> impl Iterator<Item = (usize, usize)> {
    let end = units.end;
    units.step_by(LANES).map(move |j| (j, LANES.min(end - j)))
}

/// Calls `$chunk::<FULL>(args)` for every chunk `(j, n)` of `$units` (see [`chunks`]), with
/// `FULL` (all `LANES` lanes valid) decided once per chunk at compile time: the full-vector body
/// then has no branch (see `simd::load_n`).
macro_rules! per_chunk {
    ($units:expr, |$j:ident, $n:ident| $chunk:ident($($arg:expr),* $(,)?)) => {
        for ($j, $n) in chunks($units) {
            if $n == LANES {
                $chunk::<V, true>($($arg),*);
            } else {
                $chunk::<V, false>($($arg),*);
            }
        }
    };
}

#[inline(always)]
fn relu_v<V: Vf32>(x: V) -> V {
    // `x < 0 ? 0 : x` keeps NaN (max(x, 0) would turn it into 0 and hide a divergence).
    V::select(x.lt(V::zero()), V::zero(), x)
}

#[inline(always)]
fn relu_s(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

#[inline(always)]
fn rnn_forward_units_imp<V: Vf32>(
    act: Activation,
    h: &mut [f32],
    bias: &[f32],
    units: Range<usize>,
) {
    #[inline(always)]
    fn chunk<V: Vf32, const FULL: bool>(
        act: Activation,
        h: &mut [f32],
        bias: &[f32],
        j: usize,
        n: usize,
    ) {
        let x = V::load_n::<FULL>(h, j, n) + V::load_n::<FULL>(bias, j, n);
        let y = match act {
            Activation::Tanh => tanh_v(x),
            Activation::Relu => relu_v(x),
        };
        V::store_n::<FULL>(h, j, n, y);
    }
    per_chunk!(units, |j, n| chunk(act, h, bias, j, n));
}

dispatch! {
    /// Vanilla RNN forward: `h[j] = act(h[j] + bias[j])` in place (on entry `h` holds the products
    /// `W_ih x + W_hh h`, `bias` is `b_ih + b_hh`).
    pub fn rnn_forward_units(act: Activation, h: &mut [f32], bias: &[f32], units: Range<usize>) = rnn_forward_units_imp;
}

/// Scalar twin of [`rnn_forward_units`].
pub fn rnn_forward_units_scalar(act: Activation, h: &mut [f32], bias: &[f32], units: Range<usize>) {
    for j in units {
        let x = h[j] + bias[j];
        h[j] = match act {
            Activation::Tanh => tanh_s(x),
            Activation::Relu => relu_s(x),
        };
    }
}

#[inline(always)]
fn rnn_backward_units_imp<V: Vf32>(
    act: Activation,
    h: &[f32],
    dy: &[f32],
    dh: &mut [f32],
    dpre: &mut [f32],
    units: Range<usize>,
) {
    #[inline(always)]
    fn chunk<V: Vf32, const FULL: bool>(
        act: Activation,
        h: &[f32],
        dy: &[f32],
        dh: &mut [f32],
        dpre: &mut [f32],
        j: usize,
        n: usize,
    ) {
        let d = V::load_n::<FULL>(dy, j, n) + V::load_n::<FULL>(dh, j, n);
        let hv = V::load_n::<FULL>(h, j, n);
        let g = match act {
            Activation::Tanh => d * (V::splat(1.0) - hv * hv),
            Activation::Relu => V::select(hv.gt(V::zero()), d, V::zero()),
        };
        V::store_n::<FULL>(dh, j, n, d);
        V::store_n::<FULL>(dpre, j, n, g);
    }
    per_chunk!(units, |j, n| chunk(act, h, dy, dh, dpre, j, n));
}

dispatch! {
    /// Vanilla RNN backward of one step: `dh = dy + dh` (the total gradient of h_t, kept for the
    /// gradient-flow norm) and `dpre = dh * act'(h)`.
    pub fn rnn_backward_units(act: Activation, h: &[f32], dy: &[f32], dh: &mut [f32], dpre: &mut [f32], units: Range<usize>) = rnn_backward_units_imp;
}

/// Scalar twin of [`rnn_backward_units`].
pub fn rnn_backward_units_scalar(
    act: Activation,
    h: &[f32],
    dy: &[f32],
    dh: &mut [f32],
    dpre: &mut [f32],
    units: Range<usize>,
) {
    for j in units {
        let d = dy[j] + dh[j];
        dpre[j] = match act {
            Activation::Tanh => d * (1.0 - h[j] * h[j]),
            Activation::Relu => {
                if h[j] > 0.0 {
                    d
                } else {
                    0.0
                }
            }
        };
        dh[j] = d;
    }
}

/// The exponentials an LSTM step needs from its pre-activations `[i, f, g, o]`.
#[inline(always)]
fn lstm_exp_args<V: Vf32>(p: [V; 4]) -> [V; 4] {
    [-p[0], -p[1], tanh_exp_arg(p[2]), -p[3]]
}

/// The activations `[i, f, g, o]` from the pre-activations and their exponentials.
#[inline(always)]
fn lstm_activations<V: Vf32>(p: [V; 4], e: [V; 4]) -> [V; 4] {
    [
        sigmoid_from_exp(e[0]),
        sigmoid_from_exp(e[1]),
        tanh_from_exp(p[2], e[2]),
        sigmoid_from_exp(e[3]),
    ]
}

/// Where one 16-unit chunk of one LSTM row lives: gate g of the row at `gate + g * hidden` (its
/// bias at `unit + g * hidden`), its states at `state`; all 16 lanes valid if `FULL`, else `n`.
#[derive(Clone, Copy)]
struct LstmChunk<const FULL: bool> {
    gate: usize,
    unit: usize,
    state: usize,
    hidden: usize,
    n: usize,
}

impl<const FULL: bool> LstmChunk<FULL> {
    #[inline(always)]
    fn pre<V: Vf32>(self, gates: &[f32], bias: &[f32]) -> [V; 4] {
        let mut pre = [V::zero(); 4];
        for (g, p) in pre.iter_mut().enumerate() {
            let off = g * self.hidden;
            *p = V::load_n::<FULL>(gates, self.gate + off, self.n)
                + V::load_n::<FULL>(bias, self.unit + off, self.n);
        }
        pre
    }

    #[inline(always)]
    fn cell<V: Vf32>(self, act: [V; 4], c_prev: &[f32]) -> V {
        act[1].mul_add(
            V::load_n::<FULL>(c_prev, self.state, self.n),
            act[0] * act[2],
        )
    }

    #[inline(always)]
    fn put<V: Vf32>(self, out: &mut LstmForwardOut<'_>, act: [V; 4], cn: V, t: V) {
        for (g, &a) in act.iter().enumerate() {
            V::store_n::<FULL>(out.gates, self.gate + g * self.hidden, self.n, a);
        }
        V::store_n::<FULL>(out.c, self.state, self.n, cn);
        V::store_n::<FULL>(out.tc, self.state, self.n, t);
        V::store_n::<FULL>(out.h, self.state, self.n, act[3] * t);
    }
}

/// What an LSTM forward step updates, for `rows` batch rows: row r of `gates` at
/// `r * 4 * hidden`, of `c`, `tc` and `h` at `r * hidden`.
pub struct LstmForwardOut<'a> {
    /// In: the products `W_ih x + W_hh h` of `[i | f | g | o]`; out: the activations.
    pub gates: &'a mut [f32],
    /// Out: the cell state `c = f*c_prev + i*g`.
    pub c: &'a mut [f32],
    /// Out: `tanh(c)`.
    pub tc: &'a mut [f32],
    /// Out: the hidden state `h = o*tanh(c)`.
    pub h: &'a mut [f32],
}

/// One 16-unit chunk (`j`, `n` lanes) of `rows` rows, two rows at a time.
#[inline(always)]
fn lstm_forward_chunk<V: Vf32, const FULL: bool>(
    out: &mut LstmForwardOut<'_>,
    bias: &[f32],
    c_prev: &[f32],
    hidden: usize,
    rows: usize,
    j: usize,
    n: usize,
) {
    let at = |r: usize| LstmChunk::<FULL> {
        gate: r * 4 * hidden + j,
        unit: j,
        state: r * hidden + j,
        hidden,
        n,
    };
    let mut r = 0;
    // Two rows at a time (8 exponentials in flight) where the registers hold them.
    while V::WIDE && r + 2 <= rows {
        let (k0, k1) = (at(r), at(r + 1));
        let (p0, p1) = (k0.pre::<V>(out.gates, bias), k1.pre::<V>(out.gates, bias));
        let (a0, a1) = (lstm_exp_args(p0), lstm_exp_args(p1));
        let e = exp_n([a0[0], a0[1], a0[2], a0[3], a1[0], a1[1], a1[2], a1[3]]);
        let act0 = lstm_activations(p0, [e[0], e[1], e[2], e[3]]);
        let act1 = lstm_activations(p1, [e[4], e[5], e[6], e[7]]);
        let (c0, c1) = (k0.cell(act0, c_prev), k1.cell(act1, c_prev));
        let [t0, t1] = exp_n([tanh_exp_arg(c0), tanh_exp_arg(c1)]);
        k0.put(out, act0, c0, tanh_from_exp(c0, t0));
        k1.put(out, act1, c1, tanh_from_exp(c1, t1));
        r += 2;
    }
    while r < rows {
        let k0 = at(r);
        let p0 = k0.pre::<V>(out.gates, bias);
        let act0 = lstm_activations(p0, exp_n(lstm_exp_args(p0)));
        let c0 = k0.cell(act0, c_prev);
        k0.put(out, act0, c0, tanh_v(c0));
        r += 1;
    }
}

#[inline(always)]
fn lstm_forward_units_imp<V: Vf32>(
    mut out: LstmForwardOut<'_>,
    bias: &[f32],
    c_prev: &[f32],
    hidden: usize,
    rows: usize,
    units: Range<usize>,
) {
    per_chunk!(units, |j, n| lstm_forward_chunk(
        &mut out, bias, c_prev, hidden, rows, j, n
    ));
}

dispatch! {
    /// LSTM forward of one step for `rows` batch rows (laid out as [`LstmForwardOut`] says) and
    /// hidden units `units`.
    ///
    /// On entry `out.gates` holds the products `W_ih x + W_hh h` of `[i | f | g | o]` and `bias` is
    /// `b_ih + b_hh` (`[4H]`); `c_prev` is laid out as `out.c`. On exit `out.gates` holds the
    /// activations, and `c = f*c_prev + i*g`, `tc = tanh(c)` and `h = o*tc` are written. Rows are
    /// processed in pairs so that the dependency chains of two rows interleave (one row alone is
    /// latency-bound).
    pub fn lstm_forward_units(out: LstmForwardOut<'_>, bias: &[f32], c_prev: &[f32], hidden: usize, rows: usize, units: Range<usize>) = lstm_forward_units_imp;
}

/// Scalar twin of [`lstm_forward_units`].
pub fn lstm_forward_units_scalar(
    out: LstmForwardOut<'_>,
    bias: &[f32],
    c_prev: &[f32],
    hidden: usize,
    rows: usize,
    units: Range<usize>,
) {
    let LstmForwardOut { gates, c, tc, h } = out;
    let (ho, go, oo) = (hidden, 2 * hidden, 3 * hidden);
    for r in 0..rows {
        let g_row = &mut gates[r * 4 * hidden..][..4 * hidden];
        for j in units.clone() {
            let i = sigmoid_s(g_row[j] + bias[j]);
            let f = sigmoid_s(g_row[ho + j] + bias[ho + j]);
            let g = tanh_s(g_row[go + j] + bias[go + j]);
            let o = sigmoid_s(g_row[oo + j] + bias[oo + j]);
            let at = r * hidden + j;
            let cn = fmadd(f, c_prev[at], i * g);
            let t = tanh_s(cn);
            (g_row[j], g_row[ho + j], g_row[go + j], g_row[oo + j]) = (i, f, g, o);
            (c[at], tc[at], h[at]) = (cn, t, o * t);
        }
    }
}

/// What LSTM backward of one step of one batch row reads.
#[derive(Clone, Copy)]
pub struct LstmBackwardIn<'a> {
    /// The activations `[i | f | g | o]` of the forward step, `[4H]`.
    pub gates: &'a [f32],
    /// The cell state before the step, c_{t-1}, `[H]`.
    pub c_prev: &'a [f32],
    /// `tanh(c_t)`, `[H]`.
    pub tc: &'a [f32],
    /// The loss gradient of h_t, `[H]`.
    pub dy: &'a [f32],
}

/// What LSTM backward of one step of one batch row updates.
pub struct LstmBackwardOut<'a> {
    /// In: the gradient of h_t through h_{t+1}; out: the total gradient of h_t, `[H]`.
    pub dh: &'a mut [f32],
    /// In: the gradient of c_t through c_{t+1}; out: the gradient of c_{t-1}, `[H]`.
    pub dc: &'a mut [f32],
    /// Out: the pre-activation gradients `[di | df | dg | do]`, `[4H]`.
    pub dgates: &'a mut [f32],
}

#[inline(always)]
fn lstm_backward_units_imp<V: Vf32>(
    inputs: LstmBackwardIn<'_>,
    mut out: LstmBackwardOut<'_>,
    hidden: usize,
    units: Range<usize>,
) {
    #[inline(always)]
    fn chunk<V: Vf32, const FULL: bool>(
        inputs: LstmBackwardIn<'_>,
        out: &mut LstmBackwardOut<'_>,
        hidden: usize,
        j: usize,
        n: usize,
    ) {
        let LstmBackwardIn {
            gates,
            c_prev,
            tc,
            dy,
        } = inputs;
        let LstmBackwardOut { dh, dc, dgates } = out;
        macro_rules! ld {
            ($s:expr, $at:expr) => {
                V::load_n::<FULL>($s, $at, n)
            };
        }
        let one = V::splat(1.0);
        let (ho, go, oo) = (hidden + j, 2 * hidden + j, 3 * hidden + j);
        let (i, f, g, o) = (
            ld!(gates, j),
            ld!(gates, ho),
            ld!(gates, go),
            ld!(gates, oo),
        );
        let t = ld!(tc, j);
        let d = ld!(dy, j) + ld!(dh, j);
        let dct = (d * o).mul_add(one - t * t, ld!(dc, j));
        V::store_n::<FULL>(dgates, j, n, dct * g * i * (one - i));
        V::store_n::<FULL>(dgates, ho, n, dct * ld!(c_prev, j) * f * (one - f));
        V::store_n::<FULL>(dgates, go, n, dct * i * (one - g * g));
        V::store_n::<FULL>(dgates, oo, n, d * t * o * (one - o));
        V::store_n::<FULL>(dh, j, n, d);
        V::store_n::<FULL>(dc, j, n, dct * f);
    }
    per_chunk!(units, |j, n| chunk(inputs, &mut out, hidden, j, n));
}

dispatch! {
    /// LSTM backward of one step of one batch row, hidden units `units` (see [`LstmBackwardIn`]
    /// and [`LstmBackwardOut`]).
    pub fn lstm_backward_units(inputs: LstmBackwardIn<'_>, out: LstmBackwardOut<'_>, hidden: usize, units: Range<usize>) = lstm_backward_units_imp;
}

/// Scalar twin of [`lstm_backward_units`].
pub fn lstm_backward_units_scalar(
    inputs: LstmBackwardIn<'_>,
    out: LstmBackwardOut<'_>,
    hidden: usize,
    units: Range<usize>,
) {
    let LstmBackwardIn {
        gates,
        c_prev,
        tc,
        dy,
    } = inputs;
    let LstmBackwardOut { dh, dc, dgates } = out;
    let (ho, go, oo) = (hidden, 2 * hidden, 3 * hidden);
    for j in units {
        let (i, f, g, o) = (gates[j], gates[ho + j], gates[go + j], gates[oo + j]);
        let t = tc[j];
        let d = dy[j] + dh[j];
        let dct = fmadd(d * o, 1.0 - t * t, dc[j]);
        dgates[j] = dct * g * i * (1.0 - i);
        dgates[ho + j] = dct * c_prev[j] * f * (1.0 - f);
        dgates[go + j] = dct * i * (1.0 - g * g);
        dgates[oo + j] = d * t * o * (1.0 - o);
        dh[j] = d;
        dc[j] = dct * f;
    }
}

/// Where one 16-unit chunk of one GRU row lives: block g of the row (`[r | z | n | hn]`) at
/// `gate + g * hidden`, bias g at `unit + g * hidden`, its states at `state`; all 16 lanes
/// valid if `FULL`, else `n`.
#[derive(Clone, Copy)]
struct GruChunk<const FULL: bool> {
    gate: usize,
    unit: usize,
    state: usize,
    hidden: usize,
    n: usize,
}

impl<const FULL: bool> GruChunk<FULL> {
    /// The pre-activations of r and z, the input part of n with its bias, and hn.
    #[inline(always)]
    fn pre<V: Vf32>(self, gates: &[f32], bias: &[f32]) -> [V; 4] {
        macro_rules! at {
            ($s:expr, $base:expr, $k:expr) => {
                V::load_n::<FULL>($s, $base + $k * self.hidden, self.n)
            };
        }
        [
            at!(gates, self.gate, 0) + at!(bias, self.unit, 0),
            at!(gates, self.gate, 1) + at!(bias, self.unit, 1),
            at!(gates, self.gate, 2) + at!(bias, self.unit, 2),
            at!(gates, self.gate, 3),
        ]
    }

    /// r and z from their exponentials `e = [exp(-r_pre), exp(-z_pre)]`, and the argument of
    /// n's tanh, `W_in x + b_in + r * hn`.
    #[inline(always)]
    fn gates<V: Vf32>(pre: [V; 4], e: [V; 2]) -> (V, V, V) {
        let (r, z) = (sigmoid_from_exp(e[0]), sigmoid_from_exp(e[1]));
        (r, z, r.mul_add(pre[3], pre[2]))
    }

    #[inline(always)]
    fn put<V: Vf32>(self, out: &mut GruForwardOut<'_>, h_prev: &[f32], [r, z, n]: [V; 3]) {
        let hp = V::load_n::<FULL>(h_prev, self.state, self.n);
        for (k, a) in [r, z, n].into_iter().enumerate() {
            V::store_n::<FULL>(out.gates, self.gate + k * self.hidden, self.n, a);
        }
        V::store_n::<FULL>(out.h, self.state, self.n, z.mul_add(hp - n, n));
    }
}

/// What a GRU forward step updates, for `rows` batch rows: row r of `gates` at
/// `r * 4 * hidden`, of `h` at `r * hidden`.
pub struct GruForwardOut<'a> {
    /// In: `[r | z | n | hn]` holding the products `W_ir x + W_hr h` and `W_iz x + W_hz h`, the
    /// input part `W_in x`, and `hn = W_hn h + b_hn`; out: the activations r, z, n, and hn
    /// unchanged (backward needs it: b_hn sits inside `r ⊙ (...)`).
    pub gates: &'a mut [f32],
    /// Out: the hidden state `h = (1 - z) * n + z * h_prev`, computed as `n + z * (h_prev - n)`.
    pub h: &'a mut [f32],
}

/// One 16-unit chunk (`j`, `n` lanes) of `rows` GRU rows, two rows at a time.
#[inline(always)]
fn gru_forward_chunk<V: Vf32, const FULL: bool>(
    out: &mut GruForwardOut<'_>,
    bias: &[f32],
    h_prev: &[f32],
    hidden: usize,
    rows: usize,
    j: usize,
    n: usize,
) {
    let at = |r: usize| GruChunk::<FULL> {
        gate: r * 4 * hidden + j,
        unit: j,
        state: r * hidden + j,
        hidden,
        n,
    };
    let mut r = 0;
    // Two rows at a time (8 exponentials in flight) where the registers hold them.
    while V::WIDE && r + 2 <= rows {
        let (k0, k1) = (at(r), at(r + 1));
        let (p0, p1) = (k0.pre::<V>(out.gates, bias), k1.pre::<V>(out.gates, bias));
        let e = exp_n([-p0[0], -p0[1], -p1[0], -p1[1]]);
        let (r0, z0, a0) = GruChunk::<FULL>::gates(p0, [e[0], e[1]]);
        let (r1, z1, a1) = GruChunk::<FULL>::gates(p1, [e[2], e[3]]);
        let [t0, t1] = exp_n([tanh_exp_arg(a0), tanh_exp_arg(a1)]);
        k0.put(out, h_prev, [r0, z0, tanh_from_exp(a0, t0)]);
        k1.put(out, h_prev, [r1, z1, tanh_from_exp(a1, t1)]);
        r += 2;
    }
    while r < rows {
        let k0 = at(r);
        let p0 = k0.pre::<V>(out.gates, bias);
        let [e0, e1] = exp_n([-p0[0], -p0[1]]);
        let (r0, z0, a0) = GruChunk::<FULL>::gates(p0, [e0, e1]);
        k0.put(out, h_prev, [r0, z0, tanh_v(a0)]);
        r += 1;
    }
}

#[inline(always)]
fn gru_forward_units_imp<V: Vf32>(
    mut out: GruForwardOut<'_>,
    bias: &[f32],
    h_prev: &[f32],
    hidden: usize,
    rows: usize,
    units: Range<usize>,
) {
    per_chunk!(units, |j, n| gru_forward_chunk(
        &mut out, bias, h_prev, hidden, rows, j, n
    ));
}

dispatch! {
    /// GRU forward of one step (PyTorch's definition) for `rows` batch rows (laid out as
    /// [`GruForwardOut`] says) and hidden units `units`.
    ///
    /// `bias` is `[b_ir + b_hr | b_iz + b_hz | b_in]` (`[3H]`; b_hn is already in hn); `h_prev` is
    /// laid out as `out.h`. On exit `out.gates` holds `r = σ(.)`, `z = σ(.)`,
    /// `n = tanh(W_in x + b_in + r * hn)` and hn, and `h = n + z * (h_prev - n)` is written. Rows are
    /// processed in pairs, as in [`lstm_forward_units`].
    pub fn gru_forward_units(out: GruForwardOut<'_>, bias: &[f32], h_prev: &[f32], hidden: usize, rows: usize, units: Range<usize>) = gru_forward_units_imp;
}

/// Scalar twin of [`gru_forward_units`].
pub fn gru_forward_units_scalar(
    out: GruForwardOut<'_>,
    bias: &[f32],
    h_prev: &[f32],
    hidden: usize,
    rows: usize,
    units: Range<usize>,
) {
    let GruForwardOut { gates, h } = out;
    let (zo, no, ho) = (hidden, 2 * hidden, 3 * hidden);
    for row in 0..rows {
        let g_row = &mut gates[row * 4 * hidden..][..4 * hidden];
        for j in units.clone() {
            let r = sigmoid_s(g_row[j] + bias[j]);
            let z = sigmoid_s(g_row[zo + j] + bias[zo + j]);
            let n = tanh_s(fmadd(r, g_row[ho + j], g_row[no + j] + bias[no + j]));
            let at = row * hidden + j;
            (g_row[j], g_row[zo + j], g_row[no + j]) = (r, z, n);
            h[at] = fmadd(z, h_prev[at] - n, n);
        }
    }
}

/// What GRU backward of one step of one batch row reads.
#[derive(Clone, Copy)]
pub struct GruBackwardIn<'a> {
    /// `[r | z | n | hn]` of the forward step, `[4H]`.
    pub gates: &'a [f32],
    /// The hidden state before the step, h_{t-1}, `[H]`.
    pub h_prev: &'a [f32],
    /// The loss gradient of h_t, `[H]`.
    pub dy: &'a [f32],
}

/// What GRU backward of one step of one batch row updates.
pub struct GruBackwardOut<'a> {
    /// In: the gradient of h_t through h_{t+1}; out: the direct part of the gradient of
    /// h_{t-1}, `d * z` (the recurrent product adds the rest), `[H]`.
    pub dh: &'a mut [f32],
    /// Out: the total gradient of h_t, `d = dy + dh` (for the gradient-flow norm), `[H]`.
    pub d: &'a mut [f32],
    /// Out: the recurrent side's gradients `[dr | dz | dhn]` (of the pre-activations of r and
    /// z, and of `hn = W_hn h + b_hn`), `[3H]`.
    pub dgates: &'a mut [f32],
    /// Out: the input side's gradients `[dr | dz | dn]` (of the pre-activations; n's is that of
    /// `W_in x + b_in`), `[3H]`.
    pub dgates_ih: &'a mut [f32],
}

#[inline(always)]
fn gru_backward_units_imp<V: Vf32>(
    inputs: GruBackwardIn<'_>,
    mut out: GruBackwardOut<'_>,
    hidden: usize,
    units: Range<usize>,
) {
    #[inline(always)]
    fn chunk<V: Vf32, const FULL: bool>(
        inputs: GruBackwardIn<'_>,
        out: &mut GruBackwardOut<'_>,
        hidden: usize,
        j: usize,
        n: usize,
    ) {
        let GruBackwardIn { gates, h_prev, dy } = inputs;
        let GruBackwardOut {
            dh,
            d: d_out,
            dgates,
            dgates_ih,
        } = out;
        macro_rules! ld {
            ($s:expr, $at:expr) => {
                V::load_n::<FULL>($s, $at, n)
            };
        }
        let one = V::splat(1.0);
        let (zo, no) = (hidden + j, 2 * hidden + j);
        let (r, z, nv, hn) = (
            ld!(gates, j),
            ld!(gates, zo),
            ld!(gates, no),
            ld!(gates, 3 * hidden + j),
        );
        let d = ld!(dy, j) + ld!(dh, j);
        let dn = d * (one - z) * (one - nv * nv);
        let dz = d * (ld!(h_prev, j) - nv) * z * (one - z);
        let dr = dn * hn * r * (one - r);
        for (s, v) in [(&mut **dgates, dn * r), (&mut **dgates_ih, dn)] {
            V::store_n::<FULL>(s, j, n, dr);
            V::store_n::<FULL>(s, zo, n, dz);
            V::store_n::<FULL>(s, no, n, v);
        }
        V::store_n::<FULL>(d_out, j, n, d);
        V::store_n::<FULL>(dh, j, n, d * z);
    }
    per_chunk!(units, |j, n| chunk(inputs, &mut out, hidden, j, n));
}

dispatch! {
    /// GRU backward of one step of one batch row, hidden units `units` (see [`GruBackwardIn`] and
    /// [`GruBackwardOut`]): with `d = dy + dh`, `dn = d (1 - z) (1 - n²)`,
    /// `dz = d (h_prev - n) z (1 - z)`, `dr = dn hn r (1 - r)`, `dhn = dn r`, and `d z` towards
    /// h_{t-1}.
    pub fn gru_backward_units(inputs: GruBackwardIn<'_>, out: GruBackwardOut<'_>, hidden: usize, units: Range<usize>) = gru_backward_units_imp;
}

/// Scalar twin of [`gru_backward_units`].
pub fn gru_backward_units_scalar(
    inputs: GruBackwardIn<'_>,
    out: GruBackwardOut<'_>,
    hidden: usize,
    units: Range<usize>,
) {
    let GruBackwardIn { gates, h_prev, dy } = inputs;
    let GruBackwardOut {
        dh,
        d: d_out,
        dgates,
        dgates_ih,
    } = out;
    let (zo, no, ho) = (hidden, 2 * hidden, 3 * hidden);
    for j in units {
        let (r, z, n, hn) = (gates[j], gates[zo + j], gates[no + j], gates[ho + j]);
        let d = dy[j] + dh[j];
        let dn = d * (1.0 - z) * (1.0 - n * n);
        let dz = d * (h_prev[j] - n) * z * (1.0 - z);
        let dr = dn * hn * r * (1.0 - r);
        (dgates[j], dgates[zo + j], dgates[no + j]) = (dr, dz, dn * r);
        (dgates_ih[j], dgates_ih[zo + j], dgates_ih[no + j]) = (dr, dz, dn);
        d_out[j] = d;
        dh[j] = d * z;
    }
}
