//! Element-wise gate math of one time step, SIMD and scalar twin side by side.
//!
//! Each function works on a range of hidden units `j0..j1` of one batch row, so the recurrent
//! GEMM can apply it to the tile it has just produced while that tile is still in L1.
//! Row layouts follow PyTorch: an LSTM gate row is `[i | f | g | o]`, each `hidden` wide.

use std::ops::Range;

use crate::simd::{fmadd, load, sigmoid_s, sigmoid_v, store, tanh_s, tanh_v, LANES, V};

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

#[inline(always)]
fn relu_v(x: V) -> V {
    // `x < 0 ? 0 : x` keeps NaN (max(x, 0) would turn it into 0 and hide a divergence).
    x.simd_lt(V::ZERO).select(V::ZERO, x)
}

#[inline(always)]
fn relu_s(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

/// Vanilla RNN forward: `h[j] = act(h[j] + bias[j])` in place (on entry `h` holds the products
/// `W_ih x + W_hh h`, `bias` is `b_ih + b_hh`).
pub fn rnn_forward_units(act: Activation, h: &mut [f32], bias: &[f32], units: Range<usize>) {
    for (j, n) in chunks(units) {
        let x = load(h, j, n) + load(bias, j, n);
        let y = match act {
            Activation::Tanh => tanh_v(x),
            Activation::Relu => relu_v(x),
        };
        store(h, j, n, y);
    }
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

/// Vanilla RNN backward of one step: `dh = dy + dh` (the total gradient of h_t, kept for the
/// gradient-flow norm) and `dpre = dh * act'(h)`.
pub fn rnn_backward_units(
    act: Activation,
    h: &[f32],
    dy: &[f32],
    dh: &mut [f32],
    dpre: &mut [f32],
    units: Range<usize>,
) {
    for (j, n) in chunks(units) {
        let d = load(dy, j, n) + load(dh, j, n);
        let hv = load(h, j, n);
        let g = match act {
            Activation::Tanh => d * (V::splat(1.0) - hv * hv),
            Activation::Relu => hv.simd_gt(V::ZERO).select(d, V::ZERO),
        };
        store(dh, j, n, d);
        store(dpre, j, n, g);
    }
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

/// LSTM forward of one step. On entry `gates` holds the products `W_ih x + W_hh h` of
/// `[i | f | g | o]` and `bias` is `b_ih + b_hh`; on exit `gates` holds the activations.
/// Writes `c = f*c_prev + i*g`, `tc = tanh(c)` and `h = o*tc`.
#[allow(clippy::too_many_arguments)]
pub fn lstm_forward_units(
    gates: &mut [f32],
    bias: &[f32],
    c_prev: &[f32],
    c: &mut [f32],
    tc: &mut [f32],
    h: &mut [f32],
    hidden: usize,
    units: Range<usize>,
) {
    let (ho, go, oo) = (hidden, 2 * hidden, 3 * hidden);
    for (j, n) in chunks(units) {
        let pre = |at: usize| load(gates, at, n) + load(bias, at, n);
        let i = sigmoid_v(pre(j));
        let f = sigmoid_v(pre(ho + j));
        let g = tanh_v(pre(go + j));
        let o = sigmoid_v(pre(oo + j));
        let cn = f.mul_add(load(c_prev, j, n), i * g);
        let t = tanh_v(cn);
        store(gates, j, n, i);
        store(gates, ho + j, n, f);
        store(gates, go + j, n, g);
        store(gates, oo + j, n, o);
        store(c, j, n, cn);
        store(tc, j, n, t);
        store(h, j, n, o * t);
    }
}

/// Scalar twin of [`lstm_forward_units`].
#[allow(clippy::too_many_arguments)]
pub fn lstm_forward_units_scalar(
    gates: &mut [f32],
    bias: &[f32],
    c_prev: &[f32],
    c: &mut [f32],
    tc: &mut [f32],
    h: &mut [f32],
    hidden: usize,
    units: Range<usize>,
) {
    let (ho, go, oo) = (hidden, 2 * hidden, 3 * hidden);
    for j in units {
        let i = sigmoid_s(gates[j] + bias[j]);
        let f = sigmoid_s(gates[ho + j] + bias[ho + j]);
        let g = tanh_s(gates[go + j] + bias[go + j]);
        let o = sigmoid_s(gates[oo + j] + bias[oo + j]);
        let cn = fmadd(f, c_prev[j], i * g);
        let t = tanh_s(cn);
        (gates[j], gates[ho + j], gates[go + j], gates[oo + j]) = (i, f, g, o);
        (c[j], tc[j], h[j]) = (cn, t, o * t);
    }
}

/// LSTM backward of one step.
///
/// In: activated `gates`, `c_prev`, `tc = tanh(c)`, the loss gradient `dy` of h_t, `dh` the
/// gradient of h_t through h_{t+1}, `dc` the gradient of c_t through c_{t+1}.
/// Out: `dh` the total gradient of h_t, `dgates` the pre-activation gradients `[di|df|dg|do]`,
/// `dc` the gradient of c_{t-1}.
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward_units(
    gates: &[f32],
    c_prev: &[f32],
    tc: &[f32],
    dy: &[f32],
    dh: &mut [f32],
    dc: &mut [f32],
    dgates: &mut [f32],
    hidden: usize,
    units: Range<usize>,
) {
    let (ho, go, oo) = (hidden, 2 * hidden, 3 * hidden);
    let one = V::splat(1.0);
    for (j, n) in chunks(units) {
        let (i, f) = (load(gates, j, n), load(gates, ho + j, n));
        let (g, o) = (load(gates, go + j, n), load(gates, oo + j, n));
        let t = load(tc, j, n);
        let d = load(dy, j, n) + load(dh, j, n);
        let dct = (d * o).mul_add(one - t * t, load(dc, j, n));
        store(dgates, j, n, dct * g * i * (one - i));
        store(dgates, ho + j, n, dct * load(c_prev, j, n) * f * (one - f));
        store(dgates, go + j, n, dct * i * (one - g * g));
        store(dgates, oo + j, n, d * t * o * (one - o));
        store(dh, j, n, d);
        store(dc, j, n, dct * f);
    }
}

/// Scalar twin of [`lstm_backward_units`].
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward_units_scalar(
    gates: &[f32],
    c_prev: &[f32],
    tc: &[f32],
    dy: &[f32],
    dh: &mut [f32],
    dc: &mut [f32],
    dgates: &mut [f32],
    hidden: usize,
    units: Range<usize>,
) {
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
