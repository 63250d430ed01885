//! Evaluation: the task's loss and metric on held-out data with the current parameters (fresh
//! sequences of a synthetic task, the validation text of charlm, the hello sequence). Batches
//! are generated one at a time into one workspace, so an evaluation of 10,000 long sequences
//! holds one batch in memory, not all of them.

use gradlab_kernels::rnn::Workspace;
use gradlab_kernels::StackShape;

use super::engine::{forward, Ctx};
use crate::model::head::{head_loss, HeadScratch, LossWindow};
use crate::task::MetricAcc;

/// Sequences of the final evaluation of the synthetic tasks (DESIGN.md success criteria).
pub const FINAL_EVAL_SEQUENCES: usize = 10_000;

/// Sequences per evaluation batch, at least.
pub(crate) const EVAL_BATCH: usize = 64;

/// The evaluation's buffers, made on first use and reused.
#[derive(Debug)]
pub struct Evaluator {
    /// Sequences per batch of the synthetic tasks.
    batch: usize,
    ws: Option<Workspace>,
    head: HeadScratch,
    h: Vec<f32>,
    c: Vec<f32>,
}

impl Evaluator {
    /// Evaluates in batches of [`batch_size`]`(train_batch)` sequences.
    pub fn new(train_batch: usize) -> Self {
        Evaluator {
            batch: batch_size(train_batch),
            ws: None,
            head: HeadScratch::default(),
            h: Vec::new(),
            c: Vec::new(),
        }
    }

    /// The task's loss and metric counts on `n` sequences (see
    /// [`crate::task::Task::evaluation_batches`]); the model is not changed.
    pub(crate) fn evaluate(&mut self, ctx: Ctx<'_>, n: usize, seed: u64) -> MetricAcc {
        let stack = ctx.model.stack;
        let carry = ctx.task.carries_state();
        let mut acc = MetricAcc::default();
        let mut fresh = true;
        for batch in ctx.task.evaluation_batches(n, self.batch, seed) {
            let (t, b) = (batch.time_steps, batch.batch);
            let ws = self.ws.get_or_insert_with(|| Workspace::new(stack, t, b));
            ws.resize(t, b);
            if fresh || !carry || self.h.len() != state_len(stack, b) {
                zero_state(stack, b, &mut self.h, &mut self.c);
                fresh = false;
            }
            forward(ctx, ws, &batch.x, &self.h, &self.c);
            let w = LossWindow {
                y: ws.output(),
                targets: &batch.targets,
                offset: 0,
                batch: b,
                times: batch.targets.loss_range(t, b),
            };
            head_loss(
                ctx.model,
                ctx.task,
                w,
                &mut self.head,
                &mut acc,
                None,
                ctx.par,
            );
            if carry {
                ws.state_into(t, &mut self.h, &mut self.c);
            }
        }
        acc
    }
}

/// Sequences per evaluation batch of a run that trains on batches of `train_batch`: as many, or
/// [`EVAL_BATCH`] if that is more.
pub(crate) fn batch_size(train_batch: usize) -> usize {
    train_batch.max(EVAL_BATCH)
}

fn state_len(stack: StackShape, b: usize) -> usize {
    stack.layers * b * stack.hidden
}

fn zero_state(stack: StackShape, b: usize, h: &mut Vec<f32>, c: &mut Vec<f32>) {
    let n = state_len(stack, b);
    h.clear();
    h.resize(n, 0.0);
    c.clear();
    c.resize(if stack.cell.has_cell_state() { n } else { 0 }, 0.0);
}
