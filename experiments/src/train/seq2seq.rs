//! Training the encoder-decoder (`model = "seq2seq"`). One update is one batch of fresh
//! (source, target) pairs: the encoder reads the source from the zero state; its final (h, c)
//! of every layer starts the decoder, which reads the start symbol and then the target shifted
//! by one (teacher forcing); the loss is the head's cross-entropy on every target symbol and
//! the end symbol, averaged over those terms. The gradient goes back through the head and the
//! whole decoder, across the bottleneck (the gradient of the decoder's initial state is that of
//! the encoder's final state), and into the encoder.
//!
//! Truncation (`truncation = k`) is the encoder's: its backward stops k steps before the end of
//! the source, so its parameters see the last k source steps only, and the gradient reaching
//! further back is dropped. The decoder is always backpropagated whole (its loss is at every
//! step and no state is carried in from before it). k ≥ T_src is exactly full backpropagation.
//!
//! On a logged update: the gradient flow ‖∂L/∂h_t‖ of every layer at every decoder step
//! (`decoder`, lag = steps before the end of the decoder's window) and at every encoder step
//! without truncation (`encoder`, lag = steps before the end of the source: the distance from
//! the decoder), the truncation bias against the untruncated gradient, and the per-layer
//! statistics of both stacks (the encoder's layers first). Evaluation: the teacher-forced loss,
//! and the exact-match rate of greedy decoding from the start symbol (no teacher forcing).

use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::rnn::{self, Grads, OutputGrads, Workspace};
use gradlab_kernels::{Cell, StackShape};

use super::diagnostics::{layer_stats, truncation_bias};
use super::engine::{self, Ctx};
use super::eval;
use super::record::{push_flow, FlowRow, FlowSource, StepRow};
use crate::model::head::{head_loss, HeadGrad, HeadScratch, LossWindow};
use crate::model::sample::Decoding;
use crate::model::seq2seq::{encode, Seq2SeqDecoder};
use crate::model::Model;
use crate::task::seq2seq::exact_matches;
use crate::task::{Batch, MetricAcc, Targets};

/// The encoder's and the decoder's workspaces and the state between them, for batches of B
/// sequences.
#[derive(Debug)]
struct Pass {
    encoder: Workspace,
    decoder: Workspace,
    /// The encoder's final state, the decoder's initial one, `[L][B][H]` (`c` empty unless
    /// LSTM).
    h: Vec<f32>,
    c: Vec<f32>,
}

impl Pass {
    fn new(model: &Model, (t_src, t_dec): (usize, usize), b: usize) -> Self {
        let (encoder, decoder) = (encoder_shape(model), model.stack);
        let lbh = decoder.layers * b * decoder.hidden;
        Pass {
            encoder: Workspace::new(encoder, t_src, b),
            decoder: Workspace::new(decoder, t_dec, b),
            h: vec![0.0; lbh],
            c: vec![0.0; if decoder.cell == Cell::Lstm { lbh } else { 0 }],
        }
    }

    /// Re-dimensions for a batch of `b` sequences.
    fn resize(&mut self, b: usize) {
        let s = self.decoder.shape();
        let (t_src, t_dec) = (self.encoder.steps(), self.decoder.steps());
        self.encoder.resize(t_src, b);
        self.decoder.resize(t_dec, b);
        let lbh = s.layers * b * s.hidden;
        self.h.resize(lbh, 0.0);
        self.c
            .resize(if s.cell == Cell::Lstm { lbh } else { 0 }, 0.0);
    }

    /// The encoder over the batch's source from zero, then the decoder over its teacher-forced
    /// inputs from the encoder's final state.
    fn forward(&mut self, ctx: Ctx<'_>, batch: &Batch) {
        let source = batch.source.as_ref().expect("a seq2seq batch has a source");
        assert_eq!(
            (source.time_steps, batch.time_steps, batch.batch),
            (
                self.encoder.steps(),
                self.decoder.steps(),
                self.decoder.batch()
            ),
            "a seq2seq batch must have the (T_src, T_dec, B) its workspaces were made for"
        );
        encode(
            ctx.model,
            &mut self.encoder,
            &source.x,
            &mut self.h,
            &mut self.c,
            ctx.par,
        );
        engine::forward(ctx, &mut self.decoder, &batch.x, &self.h, &self.c);
    }

    fn loss_window<'a>(&'a self, batch: &'a Batch) -> LossWindow<'a> {
        let (t, b) = (batch.time_steps, batch.batch);
        LossWindow {
            y: self.decoder.output(),
            targets: &batch.targets,
            offset: 0,
            batch: b,
            times: batch.targets.loss_range(t, b),
        }
    }
}

fn encoder_shape(model: &Model) -> StackShape {
    model.encoder.expect("a seq2seq model has an encoder")
}

