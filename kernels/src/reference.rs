//! The scalar reference: RNN/LSTM/GRU forward and backward written from the definitions, one
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
    fn from_f64(x: f64) -> Self;
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
            fn from_f64(x: f64) -> Self {
                x as $t
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
    /// Per layer, activated gates `[T][B][4H]`: LSTM `[i | f | g | o]`, GRU `[r | z | n | hn]`
    /// (`hn = W_hn h + b_hn`); empty for an RNN.
    gates: Vec<Vec<R>>,
}

impl<R: Real> Trace<R> {
    /// Output of the top layer, `[T][B][H]`.
    pub fn output(&self) -> &[R] {
        &self.hs.last().expect("at least one layer")[self.b * self.hidden..]
    }
    /// Hidden states h_1..h_T of layer `l`, `[T][B][H]`.
    pub fn states(&self, l: usize) -> &[R] {
        &self.hs[l][self.b * self.hidden..]
    }
    /// Final hidden state of layer `l`.
    pub fn h_n(&self, l: usize) -> &[R] {
        &self.hs[l][self.t * self.b * self.hidden..]
    }
    /// Final cell state of layer `l` (empty but for an LSTM).
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
        let lstm = shape.cell.has_cell_state();
        let mut cs = if lstm { init(c0) } else { vec![] };
        cs.resize(if lstm { (t + 1) * bh } else { 0 }, R::ZERO);
        let sg = shape.cell.stored_gates(h);
        let mut gates = vec![R::ZERO; t * b * sg];
        // The input side `W_ih x + b_ih` and the recurrent side `W_hh h + b_hh`, kept apart for
        // the GRU's n gate.
        let (mut pre_x, mut pre_h) = (vec![R::ZERO; gh], vec![R::ZERO; gh]);
        for step in 0..t {
            for bb in 0..b {
                let xr = &input[(step * b + bb) * i..][..i];
                let hr = hs[(step * b + bb) * h..][..h].to_vec();
                for n in 0..gh {
                    pre_x[n] = b_ih[n];
                    for k in 0..i {
                        pre_x[n] += w_ih[n * i + k] * xr[k];
                    }
                    pre_h[n] = b_hh[n];
                    for k in 0..h {
                        pre_h[n] += w_hh[n * h + k] * hr[k];
                    }
                }
                let pre = |n: usize| pre_x[n] + pre_h[n];
                let out = ((step + 1) * b + bb) * h;
                let gr = &mut gates[(step * b + bb) * sg..][..sg];
                for j in 0..h {
                    hs[out + j] = match shape.cell {
                        Cell::Rnn(Activation::Tanh) => pre(j).tanh(),
                        Cell::Rnn(Activation::Relu) => {
                            if pre(j) > R::ZERO {
                                pre(j)
                            } else {
                                R::ZERO
                            }
                        }
                        Cell::Lstm => {
                            let (ig, fg) = (sigmoid(pre(j)), sigmoid(pre(h + j)));
                            let (gg, og) = (pre(2 * h + j).tanh(), sigmoid(pre(3 * h + j)));
                            let c = fg * cs[(step * b + bb) * h + j] + ig * gg;
                            cs[out + j] = c;
                            (gr[j], gr[h + j], gr[2 * h + j], gr[3 * h + j]) = (ig, fg, gg, og);
                            og * c.tanh()
                        }
                        Cell::Gru => {
                            let (r, z) = (sigmoid(pre(j)), sigmoid(pre(h + j)));
                            let hn = pre_h[2 * h + j];
                            let n = (pre_x[2 * h + j] + r * hn).tanh();
                            (gr[j], gr[h + j], gr[2 * h + j], gr[3 * h + j]) = (r, z, n, hn);
                            (R::ONE - z) * n + z * hr[j]
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
    /// The total gradient ∂L/∂h_t of every layer, step and row, `[L][T][B][H]` (zero before
    /// the window).
    pub dh: Vec<R>,
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
    let lstm = shape.cell.has_cell_state();
    let sg = shape.cell.stored_gates(h);
    let t0 = t - steps.min(t);
    let mut g = RefGrads {
        params: vec![R::ZERO; params.len()],
        dx: vec![],
        dh0: vec![R::ZERO; nl * bh],
        dc0: vec![R::ZERO; if lstm { nl * bh } else { 0 }],
        flow: vec![R::ZERO; nl * t],
        dh: vec![R::ZERO; nl * t * bh],
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
        // Gradients of the input side's and of the recurrent side's pre-activations (the same
        // but for a GRU's n gate), and the part of dh_{t-1} that bypasses W_hh (GRU: d z).
        let (mut dpre_x, mut dpre_h) = (vec![R::ZERO; gh], vec![R::ZERO; gh]);
        let mut dh_direct = vec![R::ZERO; h];
        for step in (t0..t).rev() {
            let mut flow_sq = R::ZERO;
            for bb in 0..b {
                let at = step * b + bb;
                let gr = &gates[at * sg..][..sg];
                for j in 0..h {
                    let d = dy_l[at * h + j] + dh[bb * h + j];
                    flow_sq += d * d;
                    g.dh[(l * t * b + at) * h + j] = d;
                    match shape.cell {
                        Cell::Rnn(act) => {
                            let hv = hs[(at + b) * h + j];
                            dpre_h[j] = match act {
                                Activation::Tanh => d * (R::ONE - hv * hv),
                                Activation::Relu if hv > R::ZERO => d,
                                Activation::Relu => R::ZERO,
                            };
                        }
                        Cell::Lstm => {
                            let (ig, fg, gg, og) = (gr[j], gr[h + j], gr[2 * h + j], gr[3 * h + j]);
                            let tc = cs[(at + b) * h + j].tanh();
                            let dct = dc[bb * h + j] + d * og * (R::ONE - tc * tc);
                            dpre_h[j] = dct * gg * ig * (R::ONE - ig);
                            dpre_h[h + j] = dct * cs[at * h + j] * fg * (R::ONE - fg);
                            dpre_h[2 * h + j] = dct * ig * (R::ONE - gg * gg);
                            dpre_h[3 * h + j] = d * tc * og * (R::ONE - og);
                            dc[bb * h + j] = dct * fg;
                        }
                        Cell::Gru => {
                            let (rg, zg, ng, hn) = (gr[j], gr[h + j], gr[2 * h + j], gr[3 * h + j]);
                            let dn = d * (R::ONE - zg) * (R::ONE - ng * ng);
                            dpre_h[j] = dn * hn * rg * (R::ONE - rg);
                            dpre_h[h + j] = d * (hs[at * h + j] - ng) * zg * (R::ONE - zg);
                            dpre_h[2 * h + j] = dn * rg;
                            dpre_x[2 * h + j] = dn;
                            dh_direct[j] = d * zg;
                        }
                    }
                }
                if shape.cell != Cell::Gru {
                    dpre_x.copy_from_slice(&dpre_h);
                } else {
                    dpre_x[..2 * h].copy_from_slice(&dpre_h[..2 * h]);
                }
                let (xr, hr) = (&input[at * i..][..i], &hs[at * h..][..h]);
                for n in 0..gh {
                    let (dx_n, dh_n) = (dpre_x[n], dpre_h[n]);
                    for k in 0..i {
                        g.params[r.w_ih.start + n * i + k] += dx_n * xr[k];
                        dx[at * i + k] += dx_n * w_ih[n * i + k];
                    }
                    for (gw, &hk) in g.params[r.w_hh.start + n * h..][..h].iter_mut().zip(hr) {
                        *gw += dh_n * hk;
                    }
                    g.params[r.b_ih.start + n] += dx_n;
                    g.params[r.b_hh.start + n] += dh_n;
                }
                for k in 0..h {
                    dh[bb * h + k] = dh_direct[k]
                        + dpre_h
                            .iter()
                            .enumerate()
                            .map(|(n, &dp)| dp * w_hh[n * h + k])
                            .sum::<R>();
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

/// Pascanu, Mikolov & Bengio (2013)'s Ω of one vanilla RNN layer and its gradient with respect
/// to `w_hh` (`(H, H)`, PyTorch's layout), `hs` (h_k) and `vs` (v_k = ∂C/∂h_k) held fixed, for
/// k = 1..T (`[T][B][H]` each), written as the authors' code defines it (see
/// [`crate::omega`]): per step the mean over the batch of `(r_kb − 1)²` where it counts, summed
/// over steps, over the same of the counting mask. `None` (and a zero gradient) where no pair
/// counts.
pub fn pascanu_omega<R: Real>(
    act: Activation,
    w_hh: &[R],
    hs: &[R],
    vs: &[R],
    (t, b, h): (usize, usize, usize),
) -> (Option<R>, Vec<R>) {
    assert!(w_hh.len() == h * h && hs.len() == t * b * h && vs.len() == t * b * h);
    let batch = R::from_f64(b as f64);
    let (mut omega, mut counted) = (R::ZERO, R::ZERO);
    let mut grad = vec![R::ZERO; h * h];
    let (mut a, mut u) = (vec![R::ZERO; h], vec![R::ZERO; h]);
    for k in 0..t {
        let (mut omega_k, mut counted_k) = (R::ZERO, R::ZERO);
        for bb in 0..b {
            let (hr, vr) = (&hs[(k * b + bb) * h..][..h], &vs[(k * b + bb) * h..][..h]);
            for i in 0..h {
                a[i] = vr[i]
                    * match act {
                        Activation::Tanh => R::ONE - hr[i] * hr[i],
                        Activation::Relu if hr[i] > R::ZERO => R::ONE,
                        Activation::Relu => R::ZERO,
                    };
            }
            for (j, uj) in u.iter_mut().enumerate() {
                *uj = (0..h).map(|i| a[i] * w_hh[i * h + j]).sum();
            }
            let v2: R = vr.iter().map(|&x| x * x).sum();
            if v2.to_f64() < crate::omega::OMEGA_BOUND {
                continue;
            }
            let r = u.iter().map(|&x| x * x).sum::<R>() / v2;
            omega_k += (r - R::ONE) * (r - R::ONE);
            counted_k += R::ONE;
            // ∂(r − 1)²/∂W_ij = 2 (r − 1) · 2 u_j a_i / ‖v‖², over the batch's mean.
            let c = R::from_f64(4.0) * (r - R::ONE) / v2 / batch;
            for i in 0..h {
                for j in 0..h {
                    grad[i * h + j] += c * a[i] * u[j];
                }
            }
        }
        omega += omega_k / batch;
        counted += counted_k / batch;
    }
    if counted == R::ZERO {
        return (None, vec![R::ZERO; h * h]);
    }
    grad.iter_mut().for_each(|g| *g = *g / counted);
    (Some(omega / counted), grad)
}
