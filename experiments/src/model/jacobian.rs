//! Step Jacobians of the recurrence, from the values a forward pass stored.
//!
//! The Jacobian of layer `l` at time step `t` is `∂s_t/∂s_{t−1}` of the layer's own state `s`
//! (`h` for a vanilla RNN; the joint `(h, c)` of an LSTM, `h` first), its input from the layer
//! below held fixed. It is built in f64 from the activations the kernels stored for backward and
//! `W_hh`, so it is the Jacobian of exactly the computation that was run, with no finite
//! differences:
//!
//! - RNN: `J = diag(φ′) W_hh`, with `φ′ = 1 − h_t²` (tanh) or `[h_t > 0]` (relu);
//! - LSTM (gates i, f, g, o; `τ = tanh(c_t)`): with `W_x` the gate-x block of `W_hh`,
//!   `∂c/∂h = diag(c_{t−1} f(1−f)) W_f + diag(g i(1−i)) W_i + diag(i (1−g²)) W_g`,
//!   `∂h/∂h = diag(τ o(1−o)) W_o + diag(o (1−τ²)) ∂c/∂h`, `∂c/∂c = diag(f)` and
//!   `∂h/∂c = diag(o (1−τ²) f)`;
//! - GRU (gates r, z, n; `q = W_hn h_{t−1} + b_hn`, stored by the forward):
//!   `J = diag(z) + diag((1−z)(1−n²)) (diag(r) W_hn + diag(q r(1−r)) W_hr)
//!   + diag((h_{t−1} − n) z(1−z)) W_hz`.

use gradlab_kernels::rnn::Workspace;
use gradlab_kernels::{Activation, Cell, StackShape};

/// Dimension of one layer's recurrent state: `H`, or `2H` for an LSTM's joint `(h, c)`.
pub fn state_dim(cell: Cell, hidden: usize) -> usize {
    match cell {
        Cell::Lstm => 2 * hidden,
        Cell::Rnn(_) | Cell::Gru => hidden,
    }
}

/// Writes into `out` (`n × n` row-major, `n = state_dim`) the step Jacobian `∂s_t/∂s_{t−1}` of
/// layer `l` at time step `t` (0-based) of batch row `row` of the last forward pass in `ws`,
/// whose recurrent weights are `w_hh` (`(G·H, H)`).
///
/// # Panics
/// If `t`, `row` or `l` is outside the forward in `ws`, or a slice has the wrong length.
pub fn step_jacobian(
    stack: StackShape,
    w_hh: &[f32],
    ws: &Workspace,
    (l, t, row): (usize, usize, usize),
    out: &mut [f64],
) {
    let h = stack.hidden;
    let n = state_dim(stack.cell, h);
    assert_eq!(out.len(), n * n, "step_jacobian: out must be {n} × {n}");
    assert_eq!(
        w_hh.len(),
        stack.cell.gates() * h * h,
        "step_jacobian: W_hh is (G·H, H)"
    );
    assert!(
        t < ws.steps() && row < ws.batch(),
        "step_jacobian: (t, row) = ({t}, {row}) is outside the forward"
    );
    let units = row * h..(row + 1) * h;
    let ht = &ws.h_at(l, t + 1)[units.clone()];
    match stack.cell {
        Cell::Rnn(act) => {
            for (i, (o, w)) in out
                .chunks_exact_mut(h)
                .zip(w_hh.chunks_exact(h))
                .enumerate()
            {
                let y = f64::from(ht[i]);
                let d = match act {
                    Activation::Tanh => 1.0 - y * y,
                    Activation::Relu => f64::from(u8::from(y > 0.0)),
                };
                for (o, &w) in o.iter_mut().zip(w) {
                    *o = d * f64::from(w);
                }
            }
        }
        Cell::Lstm => {
            let gates = &ws.gates(l)[(t * ws.batch() + row) * 4 * h..][..4 * h];
            let c_prev = &ws.c_at(l, t)[units.clone()];
            let c = &ws.c_at(l, t + 1)[units];
            let w = |gate: usize, j: usize| &w_hh[(gate * h + j) * h..][..h];
            out.fill(0.0);
            for j in 0..h {
                let [i, f, g, o] = [0, 1, 2, 3].map(|k| f64::from(gates[k * h + j]));
                let tau = f64::from(c[j]).tanh();
                let (ci, cf, cg) = (
                    g * i * (1.0 - i),
                    f64::from(c_prev[j]) * f * (1.0 - f),
                    i * (1.0 - g * g),
                );
                let (ho, hc) = (tau * o * (1.0 - o), o * (1.0 - tau * tau));
                let (dh_row, dc_row) = (j * n, (h + j) * n);
                for k in 0..h {
                    let dc_dh = cf * f64::from(w(1, j)[k])
                        + ci * f64::from(w(0, j)[k])
                        + cg * f64::from(w(2, j)[k]);
                    out[dc_row + k] = dc_dh;
                    out[dh_row + k] = ho * f64::from(w(3, j)[k]) + hc * dc_dh;
                }
                out[dc_row + h + j] = f;
                out[dh_row + h + j] = hc * f;
            }
        }
        Cell::Gru => {
            let gates = &ws.gates(l)[(t * ws.batch() + row) * 4 * h..][..4 * h];
            let h_prev = &ws.h_at(l, t)[units];
            let w = |gate: usize, j: usize| &w_hh[(gate * h + j) * h..][..h];
            for j in 0..h {
                let [r, z, n, q] = [0, 1, 2, 3].map(|k| f64::from(gates[k * h + j]));
                let dn = (1.0 - z) * (1.0 - n * n);
                let (via_n, via_r) = (dn * r, dn * q * r * (1.0 - r));
                let via_z = (f64::from(h_prev[j]) - n) * z * (1.0 - z);
                let (wr, wz, wn) = (w(0, j), w(1, j), w(2, j));
                for (k, o) in out[j * h..(j + 1) * h].iter_mut().enumerate() {
                    *o = via_n * f64::from(wn[k])
                        + via_r * f64::from(wr[k])
                        + via_z * f64::from(wz[k]);
                }
                out[j * h + j] += z;
            }
        }
    }
}