/// The loss and gradient of seq2seq batches of B sequences, its diagnostics and evaluation.
#[derive(Debug)]
pub(crate) struct Seq2SeqEngine {
    /// Encoder steps backpropagated (`truncation`, clamped to T_src).
    k: usize,
    pass: Pass,
    head: HeadScratch,
    /// The decoder's output gradient `[T_dec][B][H]`, and the encoder's (zero: no loss reads
    /// it) `[T_src][B][H]`.
    dy: Vec<f32>,
    dy_encoder: Vec<f32>,
    /// The gradient of the decoder's initial state, the encoder's final one, `[L][B][H]`.
    dh: Vec<f32>,
    dc: Vec<f32>,
    /// The gradient of the encoder's initial state (not used: it starts from zero).
    dh0: Vec<f32>,
    dc0: Vec<f32>,
    /// Not computed: training needs no input gradient.
    dx: Vec<f32>,
    /// The gradient of the last batch, in the model's layout (decoder, head, encoder).
    grads: Vec<f32>,
    /// The untruncated gradient of the last diagnosed batch.
    full: Vec<f32>,
    /// ‖∂L/∂h_t‖ of the last backward, `[L][T_dec]` and `[L][T_src]` (zero beyond truncation).
    decoder_flow: Vec<f32>,
    encoder_flow: Vec<f32>,
    /// The untruncated encoder flow of the last diagnosed batch, `[L][T_src]`, and T_src (0
    /// before the first).
    profile: Vec<f32>,
    profile_len: usize,
    eval: Option<Pass>,
    eval_batch: usize,
    decoder: Seq2SeqDecoder,
}

impl Seq2SeqEngine {
    /// An engine for `model` on batches of `b` sequences of `(T_src, T_dec)` steps whose
    /// encoder backpropagates its last `k` steps.
    pub fn new(model: &Model, steps: (usize, usize), b: usize, k: usize) -> Self {
        let (t_src, t_dec) = steps;
        let s = model.stack;
        let lbh = s.layers * b * s.hidden;
        let c_len = if s.cell == Cell::Lstm { lbh } else { 0 };
        Seq2SeqEngine {
            k: k.min(t_src),
            pass: Pass::new(model, steps, b),
            head: HeadScratch::default(),
            dy: vec![0.0; t_dec * b * s.hidden],
            dy_encoder: vec![0.0; t_src * b * s.hidden],
            dh: vec![0.0; lbh],
            dc: vec![0.0; c_len],
            dh0: vec![0.0; lbh],
            dc0: vec![0.0; c_len],
            dx: Vec::new(),
            grads: vec![0.0; model.params.len()],
            full: vec![0.0; model.params.len()],
            decoder_flow: vec![0.0; s.layers * t_dec],
            encoder_flow: vec![0.0; s.layers * t_src],
            profile: vec![0.0; s.layers * t_src],
            profile_len: 0,
            eval: None,
            eval_batch: eval::batch_size(b),
            decoder: Seq2SeqDecoder::default(),
        }
    }

    /// The gradient of the last batch (before clipping).
    pub fn grads(&self) -> &[f32] {
        &self.grads
    }

    /// The gradient, to be clipped in place.
    pub fn grads_mut(&mut self) -> &mut [f32] {
        &mut self.grads
    }

    /// The untruncated encoder flow of the last logged update, `[L][T_src]`, and T_src (0
    /// before any).
    pub fn profile(&self) -> (&[f32], usize) {
        (&self.profile, self.profile_len)
    }

    /// Puts back what [`Seq2SeqEngine::profile`] returned (a resumed run's), or says why it
    /// does not fit.
    pub fn set_profile(&mut self, profile: &[f32], len: usize) -> Result<(), String> {
        if profile.len() != self.profile.len() {
            return Err(format!(
                "encoder flow of {} values, expected {}",
                profile.len(),
                self.profile.len()
            ));
        }
        self.profile.copy_from_slice(profile);
        self.profile_len = len;
        Ok(())
    }

    /// The mean loss of `batch` and its gradient (into [`Seq2SeqEngine::grads`]), the
    /// encoder's truncated to its last k steps.
    pub fn window(&mut self, ctx: Ctx<'_>, batch: &Batch) -> MetricAcc {
        let model = ctx.model;
        self.pass.forward(ctx, batch);
        self.grads.fill(0.0);
        self.dy.fill(0.0);
        let mut acc = MetricAcc::default();
        let (_, head_b) = model.head_ranges();
        let n_dec = model.stack.num_params();
        let (decoder, rest) = self.grads.split_at_mut(n_dec);
        let (head, _) = rest.split_at_mut(head_b.end - n_dec);
        let grad = HeadGrad {
            scale: 1.0 / batch.loss_terms().max(1) as f32,
            dy: &mut self.dy,
            dhead: head,
        };
        let w = self.pass.loss_window(batch);
        head_loss(
            model,
            ctx.task,
            w,
            &mut self.head,
            &mut acc,
            Some(grad),
            ctx.par,
        );
        let loss = OutputGrads {
            dy: &self.dy,
            dh_n: None,
            dc_n: None,
        };
        let out = Grads {
            params: decoder,
            dx: &mut self.dx,
            dh0: &mut self.dh,
            dc0: &mut self.dc,
            flow: &mut self.decoder_flow,
        };
        let t_dec = batch.time_steps;
        let x = &batch.x;
        rnn::backward(
            model.stack_params(),
            x,
            loss,
            t_dec,
            &mut self.pass.decoder,
            out,
            ctx.par,
        );
        self.backward_encoder(ctx, batch, false);
        acc
    }

