//! Benchmark shapes and ready-to-time cases, shared by `gradlab bench` and the criterion benches.
//!
//! The DESIGN.md shapes are (T, B, I, H, layers); the DeepBench ones follow its recurrent
//! training set (hidden = input, batch, time steps). FLOPs are counted as in DESIGN.md:
//! forward = 2·T·B·G·H·(I+H) per layer (G = 1 for RNN, 3 for GRU, 4 for LSTM), forward +
//! backward = 3 × forward: the matrix products only. The element-wise gate math is not counted
//! for any cell; it is O(T·B·H) (a few percent of the products at these shapes, see the README),
//! and counting it would make the cells' figures incomparable with the sgemm they are measured
//! against.

use crate::isa::dispatch;
use crate::reference;
pub use crate::rng::SplitMix64;
use crate::rnn::{self, Grads, OutputGrads, Workspace};
use crate::simd::Vf32;
use crate::{Activation, Cell, Par, StackShape};

/// One benchmark shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchShape {
    pub name: &'static str,
    pub cell: Cell,
    pub t: usize,
    pub b: usize,
    pub input: usize,
    pub hidden: usize,
    pub layers: usize,
    /// In the default set of `gradlab bench` (the DESIGN.md shapes).
    pub default: bool,
}

const TANH: Cell = Cell::Rnn(Activation::Tanh);

const fn shape(name: &'static str, cell: Cell, dims: [usize; 5], default: bool) -> BenchShape {
    let [t, b, input, hidden, layers] = dims;
    BenchShape {
        name,
        cell,
        t,
        b,
        input,
        hidden,
        layers,
        default,
    }
}

/// Every shape, DESIGN.md's first (with a GRU beside lstm-small and lstm-large).
pub const SHAPES: [BenchShape; 11] = [
    shape("rnn-small", TANH, [64, 32, 64, 128, 1], true),
    shape("lstm-small", Cell::Lstm, [64, 32, 64, 128, 1], true),
    shape("gru-small", Cell::Gru, [64, 32, 64, 128, 1], true),
    shape("lstm-char", Cell::Lstm, [50, 50, 65, 128, 2], true),
    shape("lstm-medium", Cell::Lstm, [100, 64, 256, 512, 1], true),
    shape("rnn-large", TANH, [50, 64, 1024, 1024, 1], true),
    shape("lstm-large", Cell::Lstm, [50, 64, 1024, 1024, 1], true),
    shape("gru-large", Cell::Gru, [50, 64, 1024, 1024, 1], true),
    shape("deepbench-rnn-1760", TANH, [50, 16, 1760, 1760, 1], false),
    shape(
        "deepbench-lstm-512",
        Cell::Lstm,
        [25, 16, 512, 512, 1],
        false,
    ),
    shape(
        "deepbench-lstm-1024",
        Cell::Lstm,
        [25, 32, 1024, 1024, 1],
        false,
    ),
];

/// The shape called `name`.
pub fn find(name: &str) -> Option<&'static BenchShape> {
    SHAPES.iter().find(|s| s.name == name)
}

impl BenchShape {
    /// The stack this shape describes.
    pub fn stack(&self) -> StackShape {
        StackShape {
            cell: self.cell,
            input: self.input,
            hidden: self.hidden,
            layers: self.layers,
        }
    }
    /// FLOPs of one forward pass.
    pub fn forward_flops(&self) -> f64 {
        self.stack().forward_flops(self.t, self.b)
    }
    /// FLOPs of forward + backward over the whole window.
    pub fn train_flops(&self) -> f64 {
        self.stack().train_flops(self.t, self.b)
    }
}

/// A shape with random data and every buffer allocated, ready to time.
pub struct BenchCase {
    pub shape: BenchShape,
    params: Vec<f32>,
    x: Vec<f32>,
    dy: Vec<f32>,
    ws: Workspace,
    grads: Vec<f32>,
    dx: Vec<f32>,
    dh0: Vec<f32>,
    dc0: Vec<f32>,
    flow: Vec<f32>,
}

impl BenchCase {
    /// Parameters from PyTorch's default U(-1/√H, 1/√H), inputs and output gradients U(-1, 1).
    pub fn new(shape: &BenchShape) -> Self {
        let s = shape.stack();
        let mut rng = SplitMix64(0x5eed);
        let lbh = s.layers * shape.b * s.hidden;
        BenchCase {
            shape: *shape,
            params: rng.vec_f32(s.num_params(), 1.0 / (s.hidden as f64).sqrt()),
            x: rng.vec_f32(shape.t * shape.b * s.input, 1.0),
            dy: rng.vec_f32(shape.t * shape.b * s.hidden, 1.0),
            ws: Workspace::new(s, shape.t, shape.b),
            grads: vec![0.0; s.num_params()],
            dx: vec![0.0; shape.t * shape.b * s.input],
            dh0: vec![0.0; lbh],
            dc0: vec![0.0; if s.cell.has_cell_state() { lbh } else { 0 }],
            flow: vec![0.0; s.layers * shape.t],
        }
    }

