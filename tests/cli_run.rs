//! `gradlab run`, `sample` and `grad` as a user runs them: files written, results readable,
//! finite-difference agreement, and clear errors for bad flags and files.

mod common;

use std::path::{Path, PathBuf};

use common::{gradlab, text, tmpdir};

use gradlab_experiments::store::read_parquet;
use gradlab_kernels::reference;
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::{Cell, StackShape};

fn files(dir: &Path, sub: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join(sub))
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn run_writes_parquet_results_and_a_checkpoint() {
    let dir = tmpdir("run");
    let out = dir.join("adding");
    let out_s = out.to_str().unwrap();
    let cfg = dir.join("run.toml");
    std::fs::write(&cfg, "task = 'adding'\nseq_len = 20\nsteps = 40\nlog_every = 10\neval_every = 20\neval_sequences = 50\n").unwrap();
    let o = gradlab(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--hidden",
        "12",
        "--set",
        "cell=lstm",
        "--out",
        out_s,
        "--threads",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains(": ok after 40 updates"), "{stdout}");
    for sub in ["runs", "steps", "layers", "flow", "checkpoints"] {
        assert_eq!(files(&out, sub).len(), 1, "{sub}: {:?}", files(&out, sub));
    }
    let runs = read_parquet(&files(&out, "runs")[0]).unwrap();
    let get = |c: &str| runs.column(c).unwrap().get(0).unwrap().to_string();
    assert_eq!(get("cell"), "\"lstm\"", "--set applies");
    assert_eq!(get("hidden"), "12", "per-key flags apply");
    assert_eq!(get("seq_len"), "20", "the config file applies");
    assert_eq!(get("status"), "\"ok\"");
}

