//! The GRU against PyTorch's nn.GRU: forward and backward of a 1-layer and a 2-layer stack on
//! the committed fixture `fixtures/gru_pytorch.safetensors` (written by
//! `scripts/gru_parity_fixture.py`: PyTorch's parameters, input, h0, and what nn.GRU computes in
//! float64 for them: output, h_n and the gradients of `<output, grad_output> + <h_n, grad_h_n>`
//! with respect to the input, h0 and every parameter). The f32 kernels and the f64 reference
//! must both match every tensor to a norm-wise relative error of 1e-5 or better, with the
//! parameters read under PyTorch's names and used unchanged.

mod common;

use common::{rel_err, run_kernels, Problem};
use gradlab_kernels::reference;
use gradlab_kernels::rnn::OutputGrads;
use gradlab_kernels::{Cell, Par, StackShape};
use safetensors::{Dtype, SafeTensors};

const FIXTURE: &[u8] = include_bytes!("fixtures/gru_pytorch.safetensors");
const TOL: f64 = 1e-5;

/// Tensor `name` of the fixture as f64, with its shape.
fn tensor(file: &SafeTensors<'_>, name: &str) -> (Vec<f64>, Vec<usize>) {
    let t = file
        .tensor(name)
        .unwrap_or_else(|e| panic!("fixture lacks {name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    (v, t.shape().to_vec())
}

/// The fixture's case `prefix` as a problem whose probe loss is the fixture's loss.
fn problem(file: &SafeTensors<'_>, prefix: &str) -> Problem {
    let get = |n: &str| tensor(file, &format!("{prefix}.{n}"));
    let (x, xs) = get("input");
    let (h0, hs) = get("h0");
    let (layers, b, hidden) = (hs[0], hs[1], hs[2]);
    let shape = StackShape {
        cell: Cell::Gru,
        input: xs[2],
        hidden,
        layers,
    };
    // The flat parameters, tensor by tensor under PyTorch's names and shapes.
    let mut params = vec![f64::NAN; shape.num_params()];
    for (name, dims, range) in shape.param_names() {
        let (v, got) = get(&name);
        assert_eq!(got, dims, "{prefix}.{name}: shape");
        params[range].copy_from_slice(&v);
    }
    assert!(
        params.iter().all(|v| v.is_finite()),
        "{prefix}: every parameter is set"
    );
    Problem {
        shape,
        t: xs[0],
        b,
        params,
        x,
        h0: Some(h0),
        c0: None,
        dy: get("grad_output").0,
        dh_n: Some(get("grad_h_n").0),
        dc_n: None,
    }
}

/// The norm-wise relative errors of `got` against the fixture's tensors, by name; asserts each.
fn check(file: &SafeTensors<'_>, prefix: &str, who: &str, got: &[(String, Vec<f64>)]) -> f64 {
    let mut worst = 0.0f64;
    for (name, v) in got {
        let (want, _) = tensor(file, &format!("{prefix}.{name}"));
        let e = rel_err(v, &want);
        println!("{prefix} {who:<9} {name:<22} rel err {e:.2e}");
        assert!(e <= TOL, "{prefix} {who} {name}: rel err {e:e} > {TOL:e}");
        worst = worst.max(e);
    }
    worst
}

/// `output`, `h_n` and the `grad.*` tensors from a forward's output and final states and a
/// backward's gradients.
fn named(p: &Problem, y: Vec<f64>, h_n: Vec<f64>, g: [Vec<f64>; 3]) -> Vec<(String, Vec<f64>)> {
    let [params, dx, dh0] = g;
    let mut all = vec![
        ("output".to_string(), y),
        ("h_n".to_string(), h_n),
        ("grad.input".to_string(), dx),
        ("grad.h0".to_string(), dh0),
    ];
    for (name, _, range) in p.shape.param_names() {
        all.push((format!("grad.{name}"), params[range].to_vec()));
    }
    all
}

#[test]
fn gru_kernels_and_reference_match_pytorch_nn_gru() {
    let file = SafeTensors::deserialize(FIXTURE).expect("the fixture is a safetensors file");
    for prefix in ["l1", "l2"] {
        let p = problem(&file, prefix);
        assert_eq!(p.shape.layers, if prefix == "l1" { 1 } else { 2 });

        let k = run_kernels(&p, usize::MAX, Par::Seq);
        let worst_f32 = check(
            &file,
            prefix,
            "kernels",
            &named(&p, k.y, k.h_n, [k.grads, k.dx, k.dh0]),
        );

        let tr = reference::forward(p.shape, &p.params, &p.x, p.h0.as_deref(), None, p.t, p.b);
        let loss = OutputGrads {
            dy: &p.dy[..],
            dh_n: p.dh_n.as_deref(),
            dc_n: None,
        };
        let g = reference::backward(p.shape, &p.params, &p.x, &tr, loss, usize::MAX);
        let h_n = (0..p.shape.layers)
            .flat_map(|l| tr.h_n(l).to_vec())
            .collect();
        let worst_f64 = check(
            &file,
            prefix,
            "reference",
            &named(&p, tr.output().to_vec(), h_n, [g.params, g.dx, g.dh0]),
        );
        println!(
            "{prefix}: largest rel err, f32 kernels {worst_f32:.2e}, f64 reference {worst_f64:.2e}"
        );
        // The f64 reference differs from the fixture by its float32 rounding only.
        assert!(worst_f64 < 1e-6, "{prefix}: f64 reference {worst_f64:e}");
    }
}
