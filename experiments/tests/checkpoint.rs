//! Checkpoints from PyTorch: state dicts of larger models (module prefixes, a head with its
//! own name) load; bidirectional, projected or extra tensors are refused, named.

use std::path::{Path, PathBuf};

use gradlab_experiments::model::checkpoint::{self, save_tensors, TensorFile};
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::{Cell, StackShape};

const SHAPE: StackShape = StackShape {
    cell: Cell::Lstm,
    input: 3,
    hidden: 4,
    layers: 1,
};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradlab-ck-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("w.safetensors")
}

/// The stack's tensors under `prefix` and a head `head.weight`/`head.bias` under `head`, plus
/// `extra` tensors; returns the stack's flat parameters and the head's weight.
fn write(
    path: &Path,
    shape: StackShape,
    prefix: &str,
    head: &str,
    extra: &[(&str, Vec<usize>)],
) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SplitMix64(3);
    let params = rng.vec_f32(shape.num_params(), 0.5);
    let head_w = rng.vec_f32(2 * shape.hidden, 0.5);
    let head_b = rng.vec_f32(2, 0.5);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = shape
        .param_names()
        .into_iter()
        .map(|(n, dims, r)| (format!("{prefix}{n}"), dims, params[r].to_vec()))
        .collect();
    if !head.is_empty() {
        tensors.push((
            format!("{head}weight"),
            vec![2, shape.hidden],
            head_w.clone(),
        ));
        tensors.push((format!("{head}bias"), vec![2], head_b));
    }
    for (name, dims) in extra {
        let n = dims.iter().product();
        tensors.push((name.to_string(), dims.clone(), vec![0.0; n]));
    }
    let views: Vec<(String, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(n, d, v)| (n.clone(), d.clone(), &v[..]))
        .collect();
    save_tensors(path, &views, Default::default()).unwrap();
    (params, head_w)
}

#[test]
fn state_dicts_with_a_module_prefix_and_a_named_head_load() {
    let cases = [
        ("", "head."),
        ("rnn.", "linear."),
        ("lstm.", "fc."),
        ("module.rnn.", "module.decoder."),
    ];
    for (prefix, head) in cases {
        let path = tmp("prefix");
        let (params, head_w) = write(&path, SHAPE, prefix, head, &[]);
        let ck = checkpoint::load(&path).unwrap_or_else(|e| panic!("{prefix:?} + {head:?}: {e}"));
        assert_eq!(ck.model.stack, SHAPE);
        assert_eq!(ck.model.stack_params(), &params[..], "{prefix:?}");
        let (w, _) = ck.model.head_ranges();
        assert_eq!(&ck.model.params[w], &head_w[..], "{head:?}");
        // The stack alone (what `gradlab grad` reads) loads under the same prefix.
        let file = TensorFile::read(&path).unwrap();
        assert_eq!(file.stack_params(SHAPE).unwrap(), params);
    }
}

fn load_error(prefix: &str, head: &str, extra: &[(&str, Vec<usize>)]) -> String {
    let path = tmp("refuse");
    write(&path, SHAPE, prefix, head, extra);
    checkpoint::load(&path)
        .map(|_| ())
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn bidirectional_projected_and_extra_tensors_are_refused_by_name() {
    let e = load_error("rnn.", "fc.", &[("rnn.weight_ih_l0_reverse", vec![16, 3])]);
    assert!(
        e.contains("bidirectional") && e.contains("rnn.weight_ih_l0_reverse"),
        "{e}"
    );
    let e = load_error("", "head.", &[("weight_hr_l0", vec![2, 4])]);
    assert!(
        e.contains("projection") && e.contains("weight_hr_l0"),
        "{e}"
    );
    let e = load_error("", "head.", &[("embedding.weight", vec![10, 3])]);
    assert!(e.contains("embedding.weight"), "{e}");
    let e = load_error("", "", &[]);
    assert!(e.contains("no output head"), "{e}");
    // Two stacks: which one is meant is not guessed.
    let e = load_error(
        "enc.",
        "head.",
        &[
            ("dec.weight_ih_l0", vec![16, 3]),
            ("dec.weight_hh_l0", vec![16, 4]),
        ],
    );
    assert!(e.contains("several recurrent stacks"), "{e}");
    // A state dict that is not a recurrent stack says what it holds.
    let path = tmp("none");
    let w = [0.0f32; 4];
    save_tensors(
        &path,
        &[("conv.weight".into(), vec![2, 2], &w[..])],
        Default::default(),
    )
    .unwrap();
    let e = checkpoint::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("conv.weight") && e.contains("weight_ih_l0"),
        "{e}"
    );
}

/// Two layers given to a one-layer stack used to run on the first layer alone.
#[test]
fn layers_beyond_the_shape_are_refused() {
    let path = tmp("layers");
    let two = StackShape { layers: 2, ..SHAPE };
    write(&path, two, "", "", &[]);
    let file = TensorFile::read(&path).unwrap();
    let e = file.stack_params(SHAPE).unwrap_err().to_string();
    assert!(
        e.contains("holds 2 layers") && e.contains("weight_ih_l1") && e.contains("--layers 2"),
        "{e}"
    );
    assert!(file.stack_params(two).is_ok());
}