    /// The encoder's backward from the gradient of its final state (in `dh`, `dc`): over its
    /// last k steps into the gradient and `encoder_flow`, or (`untruncated`) over every step
    /// into `full` and `profile`.
    fn backward_encoder(&mut self, ctx: Ctx<'_>, batch: &Batch, untruncated: bool) {
        let model = ctx.model;
        let range = model
            .encoder_range()
            .expect("a seq2seq model has an encoder");
        let source = batch.source.as_ref().expect("a seq2seq batch has a source");
        let (grads, flow, steps) = if untruncated {
            (&mut self.full, &mut self.profile, source.time_steps)
        } else {
            (&mut self.grads, &mut self.encoder_flow, self.k)
        };
        let lstm = model.stack.cell == Cell::Lstm;
        let loss = OutputGrads {
            dy: &self.dy_encoder,
            dh_n: Some(&self.dh),
            dc_n: lstm.then_some(&self.dc[..]),
        };
        let out = Grads {
            params: &mut grads[range.clone()],
            dx: &mut self.dx,
            dh0: &mut self.dh0,
            dc0: &mut self.dc0,
            flow,
        };
        rnn::backward(
            &model.params[range],
            &source.x,
            loss,
            steps,
            &mut self.pass.encoder,
            out,
            ctx.par,
        );
    }

    /// Fills the diagnostic columns of `row` for the update that trained on `batch` (the last
    /// [`Seq2SeqEngine::window`]) and appends the `encoder` and `decoder` flow to `flow`.
    pub fn diagnose(
        &mut self,
        ctx: Ctx<'_>,
        batch: &Batch,
        row: &mut StepRow,
        flow: &mut Vec<FlowRow>,
    ) {
        let (t_src, t_dec) = (self.pass.encoder.steps(), batch.time_steps);
        (row.trunc_cosine, row.trunc_norm_ratio) = if self.k < t_src {
            self.full.copy_from_slice(&self.grads);
            self.backward_encoder(ctx, batch, true);
            let (cos, ratio) = truncation_bias(&self.grads, &self.full);
            (Some(cos), Some(ratio))
        } else {
            self.profile.copy_from_slice(&self.encoder_flow);
            (Some(1.0), Some(1.0))
        };
        self.profile_len = t_src;
        push_flow(flow, row.step, &self.profile, t_src, FlowSource::Encoder);
        push_flow(
            flow,
            row.step,
            &self.decoder_flow,
            t_dec,
            FlowSource::Decoder,
        );
        let model = ctx.model;
        let encoder = model
            .encoder_params()
            .expect("a seq2seq model has an encoder");
        layer_stats(encoder_shape(model), encoder, &self.pass.encoder, row);
        layer_stats(model.stack, model.stack_params(), &self.pass.decoder, row);
    }

    /// The teacher-forced loss and the greedy decoding's exact matches on `n` evaluation
    /// sequences (see [`crate::task::Task::evaluation_batches`]); the model is not changed.
    pub fn evaluate(&mut self, ctx: Ctx<'_>, n: usize, seed: u64) -> MetricAcc {
        let mut acc = MetricAcc::default();
        // Greedy decoding draws nothing.
        let mut rng = SplitMix64(0);
        let steps = (self.pass.encoder.steps(), self.pass.decoder.steps());
        for batch in ctx.task.evaluation_batches(n, self.eval_batch, seed) {
            let b = batch.batch;
            let pass = self
                .eval
                .get_or_insert_with(|| Pass::new(ctx.model, steps, b));
            pass.resize(b);
            pass.forward(ctx, &batch);
            head_loss(
                ctx.model,
                ctx.task,
                pass.loss_window(&batch),
                &mut self.head,
                &mut acc,
                None,
                ctx.par,
            );
            let ids = self.decoder.decode_from(
                ctx.model,
                (&pass.h, &pass.c),
                batch.time_steps,
                Decoding::Argmax,
                &mut rng,
                ctx.par,
            );
            let Targets::Classes(labels) = &batch.targets else {
                unreachable!("seq2seq targets are classes")
            };
            acc.correct += exact_matches(ids, labels, b);
            acc.scored += b;
        }
        acc
    }
}