#[test]
fn a_diverging_run_is_recorded_and_exits_zero() {
    let out = tmpdir("diverge");
    let o = gradlab(&[
        "run",
        "--task",
        "adding",
        "--seq-len",
        "20",
        "--hidden",
        "16",
        "--lr",
        "1e6",
        "--clip",
        "none",
        "--steps",
        "100",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "divergence is an outcome: {}",
        text(&o.stderr)
    );
    assert!(
        text(&o.stdout).contains("diverged at step"),
        "{}",
        text(&o.stdout)
    );
    let runs = read_parquet(&files(&out, "runs")[0]).unwrap();
    assert_eq!(
        runs.column("status").unwrap().get(0).unwrap().to_string(),
        "\"diverged\""
    );
}

#[test]
fn sample_from_a_hello_model_spells_hello() {
    let out = tmpdir("hello");
    let o = gradlab(&[
        "run",
        "--task",
        "hello",
        "--cell",
        "lstm",
        "--hidden",
        "16",
        "--batch",
        "1",
        "--steps",
        "200",
        "--optimizer",
        "adam",
        "--lr",
        "0.05",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ck = files(&out, "checkpoints").remove(0);
    let o = gradlab(&[
        "sample",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--prime",
        "h",
        "--argmax",
        "--len",
        "4",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "hello");
    let o = gradlab(&[
        "sample",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--prime",
        "x",
    ]);
    assert!(
        !o.status.success()
            && text(&o.stderr).contains("'x' in the prime text is not in the model's vocabulary"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_seq2seq_run_saves_a_checkpoint_that_sample_decodes_from_input() {
    // Catches `sample` that treats a seq2seq checkpoint as a text model, ignores --input, or
    // takes the wrong flags without saying which to use.
    let out = tmpdir("seq2seq");
    let o = gradlab(&[
        "run",
        "--model",
        "seq2seq",
        "--task",
        "addition",
        "--seq-len",
        "3",
        "--cell",
        "lstm",
        "--hidden",
        "16",
        "--steps",
        "30",
        "--eval-every",
        "1000",
        "--eval-sequences",
        "100",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains(": ok after 30 updates"), "{stdout}");
    let runs = read_parquet(&files(&out, "runs")[0]).unwrap();
    let get = |c: &str| runs.column(c).unwrap().get(0).unwrap().to_string();
    assert_eq!(get("model"), "\"seq2seq\"");
    assert_eq!(get("reverse_source"), "false");
    let flow = read_parquet(&files(&out, "flow")[0]).unwrap();
    let sources: std::collections::BTreeSet<String> = flow
        .column("source")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .map(String::from)
        .collect();
    assert_eq!(sources, ["decoder", "encoder"].map(String::from).into());
    let ck = files(&out, "checkpoints").remove(0);
    let ck = ck.to_str().unwrap();
    for args in [
        &["--input", "12+345="][..],
        &["--input", "12+345"],
        &["--input", "7+7=", "--temperature", "0.5", "--seed", "3"],
    ] {
        let o = gradlab(&[&["sample", "--checkpoint", ck][..], args].concat());
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        let decoded = text(&o.stdout);
        let decoded = decoded.trim_end();
        assert!(
            decoded.len() <= 5 && decoded.chars().all(|c| c.is_ascii_digit()),
            "{args:?}: {decoded:?}"
        );
    }
    let fails = |args: &[&str], want: &str| {
        let o = gradlab(&[&["sample", "--checkpoint", ck][..], args].concat());
        let e = text(&o.stderr);
        assert!(!o.status.success() && e.contains(want), "{args:?}: {e}");
    };
    fails(
        &[],
        "give the source to decode with --input SOURCE, e.g. --input '",
    );
    fails(&["--prime", "1"], "is a seq2seq checkpoint");
    fails(
        &["--input", "1234+5="],
        "addition with seq_len 3 reads A+B= with 1 to 3 digits",
    );
    fails(
        &["--input", "1+2", "--temperature", "0"],
        "temperature must be",
    );
    let e = text(
        &gradlab(&[
            "run", "--model", "seq2seq", "--task", "adding", "--steps", "1",
        ])
        .stderr,
    );
    assert!(
        e.contains("'model'") && e.contains("reverse, addition or copy-seq"),
        "{e}"
    );
    let e = text(&gradlab(&["run", "--task", "reverse", "--steps", "1"]).stderr);
    assert!(
        e.contains("'task'") && e.contains("model = \"seq2seq\""),
        "{e}"
    );
}

/// Writes named f32 tensors to a safetensors file.
fn write_tensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let t: Vec<(String, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.to_string(), s.clone(), &v[..]))
        .collect();
    gradlab_experiments::model::checkpoint::save_tensors(path, &t, Default::default()).unwrap();
}

#[test]
fn grad_matches_central_finite_differences() {
    let dir = tmpdir("grad");
    let (t, b, i, h, l) = (4, 2, 3, 5, 2);
    let shape = StackShape {
        cell: Cell::Lstm,
        input: i,
        hidden: h,
        layers: l,
    };
    let mut rng = SplitMix64(9);
    let params = rng.vec_f32(shape.num_params(), 0.5);
    let x = rng.vec_f32(t * b * i, 1.0);
    let dy = rng.vec_f32(t * b * h, 1.0);
    let weights: Vec<(&str, Vec<usize>, Vec<f32>)> = shape
        .param_names()
        .into_iter()
        .map(|(n, s, r)| (&*Box::leak(n.into_boxed_str()), s, params[r].to_vec()))
        .collect();
    write_tensors(&dir.join("w.safetensors"), &weights);
    write_tensors(
        &dir.join("x.safetensors"),
        &[
            ("input", vec![t, b, i], x.clone()),
            ("grad_output", vec![t, b, h], dy.clone()),
        ],
    );
    let (w, xp, g) = (
        dir.join("w.safetensors"),
        dir.join("x.safetensors"),
        dir.join("g.safetensors"),
    );
    let run_grad = |hidden: &str| {
        let (w, x, g) = (
            w.to_str().unwrap(),
            xp.to_str().unwrap(),
            g.to_str().unwrap(),
        );
        gradlab(&[
            "grad",
            "--cell",
            "lstm",
            "--layers",
            "2",
            "--input-size",
            "3",
            "--hidden",
            hidden,
            "--weights",
            w,
            "--input",
            x,
            "--out",
            g,
        ])
    };
    let o = run_grad("5");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = gradlab_experiments::model::checkpoint::TensorFile::read(&g).unwrap();
    // The loss <dy, output> in f64, differentiated numerically.
    let wide = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<f64>>();
    let (p64, x64, dy64) = (wide(&params), wide(&x), wide(&dy));
    let loss = |p: &[f64], x: &[f64]| -> f64 {
        let tr = reference::forward(shape, p, x, None, None, t, b);
        tr.output().iter().zip(&dy64).map(|(a, b)| a * b).sum()
    };
    let eps = 1e-5;
    for (name, dims, range) in shape.param_names() {
        let got = out.f32(&format!("grad.{name}"), &dims).unwrap();
        for (k, e) in range.clone().enumerate() {
            let (mut plus, mut minus) = (p64.clone(), p64.clone());
            plus[e] += eps;
            minus[e] -= eps;
            let fd = (loss(&plus, &x64) - loss(&minus, &x64)) / (2.0 * eps);
            assert!(
                (f64::from(got[k]) - fd).abs() <= 1e-3 * (1.0 + fd.abs()),
                "grad.{name}[{k}] = {}, finite differences {fd}",
                got[k]
            );
        }
    }
    let gx = out.f32("grad.input", &[t, b, i]).unwrap();
    for e in 0..x.len() {
        let (mut plus, mut minus) = (x64.clone(), x64.clone());
        plus[e] += eps;
        minus[e] -= eps;
        let fd = (loss(&p64, &plus) - loss(&p64, &minus)) / (2.0 * eps);
        assert!(
            (f64::from(gx[e]) - fd).abs() <= 1e-3 * (1.0 + fd.abs()),
            "grad.input[{e}]"
        );
    }
    assert_eq!(out.shape("c_n").unwrap(), [l, b, h]);
    // A weights file of the wrong shape names the tensor.
    let o = run_grad("6");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("tensor 'weight_ih_l0' has shape [20, 3]"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn bad_run_flags_and_files_fail_with_a_message_that_says_what_to_fix() {
    let dir = tmpdir("bad");
    let bad_toml = dir.join("bad.toml");
    std::fs::write(&bad_toml, "task = 'adding'\nhiden = 3\n").unwrap();
    let blocked = dir.join("file-not-dir");
    std::fs::write(&blocked, "").unwrap();
    let out = dir.join("out");
    let o_s = out.to_str().unwrap();
    for (args, want) in [
        (
            vec!["run", "--hidden", "0", "--out", o_s],
            "invalid value 0 for 'hidden': must be at least 1",
        ),
        (
            vec!["run", "--set", "hiden=3", "--out", o_s],
            "unknown key 'hiden'",
        ),
        (
            vec!["run", "--set", "hidden", "--out", o_s],
            "expected KEY=VALUE",
        ),
        (
            vec!["run", "--clip", "norm:-1", "--out", o_s],
            "invalid norm threshold '-1'",
        ),
        (
            vec!["run", "--config", "/nonexistent/run.toml"],
            "cannot read the config file /nonexistent/run.toml",
        ),
        (
            vec!["run", "--config", bad_toml.to_str().unwrap()],
            "unknown field `hiden`",
        ),
        (
            vec![
                "run",
                "--task",
                "charlm",
                "--text",
                "/nonexistent.txt",
                "--out",
                o_s,
            ],
            "cannot read the text file /nonexistent.txt",
        ),
        (
            vec![
                "run",
                "--steps",
                "1",
                "--out",
                blocked.join("x").to_str().unwrap(),
            ],
            "cannot create the output folder",
        ),
        (
            vec!["sample", "--checkpoint", bad_toml.to_str().unwrap()],
            "is not a safetensors file",
        ),
    ] {
        let o = gradlab(&args);
        assert!(!o.status.success(), "{args:?} must fail");
        assert!(
            text(&o.stderr).contains(want),
            "{args:?}: stderr was {}",
            text(&o.stderr)
        );
    }
    assert!(
        !out.exists() || files(&out, "runs").is_empty(),
        "no run may start"
    );
}
