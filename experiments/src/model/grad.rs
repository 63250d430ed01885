//! `gradlab grad`: forward and backward of a stack on given tensors, for cross-checking against
//! any framework. Reads PyTorch-named weights and `input`, `h0`, `c0`, `grad_output`,
//! `grad_h_n`, `grad_c_n`; writes `output`, `h_n`, `c_n` and the gradients `grad.input`,
//! `grad.h0`, `grad.c0`, `grad.<parameter>`: what
//! `torch.autograd.backward((output, h_n, c_n), (grad_output, grad_h_n, grad_c_n))` gives.

use std::collections::HashMap;
use std::path::Path;

use gradlab_kernels::rnn::{self, Grads, OutputGrads, Workspace};
use gradlab_kernels::{Par, StackShape};

use super::checkpoint::{save_tensors, CheckpointError, TensorFile};

/// Why the gradient tool could not run.
#[derive(Debug, thiserror::Error)]
pub enum GradError {
    #[error(transparent)]
    File(#[from] CheckpointError),
    #[error("{path}: '{name}' has shape {got:?}; {want}")]
    Shape {
        path: String,
        name: String,
        got: Vec<usize>,
        want: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Runs forward and backward of a stack of `shape` on `par` and writes the result to `out`.
pub fn grad(
    shape: StackShape,
    weights: &Path,
    inputs: &Path,
    out: &Path,
    par: Par,
) -> Result<(), GradError> {
    let w = TensorFile::read(weights)?;
    let params = w.stack_params(shape)?;
    w.refuse_others(
        &w.stack_names(shape)?,
        &format!("a {}-layer stack (--layers {})", shape.layers, shape.layers),
    )?;
    let x_file = TensorFile::read(inputs)?;
    let ip = inputs.display().to_string();
    let dims = x_file.shape("input")?;
    let [t, b, i] = dims[..] else {
        return Err(GradError::Shape {
            path: ip,
            name: "input".into(),
            got: dims,
            want: "expected (T, B, I)".into(),
        });
    };
    if i != shape.input {
        return Err(GradError::Shape {
            path: ip,
            name: "input".into(),
            got: dims,
            want: format!("I must be --input-size = {}", shape.input),
        });
    }
    let (l, h) = (shape.layers, shape.hidden);
    let lstm = shape.cell.has_cell_state();
    let x = x_file.f32("input", &[t, b, i])?;
    let opt = |name: &str, dims: &[usize]| -> Result<Option<Vec<f32>>, CheckpointError> {
        if x_file.has(name) {
            x_file.f32(name, dims).map(Some)
        } else {
            Ok(None)
        }
    };
    let h0 = opt("h0", &[l, b, h])?;
    let c0 = if lstm { opt("c0", &[l, b, h])? } else { None };
    let dy = x_file.f32("grad_output", &[t, b, h])?;
    let dh_n = opt("grad_h_n", &[l, b, h])?;
    let dc_n = if lstm {
        opt("grad_c_n", &[l, b, h])?
    } else {
        None
    };

    let mut ws = Workspace::new(shape, t, b);
    rnn::forward(&params, &x, h0.as_deref(), c0.as_deref(), &mut ws, par);
    let y = ws.output().to_vec();
    let (h_n, c_n) = ws.state(t);
    let mut g = vec![0.0; params.len()];
    let (mut dx, mut dh0) = (vec![0.0; x.len()], vec![0.0; l * b * h]);
    let mut dc0 = vec![0.0; if lstm { l * b * h } else { 0 }];
    let mut flow = vec![0.0; l * t];
    let grads = Grads {
        params: &mut g,
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
    rnn::backward(&params, &x, loss, t, &mut ws, grads, par);

    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = vec![
        ("output".into(), vec![t, b, h], &y),
        ("h_n".into(), vec![l, b, h], &h_n),
        ("grad.input".into(), vec![t, b, i], &dx),
        ("grad.h0".into(), vec![l, b, h], &dh0),
    ];
    if lstm {
        tensors.push(("c_n".into(), vec![l, b, h], &c_n));
        tensors.push(("grad.c0".into(), vec![l, b, h], &dc0));
    }
    for (name, dims, range) in shape.param_names() {
        tensors.push((format!("grad.{name}"), dims, &g[range]));
    }
    save_tensors(out, &tensors, HashMap::new()).map_err(|source| GradError::Write {
        path: out.display().to_string(),
        source,
    })
}
