//! The scalar reference: RNN/LSTM forward and backward written from the definitions, one
//! element at a time, generic over the float type.
//!
//! At f64 it is the oracle of the tests (itself checked against central finite differences); at
//! f32 it is the scalar twin of [`crate::rnn`] in the benchmarks. Same conventions as
//! [`crate::rnn`]: time-major, PyTorch parameter layout, truncation by `steps`.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

use crate::gates::Activation;
use crate::rnn::{Cell, OutputGrads, StackShape};

/// A float type the reference runs in.
pub trait Real:
    Copy
    + Debug
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + Sum
{
    const ZERO: Self;
    const ONE: Self;
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    fn to_f64(self) -> f64;
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);

fn sigmoid<R: Real>(x: R) -> R {
    R::ONE / (R::ONE + (-x).exp())
}

/// What the reference forward keeps for backward.
#[derive(Clone, Debug)]
pub struct Trace<R> {
    t: usize,
    b: usize,
    hidden: usize,
    /// Per layer `[(T+1)][B][H]`, slot 0 = initial state.
    hs: Vec<Vec<R>>,
    /// Per layer, LSTM only, `[(T+1)][B][H]`.
    cs: Vec<Vec<R>>,
    /// Per layer, LSTM only, activated gates `[T][B][4H]`.
    gates: Vec<Vec<R>>,
}

impl<R: Real> Trace<R> {
    /// Output of the top layer, `[T][B][H]`.
    pub fn output(&self) -> &[R] {
        &self.hs.last().expect("at least one layer")[self.b * self.hidden..]
    }
    /// Final hidden state of layer `l`.
    pub fn h_n(&self, l: usize) -> &[R] {
        &self.hs[l][self.t * self.b * self.hidden..]
    }
    /// Final cell state of layer `l` (empty for an RNN).
    pub fn c_n(&self, l: usize) -> &[R] {
        self.cs[l]
            .get(self.t * self.b * self.hidden..)
            .unwrap_or(&[])
    }
}

/// Forward over `t` steps of batch `b` (see [`crate::rnn::forward`]).
pub fn forward<R: Real>(
    shape: StackShape,
    params: &[R],
    x: &[R],
    h0: Option<&[R]>,
    c0: Option<&[R]>,
    t: usize,
    b: usize,
) -> Trace<R> {
    let h = shape.hidden;
    let (gh, bh) = (shape.cell.gates() * h, b * h);
    let mut trace = Trace {
        t,
        b,
        hidden: h,
        hs: vec![],
        cs: vec![],
        gates: vec![],
    };
    for l in 0..shape.layers {
        let i = shape.layer_input(l);
        let r = shape.layer_ranges(l);
        let (w_ih, w_hh, b_ih, b_hh) = (
            &params[r.w_ih],
            &params[r.w_hh],
            &params[r.b_ih],
            &params[r.b_hh],
        );
        let input: Vec<R> = if l == 0 {
            x.to_vec()
        } else {
            trace.hs[l - 1][bh..].to_vec()
        };
        let init = |s: Option<&[R]>| s.map_or(vec![R::ZERO; bh], |s| s[l * bh..][..bh].to_vec());
        let mut hs = init(h0);
        hs.resize((t + 1) * bh, R::ZERO);
        let lstm = shape.cell == Cell::Lstm;
        let mut cs = if lstm { init(c0) } else { vec![] };
        cs.resize(if lstm { (t + 1) * bh } else { 0 }, R::ZERO);
        let mut gates = vec![R::ZERO; if lstm { t * b * gh } else { 0 }];
        let mut pre = vec![R::ZERO; gh];
        for step in 0..t {
            for bb in 0..b {
                let xr = &input[(step * b + bb) * i..][..i];
                let hr = hs[(step * b + bb) * h..][..h].to_vec();
                for (n, p) in pre.iter_mut().enumerate() {
                    *p = b_ih[n] + b_hh[n];
                    for k in 0..i {
                        *p += w_ih[n * i + k] * xr[k];
                    }
                    for k in 0..h {
                        *p += w_hh[n * h + k] * hr[k];
                    }
                }
                let out = ((step + 1) * b + bb) * h;
                for j in 0..h {
                    hs[out + j] = match shape.cell {
                        Cell::Rnn(Activation::Tanh) => pre[j].tanh(),
                        Cell::Rnn(Activation::Relu) => {
                            if pre[j] > R::ZERO {
                                pre[j]
                            } else {
                                R::ZERO
                            }
                        }
                        Cell::Lstm => {
                            let (ig, fg) = (sigmoid(pre[j]), sigmoid(pre[h + j]));
                            let (gg, og) = (pre[2 * h + j].tanh(), sigmoid(pre[3 * h + j]));
                            let c = fg * cs[(step * b + bb) * h + j] + ig * gg;
                            cs[out + j] = c;
                            let gr = &mut gates[(step * b + bb) * gh..];
                            (gr[j], gr[h + j], gr[2 * h + j], gr[3 * h + j]) = (ig, fg, gg, og);
                            og * c.tanh()
                        }
                    };
                }
            }
        }
        trace.hs.push(hs);
        trace.cs.push(cs);
        trace.gates.push(gates);
    }
    trace
}

