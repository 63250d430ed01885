//! A workspace resized within what it held runs forward and backward, and Pascanu's Ω on what
//! backward left, without allocating. In its own test binary because it installs a counting
//! global allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell as Counter;

use common::{narrow, Problem};
use gradlab_kernels::omega::PascanuOmega;
use gradlab_kernels::rnn::{self, Grads, OutputGrads, Workspace};
use gradlab_kernels::{Activation, Cell, Par, StackShape};

/// The system allocator, counting the allocations of the calling thread.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Counter<usize> = const { Counter::new(0) };
}

// SAFETY: every call is forwarded unchanged to `System`; the counter is a const-initialised
// thread-local without a destructor, so touching it never allocates or fails.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Counter::get);
    f();
    ALLOCATIONS.with(Counter::get) - before
}

/// The f32 inputs of a problem and buffers for everything a pass writes.
struct Buffers {
    params: Vec<f32>,
    x: Vec<f32>,
    h0: Vec<f32>,
    c0: Option<Vec<f32>>,
    dy: Vec<f32>,
    grads: Vec<f32>,
    dx: Vec<f32>,
    dh0: Vec<f32>,
    dc0: Vec<f32>,
    flow: Vec<f32>,
    h_n: Vec<f32>,
    c_n: Vec<f32>,
}

impl Buffers {
    fn new(p: &Problem) -> Self {
        let s = p.shape;
        let lbh = s.layers * p.b * s.hidden;
        let lstm_only = if s.cell.has_cell_state() { lbh } else { 0 };
        Buffers {
            params: narrow(&p.params),
            x: narrow(&p.x),
            h0: narrow(p.h0.as_ref().expect("a problem with state")),
            c0: p.c0.as_deref().map(narrow),
            dy: narrow(&p.dy),
            grads: vec![0.0; p.params.len()],
            dx: vec![0.0; p.x.len()],
            dh0: vec![0.0; lbh],
            dc0: vec![0.0; lstm_only],
            flow: vec![0.0; s.layers * p.t],
            h_n: vec![0.0; lbh],
            c_n: vec![0.0; lstm_only],
        }
    }

    /// Forward, backward over the last `steps` steps, and the final state, in `ws`.
    fn pass(&mut self, ws: &mut Workspace, steps: usize) {
        let (h0, c0) = (Some(&self.h0[..]), self.c0.as_deref());
        rnn::forward(&self.params, &self.x, h0, c0, ws, Par::Seq);
        let loss = OutputGrads {
            dy: &self.dy,
            dh_n: None,
            dc_n: None,
        };
        let out = Grads {
            params: &mut self.grads,
            dx: &mut self.dx,
            dh0: &mut self.dh0,
            dc0: &mut self.dc0,
            flow: &mut self.flow,
        };
        rnn::backward(&self.params, &self.x, loss, steps, ws, out, Par::Seq);
        ws.state_into(ws.steps(), &mut self.h_n, &mut self.c_n);
    }
}

#[test]
fn a_workspace_resized_within_its_capacity_does_not_allocate() {
    for cell in [Cell::Rnn(Activation::Tanh), Cell::Lstm, Cell::Gru] {
        // Widths of 32 and more go through the packed kernel only; narrower ones through
        // `matrixmultiply`, which allocates its packing buffers at every call (the same number
        // in a resized workspace as in a warm one made for the size). Input 40 packs X for
        // dW_ih (`packed_cols`), whose size follows T·B.
        for (input, hidden, layers) in [(40, 33, 2), (5, 19, 1), (5, 19, 2)] {
            let s = StackShape {
                cell,
                input,
                hidden,
                layers,
            };
            let label = format!("{cell:?} I={input} H={hidden} L={layers}");
            let (t_max, b_max) = (8, 6);
            let mut ws = Workspace::new(s, t_max, b_max);
            // The first backward at the largest window sizes the packed operands.
            Buffers::new(&Problem::new(s, t_max, b_max, true, 1)).pass(&mut ws, usize::MAX);
            for (t, b) in [(5, 4), (8, 6), (2, 1), (8, 3), (1, 6)] {
                for steps in [usize::MAX, 1] {
                    let label = format!("{label} T={t} B={b} k={steps}");
                    let mut bufs = Buffers::new(&Problem::new(s, t, b, true, 2));
                    assert_eq!(allocations(|| ws.resize(t, b)), 0, "{label}: resize");
                    let resized = allocations(|| bufs.pass(&mut ws, steps));
                    let mut warm = Workspace::new(s, t, b);
                    bufs.pass(&mut warm, steps);
                    let steady = allocations(|| bufs.pass(&mut warm, steps));
                    assert_eq!(resized, steady, "{label}: resized vs warm workspace");
                    if input.min(hidden) >= 32 {
                        assert_eq!(steady, 0, "{label}: allocations in a pass");
                    }
                }
            }
        }
    }
}

#[test]
fn pascanu_omega_accumulates_without_allocating() {
    // Ω's two products go through the packed kernel (H >= 32): after a window as large, a
    // window of a resized workspace allocates nothing.
    let s = StackShape {
        cell: Cell::Rnn(Activation::Tanh),
        input: 40,
        hidden: 33,
        layers: 2,
    };
    let (t_max, b_max) = (8, 6);
    let mut ws = Workspace::new(s, t_max, b_max);
    let mut omega = PascanuOmega::new(s, t_max, b_max);
    let mut bufs = Buffers::new(&Problem::new(s, t_max, b_max, true, 1));
    bufs.pass(&mut ws, usize::MAX);
    omega.accumulate(&bufs.params, usize::MAX, &ws, Par::Seq);
    for (t, b) in [(5, 4), (8, 6), (2, 1)] {
        for steps in [usize::MAX, 1] {
            let mut bufs = Buffers::new(&Problem::new(s, t, b, true, 2));
            ws.resize(t, b);
            bufs.pass(&mut ws, steps);
            let n = allocations(|| {
                omega.clear();
                omega.accumulate(&bufs.params, steps, &ws, Par::Seq);
                omega.add_gradient(0.5, &mut bufs.grads);
            });
            assert_eq!(n, 0, "T={t} B={b} k={steps}: allocations");
        }
    }
}
