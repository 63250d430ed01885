//! Shared test data: a seeded generator and whole forward/backward problems.
#![allow(dead_code)] // each test file uses a different part

use gradlab_kernels::bench::SplitMix64;
use gradlab_kernels::rnn::{self, Grads, OutputGrads, Workspace};
use gradlab_kernels::{Par, StackShape};

/// Seeded test data on top of the kernels' own generator.
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64(seed))
    }
    pub fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.0.uniform(-scale, scale)).collect()
    }
    pub fn vec_f32(&mut self, n: usize, scale: f64) -> Vec<f32> {
        self.0.vec_f32(n, scale)
    }
}

/// ‖a - b‖ / max(‖b‖, tiny): the norm-wise relative error of `a` against `b`.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "rel_err: lengths differ");
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    diff / norm.max(1e-300)
}

pub fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

pub fn narrow(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

/// Inputs of one forward/backward problem, and the loss gradients that define the probe loss
/// L = <dy, y> + <dh_n, h_n> + <dc_n, c_n>.
#[derive(Clone, Debug)]
pub struct Problem {
    pub shape: StackShape,
    pub t: usize,
    pub b: usize,
    pub params: Vec<f64>,
    pub x: Vec<f64>,
    pub h0: Option<Vec<f64>>,
    pub c0: Option<Vec<f64>>,
    pub dy: Vec<f64>,
    pub dh_n: Option<Vec<f64>>,
    pub dc_n: Option<Vec<f64>>,
}

impl Problem {
    pub fn new(shape: StackShape, t: usize, b: usize, with_state: bool, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let lbh = shape.layers * b * shape.hidden;
        let lstm = shape.cell.has_cell_state();
        Problem {
            shape,
            t,
            b,
            params: rng.vec(shape.num_params(), 0.6),
            x: rng.vec(t * b * shape.input, 1.0),
            h0: with_state.then(|| rng.vec(lbh, 0.8)),
            c0: (with_state && lstm).then(|| rng.vec(lbh, 0.8)),
            dy: rng.vec(t * b * shape.hidden, 1.0),
            dh_n: with_state.then(|| rng.vec(lbh, 1.0)),
            dc_n: (with_state && lstm).then(|| rng.vec(lbh, 1.0)),
        }
    }
}

/// Everything the kernels produce for a problem, as f64 for comparisons.
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs {
    pub y: Vec<f64>,
    pub h_n: Vec<f64>,
    pub c_n: Vec<f64>,
    pub grads: Vec<f64>,
    pub dx: Vec<f64>,
    pub dh0: Vec<f64>,
    pub dc0: Vec<f64>,
    pub flow: Vec<f64>,
}

impl Outputs {
    /// Bitwise comparison (NaN-free data): every field exactly equal.
    pub fn bits(&self) -> Vec<Vec<u64>> {
        [
            &self.y,
            &self.h_n,
            &self.c_n,
            &self.grads,
            &self.dx,
            &self.dh0,
            &self.dc0,
            &self.flow,
        ]
        .iter()
        .map(|v| v.iter().map(|x| x.to_bits()).collect())
        .collect()
    }
}

/// Runs the f32 kernels on `p` (forward, then backward over the last `steps` steps) in a fresh
/// workspace.
pub fn run_kernels(p: &Problem, steps: usize, par: Par) -> Outputs {
    run_kernels_in(&mut Workspace::new(p.shape, p.t, p.b), p, steps, par)
}

/// [`run_kernels`] in `ws`, which must be dimensioned for `p`.
pub fn run_kernels_in(ws: &mut Workspace, p: &Problem, steps: usize, par: Par) -> Outputs {
    let s = p.shape;
    let (params, x) = (narrow(&p.params), narrow(&p.x));
    let (h0, c0) = (p.h0.as_deref().map(narrow), p.c0.as_deref().map(narrow));
    let (dh_n, dc_n) = (p.dh_n.as_deref().map(narrow), p.dc_n.as_deref().map(narrow));
    rnn::forward(&params, &x, h0.as_deref(), c0.as_deref(), ws, par);
    let y = widen(ws.output());
    let (h_n, c_n) = ws.state(p.t);
    let (h_n, c_n) = (widen(&h_n), widen(&c_n));
    let lbh = s.layers * p.b * s.hidden;
    let mut grads = vec![f32::NAN; params.len()];
    let mut dx = vec![f32::NAN; x.len()];
    let mut dh0 = vec![f32::NAN; lbh];
    let mut dc0 = vec![f32::NAN; if s.cell.has_cell_state() { lbh } else { 0 }];
    let mut flow = vec![f32::NAN; s.layers * p.t];
    let dy = narrow(&p.dy);
    let out = Grads {
        params: &mut grads,
        dx: &mut dx,
        dh0: &mut dh0,
        dc0: &mut dc0,
        flow: &mut flow,
    };
    let loss = OutputGrads {
        dy: &dy,
        dh_n: dh_n.as_deref(),
        dc_n: dc_n.as_deref(),
    };
    rnn::backward(&params, &x, loss, steps, ws, out, par);
    Outputs {
        y,
        h_n,
        c_n,
        grads: widen(&grads),
        dx: widen(&dx),
        dh0: widen(&dh0),
        dc0: widen(&dc0),
        flow: widen(&flow),
    }
}