/// Gradients from [`backward`], laid out as in [`crate::rnn::Grads`].
#[derive(Clone, Debug)]
pub struct RefGrads<R> {
    pub params: Vec<R>,
    pub dx: Vec<R>,
    pub dh0: Vec<R>,
    pub dc0: Vec<R>,
    pub flow: Vec<R>,
}

/// Backward through the last `steps` steps (see [`crate::rnn::backward`]).
pub fn backward<R: Real>(
    shape: StackShape,
    params: &[R],
    x: &[R],
    trace: &Trace<R>,
    loss: OutputGrads<'_, R>,
    steps: usize,
) -> RefGrads<R> {
    let OutputGrads { dy, dh_n, dc_n } = loss;
    let (t, b, h) = (trace.t, trace.b, shape.hidden);
    let (gh, bh, nl) = (shape.cell.gates() * h, b * h, shape.layers);
    let lstm = shape.cell == Cell::Lstm;
    let t0 = t - steps.min(t);
    let mut g = RefGrads {
        params: vec![R::ZERO; params.len()],
        dx: vec![],
        dh0: vec![R::ZERO; nl * bh],
        dc0: vec![R::ZERO; if lstm { nl * bh } else { 0 }],
        flow: vec![R::ZERO; nl * t],
    };
    let mut dy_l = dy.to_vec();
    for l in (0..nl).rev() {
        let i = shape.layer_input(l);
        let r = shape.layer_ranges(l);
        let (w_ih, w_hh) = (&params[r.w_ih.clone()], &params[r.w_hh.clone()]);
        let input: &[R] = if l == 0 { x } else { &trace.hs[l - 1][bh..] };
        let (hs, cs, gates) = (&trace.hs[l], &trace.cs[l], &trace.gates[l]);
        let init = |s: Option<&[R]>| s.map_or(vec![R::ZERO; bh], |s| s[l * bh..][..bh].to_vec());
        let mut dh = init(dh_n);
        let mut dc = if lstm { init(dc_n) } else { vec![] };
        let mut dx = vec![R::ZERO; t * b * i];
        let mut dpre = vec![R::ZERO; gh];
        for step in (t0..t).rev() {
            let mut flow_sq = R::ZERO;
            for bb in 0..b {
                let at = step * b + bb;
                for j in 0..h {
                    let d = dy_l[at * h + j] + dh[bb * h + j];
                    flow_sq += d * d;
                    match shape.cell {
                        Cell::Rnn(act) => {
                            let hv = hs[(at + b) * h + j];
                            dpre[j] = match act {
                                Activation::Tanh => d * (R::ONE - hv * hv),
                                Activation::Relu if hv > R::ZERO => d,
                                Activation::Relu => R::ZERO,
                            };
                        }
                        Cell::Lstm => {
                            let gr = &gates[at * gh..];
                            let (ig, fg, gg, og) = (gr[j], gr[h + j], gr[2 * h + j], gr[3 * h + j]);
                            let tc = cs[(at + b) * h + j].tanh();
                            let dct = dc[bb * h + j] + d * og * (R::ONE - tc * tc);
                            dpre[j] = dct * gg * ig * (R::ONE - ig);
                            dpre[h + j] = dct * cs[at * h + j] * fg * (R::ONE - fg);
                            dpre[2 * h + j] = dct * ig * (R::ONE - gg * gg);
                            dpre[3 * h + j] = d * tc * og * (R::ONE - og);
                            dc[bb * h + j] = dct * fg;
                        }
                    }
                }
                let (xr, hr) = (&input[at * i..][..i], &hs[at * h..][..h]);
                for (n, &dp) in dpre.iter().enumerate() {
                    for k in 0..i {
                        g.params[r.w_ih.start + n * i + k] += dp * xr[k];
                        dx[at * i + k] += dp * w_ih[n * i + k];
                    }
                    for (gw, &hk) in g.params[r.w_hh.start + n * h..][..h].iter_mut().zip(hr) {
                        *gw += dp * hk;
                    }
                    g.params[r.b_ih.start + n] += dp;
                    g.params[r.b_hh.start + n] += dp;
                }
                for k in 0..h {
                    dh[bb * h + k] = dpre
                        .iter()
                        .enumerate()
                        .map(|(n, &dp)| dp * w_hh[n * h + k])
                        .sum();
                }
            }
            g.flow[l * t + step] = flow_sq.sqrt();
        }
        if t0 == 0 {
            g.dh0[l * bh..][..bh].copy_from_slice(&dh);
            if lstm {
                g.dc0[l * bh..][..bh].copy_from_slice(&dc);
            }
        }
        dy_l = dx;
    }
    g.dx = dy_l;
    g
}
