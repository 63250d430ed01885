//! The TBPTT engine: the loss and the truncated gradient of one training window, with the
//! recurrent state carried between windows.
//!
//! Inside a window of T time steps, TBPTT(k1, k2) holds: every k1 time steps, the losses of
//! those k1 time steps are backpropagated k2 time steps (Williams & Peng), and the truncated
//! gradients of the window are summed. With k1 = k2 = k the window runs in chunks of k with the
//! state carried between them; a shorter last chunk is extended back to k time steps
//! (recomputed from the state the previous chunk stored), so that its losses too are
//! backpropagated k2 time steps. With k ≥ T this is exactly full BPTT. With k1 < k2 one forward
//! over the window gives the states, and every k1 time steps a window of k2 is recomputed from
//! the state at its start (bit-identical to the first forward). The loss is the mean over the
//! window's loss terms.
//!
//! With `regularizer = "pascanu:<α>"` every backward of the window also adds its pairs to
//! Pascanu et al.'s Ω ([`gradlab_kernels::omega`]): on each backpropagated chunk, v_k is the
//! gradient of that chunk's losses with respect to h_k within the chunk, and Ω of the update is
//! the mean of (r − 1)² over the pairs of all its chunks. The update's gradient is then the
//! loss's plus α ∂Ω/∂W_hh; the loss's alone stays apart for the truncation-bias diagnostic.
//!
//! Every buffer is sized when the engine is made and reused: nothing is allocated per window.

use gradlab_kernels::omega::PascanuOmega;
use gradlab_kernels::rnn::{self, Grads, OutputGrads, Workspace};
use gradlab_kernels::{Par, StackShape};

use crate::config::Regularizer;

use crate::model::head::{head_loss, HeadGrad, HeadScratch, LossWindow};
use crate::model::Model;
use crate::task::{Batch, MetricAcc, Task};

/// What every forward and backward of a run needs to see.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub model: &'a Model,
    pub task: &'a Task,
    pub par: Par,
}

/// A part of a batch scored by the head: the window `offset..offset + T_ws` of the workspace's
/// last forward, with losses at window time steps `times`.
#[derive(Clone)]
pub(crate) struct Scored<'a> {
    pub batch: &'a Batch,
    pub offset: usize,
    pub times: std::ops::Range<usize>,
}

/// The buffers of one head loss and stack backward: reused by every call.
#[derive(Debug)]
pub(crate) struct Backprop {
    head: HeadScratch,
    /// The stack's output gradient `[T][B][H]`.
    dy: Vec<f32>,
    /// The stack's gradient of one call (added to the caller's).
    stack_grads: Vec<f32>,
    /// Not computed: training needs no input gradient.
    dx: Vec<f32>,
    dh0: Vec<f32>,
    dc0: Vec<f32>,
    /// ‖∂L/∂h_t‖ of the last call, `[L][T]`.
    flow: Vec<f32>,
}

impl Backprop {
    /// Buffers for windows of up to `t` time steps of batch `b`.
    pub fn new(stack: StackShape, t: usize, b: usize) -> Self {
        let lbh = stack.layers * b * stack.hidden;
        Backprop {
            head: HeadScratch::default(),
            dy: Vec::with_capacity(t * b * stack.hidden),
            stack_grads: vec![0.0; stack.num_params()],
            dx: Vec::new(),
            dh0: vec![0.0; lbh],
            dc0: vec![0.0; if stack.cell.has_cell_state() { lbh } else { 0 }],
            flow: Vec::with_capacity(stack.layers * t),
        }
    }