    /// One forward pass with the kernels.
    pub fn forward(&mut self, par: Par) {
        rnn::forward(&self.params, &self.x, None, None, &mut self.ws, par);
    }

    /// Forward, then full backward with the kernels; returns the first weight gradient.
    pub fn forward_backward(&mut self, par: Par) -> f32 {
        self.forward(par);
        let out = Grads {
            params: &mut self.grads,
            dx: &mut self.dx,
            dh0: &mut self.dh0,
            dc0: &mut self.dc0,
            flow: &mut self.flow,
        };
        let loss = OutputGrads {
            dy: &self.dy,
            dh_n: None,
            dc_n: None,
        };
        rnn::backward(
            &self.params,
            &self.x,
            loss,
            usize::MAX,
            &mut self.ws,
            out,
            par,
        );
        self.grads[0]
    }

    fn scalar_trace(&self) -> reference::Trace<f32> {
        let (s, t, b) = (self.shape.stack(), self.shape.t, self.shape.b);
        reference::forward(s, &self.params, &self.x, None, None, t, b)
    }

    /// The same forward with the scalar f32 reference (the twin of [`Self::forward`]).
    pub fn forward_scalar(&self) -> f32 {
        self.scalar_trace().output()[0]
    }

    /// The same forward + backward with the scalar f32 reference.
    pub fn forward_backward_scalar(&self) -> f32 {
        let tr = self.scalar_trace();
        let loss = OutputGrads {
            dy: &self.dy[..],
            dh_n: None,
            dc_n: None,
        };
        let (s, x) = (self.shape.stack(), &self.x);
        reference::backward(s, &self.params, x, &tr, loss, usize::MAX).params[0]
    }
}

/// Independent multiply-add chains of [`fma_peak_gflops`] on vectors `V`: enough to cover the
/// FMA latency (4 cycles) times the FMA pipes (up to 2) in flight, and still fit the vector
/// registers (32 zmm with AVX-512; with AVX2 a vector takes two ymm of 16).
const fn fma_chains(wide: bool) -> usize {
    if wide {
        12
    } else {
        6
    }
}

#[inline(always)]
fn fma_chain_loop<V: Vf32, const C: usize>(rounds: usize) -> f32 {
    let (a, b) = (
        V::splat(std::hint::black_box(0.999_99)),
        V::splat(std::hint::black_box(1e-7)),
    );
    let mut acc = [V::splat(1.0); C];
    for _ in 0..rounds {
        for x in acc.iter_mut() {
            *x = x.mul_add(a, b);
        }
    }
    let mut sum = 0.0;
    for v in acc {
        sum += v.sum_lanes();
    }
    sum
}

#[inline(always)]
fn fma_loop_imp<V: Vf32>(rounds: usize) -> f32 {
    if V::WIDE {
        fma_chain_loop::<V, { fma_chains(true) }>(rounds)
    } else {
        fma_chain_loop::<V, { fma_chains(false) }>(rounds)
    }
}

dispatch! {
    /// One thread's FMA loop: `rounds` × [`fma_chains`] vector multiply-adds on registers only,
    /// on the instruction set the kernels use.
    fn fma_loop(rounds: usize) -> f32 = fma_loop_imp;
}

/// The multiply-add peak loop: [`FmaPeak::run`] runs a register-only loop of the kernels' vector
/// multiply-add (one `vfmadd` per zmm, or two per ymm pair) on every thread of the current rayon
/// pool at once, about 15 ms; [`FmaPeak::flops`] is the work it did. It is the ceiling of every
/// kernel (2 FLOPs per lane per multiply-add), measured rather than assumed: it counts how many
/// FMA pipes the core has and the clock it holds under vector load.
#[derive(Clone, Copy, Debug)]
pub struct FmaPeak;

impl FmaPeak {
    const ROUNDS: usize = 1 << 22;

    /// One run of the loop on every thread of the current pool.
    pub fn run(self) {
        std::hint::black_box(rayon::broadcast(|_| fma_loop(Self::ROUNDS)));
    }

    /// FLOPs of one [`FmaPeak::run`] on the current pool.
    pub fn flops(self) -> f64 {
        let chains = fma_chains(crate::isa::isa() == crate::isa::Isa::Avx512);
        (chains * crate::simd::LANES * 2 * Self::ROUNDS * rayon::current_num_threads()) as f64
    }
}

/// The median GFLOP/s of `repeats` runs of [`FmaPeak`] on the current rayon pool, after one
/// warm-up run.
pub fn fma_peak_gflops(repeats: usize) -> f64 {
    FmaPeak.run();
    let mut seconds: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let start = std::time::Instant::now();
            FmaPeak.run();
            start.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    FmaPeak.flops() / seconds[seconds.len() / 2] / 1e9
}