    /// The head's loss on `s` and, scaled by `scale`, its gradient through the head and the
    /// whole workspace window: added to `grads` (stack, then head). The flow of this backward
    /// is then [`Backprop::flow`].
    pub fn loss_grad(
        &mut self,
        ctx: Ctx<'_>,
        ws: &mut Workspace,
        s: Scored<'_>,
        scale: f32,
        grads: &mut [f32],
        acc: &mut MetricAcc,
    ) {
        let stack = ctx.model.stack;
        let (t, b) = (ws.steps(), ws.batch());
        let n = stack.num_params();
        self.dy.clear();
        self.dy.resize(t * b * stack.hidden, 0.0);
        let (stack_grads, head_grads) = grads.split_at_mut(n);
        let grad = HeadGrad {
            scale,
            dy: &mut self.dy,
            dhead: head_grads,
        };
        head_loss(
            ctx.model,
            ctx.task,
            loss_window(ws, &s),
            &mut self.head,
            acc,
            Some(grad),
            ctx.par,
        );
        self.flow.resize(stack.layers * t, 0.0);
        let out = Grads {
            params: &mut self.stack_grads,
            dx: &mut self.dx,
            dh0: &mut self.dh0,
            dc0: &mut self.dc0,
            flow: &mut self.flow,
        };
        let x = s.batch.x_range(s.offset..s.offset + t);
        let loss = OutputGrads {
            dy: &self.dy,
            dh_n: None,
            dc_n: None,
        };
        rnn::backward(ctx.model.stack_params(), x, loss, t, ws, out, ctx.par);
        for (g, c) in stack_grads.iter_mut().zip(&self.stack_grads) {
            *g += c;
        }
    }

    /// ‖∂L/∂h_t‖ per layer and time step of the last [`Backprop::loss_grad`], `[L][T]`.
    pub fn flow(&self) -> &[f32] {
        &self.flow
    }

    /// Puts back a flow [`Backprop::flow`] returned (a resumed run's last probe).
    pub fn set_flow(&mut self, flow: &[f32]) {
        self.flow.clear();
        self.flow.extend_from_slice(flow);
    }
}

fn loss_window<'a>(ws: &'a Workspace, s: &Scored<'a>) -> LossWindow<'a> {
    LossWindow {
        y: ws.output(),
        targets: &s.batch.targets,
        offset: s.offset,
        batch: ws.batch(),
        times: s.times.clone(),
    }
}

/// Forward of the stack over `x` (`ws.steps()` time steps) from the state `(h, c)`.
pub(crate) fn forward(ctx: Ctx<'_>, ws: &mut Workspace, x: &[f32], h: &[f32], c: &[f32]) {
    let c = ctx.model.stack.cell.has_cell_state().then_some(c);
    rnn::forward(ctx.model.stack_params(), x, Some(h), c, ws, ctx.par);
}

/// The recurrent state `[L][B][H]` (`c` empty for an RNN).
#[derive(Clone, Debug)]
struct State {
    h: Vec<f32>,
    c: Vec<f32>,
}

impl State {
    fn zeros(stack: StackShape, b: usize) -> Self {
        let lbh = stack.layers * b * stack.hidden;
        State {
            h: vec![0.0; lbh],
            c: vec![0.0; if stack.cell.has_cell_state() { lbh } else { 0 }],
        }
    }

    fn copy_from(&mut self, other: &State) {
        self.h.copy_from_slice(&other.h);
        self.c.copy_from_slice(&other.c);
    }

    fn load(&mut self, ws: &Workspace, s: usize) {
        ws.state_into(s, &mut self.h, &mut self.c);
    }
}

/// Loss and truncated gradient of training windows of T time steps of batch B.
#[derive(Debug)]
pub struct Engine {
    /// TBPTT(k1, k2), clamped to the window.
    k1: usize,
    k2: usize,
    /// The chunks (k1 = k2) or the recomputed k2-windows (k1 < k2).
    chunk: Workspace,
    /// The whole window, from the state it started from (k1 < k2, and the diagnostics); `None`
    /// for full BPTT (k1 = k2 = T, as k1 <= k2), whose one chunk is the whole window.
    full: Option<Workspace>,
    bp: Backprop,
    /// The summed gradient of the last window: stack, then head.
    grads: Vec<f32>,
    /// The carried state, the state the last window started from, and a scratch state.
    state: State,
    start: State,
    scratch: State,
    /// Time steps of the last chunk with a loss, whose flow `bp` still holds (0: none yet).
    flow_len: usize,
    /// Pascanu's Ω, when the run is regularised with it.
    omega: Option<Box<OmegaTerm>>,
    /// The window this engine was sized for: T time steps of batch B.
    t: usize,
    b: usize,
}

/// Pascanu's Ω of a window and the gradient the update uses.
#[derive(Debug)]
struct OmegaTerm {
    /// The weight α.
    alpha: f64,
    sums: PascanuOmega,
    /// The loss's truncated gradient plus α ∂Ω/∂W_hh (stack, then head).
    update: Vec<f32>,
}

impl Engine {
    /// An engine for `model` on windows of `t` time steps of batch `b`, truncated as
    /// `(k1, k2)` (each clamped to `t`), with the update's gradient regularised as
    /// `regularizer` says.
    ///
    /// # Panics
    /// With Pascanu's Ω on a stack of other cells than vanilla RNN ones (validation refuses it).
    pub fn new(
        model: &Model,
        (k1, k2): (usize, usize),
        t: usize,
        b: usize,
        regularizer: Regularizer,
    ) -> Self {
        let stack = model.stack;
        let (k1, k2) = (k1.min(t), k2.min(t));
        let chunk_len = if k1 == k2 { k1 } else { k2 };
        let omega = match regularizer {
            Regularizer::None => None,
            Regularizer::Pascanu(alpha) => Some(Box::new(OmegaTerm {
                alpha: f64::from(alpha),
                sums: PascanuOmega::new(stack, chunk_len, b),
                update: vec![0.0; model.params.len()],
            })),
        };
        Engine {
            k1,
            k2,
            chunk: Workspace::new(stack, chunk_len, b),
            full: (k1 < t).then(|| Workspace::new(stack, t, b)),
            bp: Backprop::new(stack, t, b),
            grads: vec![0.0; model.params.len()],
            state: State::zeros(stack, b),
            start: State::zeros(stack, b),
            scratch: State::zeros(stack, b),
            flow_len: 0,
            omega,
            t,
            b,
        }
    }

    /// Whether the gradient is truncated: TBPTT with k1 or k2 shorter than the window.
    pub fn truncates(&self, t: usize) -> bool {
        self.k1.min(t) < t || self.k2.min(t) < t
    }

    /// The gradient the last window's update uses (before clipping): the summed truncated
    /// gradient of its loss, plus α ∂Ω/∂W_hh with Pascanu's regulariser.
    pub fn grads(&self) -> &[f32] {
        match &self.omega {
            Some(o) => &o.update,
            None => &self.grads,
        }
    }

    /// [`Engine::grads`], to be clipped in place.
    pub fn grads_mut(&mut self) -> &mut [f32] {
        match &mut self.omega {
            Some(o) => &mut o.update,
            None => &mut self.grads,
        }
    }

    /// Pascanu's Ω of the last window per layer (`None` where no pair counted), or `None`
    /// without the regulariser.
    pub fn omega(&self) -> Option<Vec<Option<f64>>> {
        let o = self.omega.as_ref()?;
        Some(
            (0..self.chunk.shape().layers)
                .map(|l| o.sums.omega(l))
                .collect(),
        )
    }

    /// The state carried into the next window, `h` and `c` `[L][B][H]` (`c` empty for an RNN
    /// and GRU).
    pub fn carried(&self) -> (&[f32], &[f32]) {
        (&self.state.h, &self.state.c)
    }

    /// Sets the carried state (a resumed run's), or says why it does not fit.
    pub fn set_carried(&mut self, h: &[f32], c: &[f32]) -> Result<(), String> {
        let want = (self.state.h.len(), self.state.c.len());
        if (h.len(), c.len()) != want {
            return Err(format!(
                "carried state of sizes {:?}, expected {want:?}",
                (h.len(), c.len())
            ));
        }
        self.state.h.copy_from_slice(h);
        self.state.c.copy_from_slice(c);
        Ok(())
    }

    /// ‖∂L/∂h_t‖ of the last chunk with a loss, `[L][len]`, and `len` (0 before any).
    pub fn flow(&self) -> (&[f32], usize) {
        (self.bp.flow(), self.flow_len)
    }

    /// The loss of `batch` and its truncated gradient (into [`Engine::grads`]), from the
    /// carried state, which it then advances (or resets, for tasks that do not carry it).
    ///
    /// # Panics
    /// If the batch is not of the T time steps and B sequences the engine was made for.
    pub(crate) fn window(&mut self, ctx: Ctx<'_>, batch: &Batch) -> MetricAcc {
        let (t, b) = (batch.time_steps, batch.batch);
        assert_eq!(
            (t, b),
            (self.t, self.b),
            "a training window must have the (time steps, batch) the engine was made for"
        );
        let (k1, k2) = (self.k1.min(t), self.k2.min(t));
        let scale = 1.0 / batch.loss_terms().max(1) as f32;
        let with_loss = batch.targets.loss_range(t, b);
        let times = |s: usize, e: usize, w: usize| {
            with_loss.start.max(s).min(e) - w..with_loss.end.min(e).max(s) - w
        };
        self.grads.fill(0.0);
        self.flow_len = 0;
        if let Some(o) = &mut self.omega {
            o.sums.clear();
        }
        let mut acc = MetricAcc::default();
        self.start.copy_from(&self.state);
        if k1 == k2 {
            for s in (0..t).step_by(k1) {
                let e = (s + k1).min(t);
                let w = if s > 0 {
                    e.saturating_sub(k2).max(s - k1)
                } else {
                    s
                };
                if w < s {
                    // The previous chunk started at s - k1 and stored the state at w.
                    self.state.load(&self.chunk, w - (s - k1));
                }
                self.chunk.resize(e - w, b);
                forward(
                    ctx,
                    &mut self.chunk,
                    batch.x_range(w..e),
                    &self.state.h,
                    &self.state.c,
                );
                self.chunk_loss_grad(ctx, batch, w, times(s, e, w), scale, &mut acc);
                self.state.load(&self.chunk, e - w);
            }
        } else {
            let full = self
                .full
                .as_mut()
                .expect("k1 < k2 <= T: the window has its own workspace");
            forward(ctx, full, &batch.x, &self.state.h, &self.state.c);
            for s in (0..t).step_by(k1) {
                let (e, w) = ((s + k1).min(t), (s + k1).min(t).saturating_sub(k2));
                if times(s, e, w).is_empty() {
                    continue;
                }
                self.scratch
                    .load(self.full.as_ref().expect("made above"), w);
                self.chunk.resize(e - w, b);
                forward(
                    ctx,
                    &mut self.chunk,
                    batch.x_range(w..e),
                    &self.scratch.h,
                    &self.scratch.c,
                );
                self.chunk_loss_grad(ctx, batch, w, times(s, e, w), scale, &mut acc);
            }
            self.state.load(self.full.as_ref().expect("made above"), t);
        }
        if !ctx.task.carries_state() {
            self.state.h.fill(0.0);
            self.state.c.fill(0.0);
        }
        if let Some(o) = &mut self.omega {
            o.update.copy_from_slice(&self.grads);
            let stack = &mut o.update[..ctx.model.stack.num_params()];
            o.sums.add_gradient(o.alpha, stack);
        }
        acc
    }

    /// Loss and gradient of the chunk in `self.chunk` (starting at batch time step `w`), if it
    /// has losses; its flow becomes the window's.
    fn chunk_loss_grad(
        &mut self,
        ctx: Ctx<'_>,
        batch: &Batch,
        w: usize,
        times: std::ops::Range<usize>,
        scale: f32,
        acc: &mut MetricAcc,
    ) {
        if times.is_empty() {
            return;
        }
        let s = Scored {
            batch,
            offset: w,
            times,
        };
        self.bp
            .loss_grad(ctx, &mut self.chunk, s, scale, &mut self.grads, acc);
        self.flow_len = self.chunk.steps();
        if let Some(o) = &mut self.omega {
            let steps = self.chunk.steps();
            o.sums
                .accumulate(ctx.model.stack_params(), steps, &self.chunk, ctx.par);
        }
    }

    /// Runs the whole last window again from the state it started from, in the workspace
    /// the diagnostics read (its output, gates and states); returns it with the window's
    /// truncated gradient of the loss (without the regulariser's).
    pub(crate) fn replay_window(
        &mut self,
        ctx: Ctx<'_>,
        batch: &Batch,
    ) -> (&mut Workspace, &[f32]) {
        let ws = self.full.as_mut().unwrap_or(&mut self.chunk);
        forward(ctx, ws, &batch.x, &self.start.h, &self.start.c);
        (ws, &self.grads)
    }
}
