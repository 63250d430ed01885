//! The command line people type: errors that say how to fix them, a closed pipe, sweeps
//! built on the command line, Slurm options, checkpoints and gradients against PyTorch.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{fails, gradlab, s, text, tmpdir, write_spec};
use gradlab_experiments::model::checkpoint::{save_tensors, TensorFile};
use gradlab_kernels::{Cell, StackShape};

/// Runs gradlab, which must succeed, and returns its standard output.
fn ok(args: &[&str]) -> String {
    let o = gradlab(args);
    assert!(
        o.status.success(),
        "gradlab {args:?} failed:\n{}",
        text(&o.stderr)
    );
    text(&o.stdout)
}

#[test]
fn a_bare_clip_threshold_says_to_write_norm_or_value() {
    for args in [&["run", "--clip", "1"][..], &["run", "--set", "clip=1"]] {
        let e = fails(args);
        assert!(e.contains("norm:1") && e.contains("value:1"), "{e}");
    }
    let dir = tmpdir("clip");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "clip = 2.5\n").unwrap();
    let e = fails(&["run", "--config", s(&cfg)]);
    assert!(e.contains("norm:2.5") && e.contains("value:2.5"), "{e}");
}

#[test]
fn negative_numbers_are_values_that_get_a_range_error() {
    let e = fails(&["run", "--truncation", "-3"]);
    assert!(!e.contains("unexpected argument"), "{e}");
    assert!(e.contains("truncation -3") && e.contains(">= 1"), "{e}");
    for args in [
        &["sweep", "--dry-run", "--jobs", "-2"][..],
        &["sample", "--checkpoint", "c", "--len", "-5"],
    ] {
        let e = fails(args);
        assert!(e.contains("invalid value '-"), "{args:?}: {e}");
    }
    // A negative value that is allowed runs as far as the next check.
    let e = fails(&["run", "--forget-bias", "-1", "--hidden", "0"]);
    assert!(e.contains("'hidden'"), "{e}");
}

#[test]
fn a_misspelled_key_suggests_the_nearest_one_everywhere() {
    let dir = tmpdir("typo");
    let e = fails(&["run", "--set", "hiden=3"]);
    assert!(e.contains("did you mean `hidden`?"), "{e}");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "hiden = 3\n").unwrap();
    let e = fails(&["run", "--config", s(&cfg)]);
    assert!(e.contains("did you mean `hidden`?"), "{e}");
    let spec = write_spec(&dir);
    let e = fails(&["sweep", s(&spec), "--dry-run", "--set", "sed_len=3"]);
    assert!(e.contains("did you mean `seq_len`?"), "{e}");
    let e = fails(&["sweep", s(&spec), "--dry-run", "--grid", "cel=rnn,lstm"]);
    assert!(e.contains("did you mean `cell`?"), "{e}");
    // A top-level key of a spec too.
    let bad = dir.join("top.toml");
    std::fs::write(&bad, "name = 'a'\nseeds = [0]\n[grd]\nhidden = [1]\n").unwrap();
    let e = fails(&["sweep", s(&bad), "--dry-run"]);
    assert!(e.contains("did you mean `grid`?"), "{e}");
}

#[test]
fn a_spec_reports_all_its_errors_at_once() {
    let dir = tmpdir("allerrors");
    let spec = dir.join("s.toml");
    std::fs::write(
        &spec,
        "name = 'x'\nseeds = [0, 0]\n[base]\nhiden = 3\nclip = 1\nlr = -1\n[grid]\ncel = ['rnn']\n\
         depth = [1, 0]\n[random]\nn = 2\nmomentum = { uniform = [0.0, 2.0] }\n",
    )
    .unwrap();
    let e = fails(&["sweep", s(&spec), "--dry-run"]);
    let at = |line: usize| format!("{}:{line}:", spec.display());
    for (line, what) in [
        (2, "seed 0 is listed twice"),
        (4, "did you mean `hidden`?"),
        (5, "norm:1"),
        (6, "'lr'"),
        (8, "did you mean `cell`?"),
        (9, "[grid] depth: invalid value 0"),
        (12, "[random] momentum: invalid value 2"),
    ] {
        assert!(
            e.lines().any(|l| l.contains(&at(line)) && l.contains(what)),
            "line {line} ({what}) missing from:\n{e}"
        );
    }
}

#[test]
fn no_message_is_printed_twice() {
    let e = fails(&["sample", "--checkpoint", "/nonexistent/ck.safetensors"]);
    assert_eq!(e.matches("No such file").count(), 1, "{e}");
}

/// `gradlab sweep ... --dry-run | head -2` used to panic ("failed printing to stdout: Broken
/// pipe", exit 101).
#[test]
fn a_closed_stdout_ends_the_program_quietly() {
    let dir = tmpdir("pipe");
    // About 3000 lines: more than a pipe holds, so gradlab writes after the reader is gone.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradlab"))
        .args(["sweep", "--dry-run", "--out", s(&dir.join("out"))])
        .args(["--grid", "hidden=range(1,3001)"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("hidden=1 "), "{first}");
    drop(reader);
    let o = child.wait_with_output().unwrap();
    let err = text(&o.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert!(
        o.status.success() || o.status.signal() == Some(13),
        "{:?}: {err}",
        o.status
    );
}

/// The dry-run's run lines (`index id state label`).
fn planned(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.contains("to run"))
        .map(|l| l.split("to run").nth(1).unwrap().trim().to_string())
        .collect()
}

#[test]
fn grids_and_random_draws_on_the_command_line() {
    let dir = tmpdir("cligrid");
    let out = dir.join("out");
    let o = ok(&[
        "sweep",
        "--dry-run",
        "--out",
        s(&out),
        "--grid",
        "seq_len=range(50,201,50)",
        "--grid",
        "cell=rnn,lstm",
    ]);
    let runs = planned(&o);
    assert_eq!(runs.len(), 8, "{o}");
    assert_eq!(runs[0], "seq_len=50 cell=rnn seed=0");
    assert_eq!(runs[7], "seq_len=200 cell=lstm seed=0");
    let o = ok(&[
        "sweep",
        "--dry-run",
        "--out",
        s(&out),
        "--name",
        "lrs",
        "--seeds",
        "0,1",
        "--random",
        "lr=log_uniform(1e-4,1e-1)",
        "--samples",
        "8",
    ]);
    let runs = planned(&o);
    assert_eq!(runs.len(), 16, "{o}");
    let lrs: std::collections::BTreeSet<String> = runs
        .iter()
        .map(|r| r.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(lrs.len(), 8, "{lrs:?}");
    for lr in &lrs {
        let v: f64 = lr.strip_prefix("lr=").unwrap().parse().unwrap();
        assert!((1e-4..=1e-1).contains(&v), "{lr}");
    }
    assert!(o.contains("sweep lrs: 16 runs"), "{o}");
    // With a spec: --random adds a drawn key to its grid, --grid replaces an axis.
    let spec = write_spec(&dir);
    let o = ok(&[
        "sweep",
        s(&spec),
        "--dry-run",
        "--out",
        s(&out),
        "--grid",
        "truncation=range(2,9,2)",
        "--random",
        "momentum=uniform(0,0.9)",
        "--samples",
        "3",
    ]);
    // 4 truncations x 2 clips x 3 draws x 2 seeds.
    assert_eq!(planned(&o).len(), 48, "{o}");
    assert!(
        planned(&o)[0].starts_with("clip=none truncation=2 momentum="),
        "{o}"
    );
    for (args, what) in [
        (
            &["--random", "lr=log_uniform(1e-4,1e-1)"][..],
            "--samples N",
        ),
        (&["--samples", "3"], "--random"),
        (&["--grid", "seq_len=range(50,10)"], "empty"),
        (&["--random", "lr=normal(0,1)"], "unknown distribution"),
        (&["--random", "lr=log_uniform(0,1)"], "lo must be > 0"),
    ] {
        let e = fails(&[&["sweep", "--dry-run", "--out", s(&out)], args].concat());
        assert!(e.contains(what), "{args:?}: {e}");
    }
}

#[test]
fn slurm_options_reach_the_job_script() {
    let dir = tmpdir("slurmflags");
    let spec = write_spec(&dir);
    let o = ok(&[
        "sweep",
        s(&spec),
        "--out",
        s(&dir.join("out")),
        "--slurm",
        "--dry-run",
        "--account",
        "proj42",
        "--qos",
        "high",
        "--mem",
        "4G",
        "--constraint",
        "avx512",
        "--signal-before",
        "90",
        "--set",
        "checkpoint_every=500",
        "--sbatch-arg=--gres=gpu:1",
        "--sbatch-arg",
        "--mail-type=END",
    ]);
    for line in [
        "#SBATCH --account=proj42",
        "#SBATCH --qos=high",
        "#SBATCH --mem=4G",
        "#SBATCH --constraint=avx512",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:USR1@90",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --mail-type=END",
    ] {
        assert!(o.lines().any(|l| l == line), "{line} missing:\n{o}");
    }
    // The tasks requeue themselves after the warning.
    assert!(o.contains("scontrol requeue"), "{o}");
    let e = fails(&["sweep", s(&spec), "--account", "x"]);
    assert!(e.contains("--slurm"), "{e}");
}

/// 2-layer weights given to `gradlab grad --layers 1` ran on the first layer, exit 0.
#[test]
fn grad_refuses_weights_it_would_not_use() {
    let dir = tmpdir("gradlayers");
    let two = StackShape {
        cell: Cell::Lstm,
        input: 3,
        hidden: 4,
        layers: 2,
    };
    let p = vec![0.1f32; two.num_params()];
    let tensors: Vec<(String, Vec<usize>, &[f32])> = two
        .param_names()
        .into_iter()
        .map(|(n, d, r)| (n, d, &p[r]))
        .collect();
    let w = dir.join("w.safetensors");
    save_tensors(&w, &tensors, Default::default()).unwrap();
    let x = dir.join("x.safetensors");
    let (input, dy) = (vec![0.5f32; 2 * 3], vec![1.0f32; 2 * 4]);
    save_tensors(
        &x,
        &[
            ("input".into(), vec![2, 1, 3], &input[..]),
            ("grad_output".into(), vec![2, 1, 4], &dy[..]),
        ],
        Default::default(),
    )
    .unwrap();
    let g = dir.join("g.safetensors");
    let grad = |layers: &str| {
        let args = [
            "grad",
            "--cell",
            "lstm",
            "--layers",
            layers,
            "--input-size",
            "3",
            "--hidden",
            "4",
            "--weights",
            s(&w),
            "--input",
            s(&x),
            "--out",
            s(&g),
        ];
        args.map(String::from)
    };
    let args = grad("1");
    let e = fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        e.contains("holds 2 layers") && e.contains("weight_hh_l1") && e.contains("--layers 2"),
        "{e}"
    );
    assert!(!g.exists());
    let args = grad("2");
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// `gradlab grad --cell gru` gives what nn.GRU gives: the 2-layer case of the committed PyTorch
/// fixture (`scripts/gru_parity_fixture.py`; no torch needed here), through the files and names
/// a user passes, every tensor within a norm-wise relative error of 1e-5.
#[test]
fn grad_of_a_gru_matches_pytorch_on_the_committed_fixture() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("kernels/tests/fixtures/gru_pytorch.safetensors");
    let f = TensorFile::read(&fixture).unwrap();
    let get = |name: &str| {
        let dims = f.shape(&format!("l2.{name}")).unwrap();
        let v = f.f32(&format!("l2.{name}"), &dims).unwrap();
        (name.to_string(), dims, v)
    };
    let shape = StackShape {
        cell: Cell::Gru,
        input: 3,
        hidden: 33,
        layers: 2,
    };
    let weights: Vec<_> = shape.param_names().iter().map(|(n, _, _)| get(n)).collect();
    let inputs: Vec<_> = ["input", "h0", "grad_output", "grad_h_n"].map(get).into();
    let dir = tmpdir("gradgru");
    let (w, x, g) = (
        dir.join("w.safetensors"),
        dir.join("x.safetensors"),
        dir.join("g.safetensors"),
    );
    for (path, tensors) in [(&w, &weights), (&x, &inputs)] {
        let views: Vec<_> = tensors
            .iter()
            .map(|(n, d, v)| (n.clone(), d.clone(), &v[..]))
            .collect();
        save_tensors(path, &views, Default::default()).unwrap();
    }
    let mut args: Vec<&str> = "grad --cell gru --layers 2 --input-size 3 --hidden 33 --threads 2"
        .split(' ')
        .collect();
    args.extend(["--weights", s(&w), "--input", s(&x), "--out", s(&g)]);
    ok(&args);
    let got = TensorFile::read(&g).unwrap();
    let mut names: Vec<String> = ["output", "h_n", "grad.input", "grad.h0"]
        .map(String::from)
        .into();
    names.extend(
        shape
            .param_names()
            .into_iter()
            .map(|(n, _, _)| format!("grad.{n}")),
    );
    for name in names {
        let (_, dims, want) = get(&name);
        let have = got.f32(&name, &dims).unwrap();
        let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
        let diff = norm(&mut have.iter().zip(&want).map(|(a, b)| f64::from(a - b)));
        let e = diff / norm(&mut want.iter().map(|&b| f64::from(b)));
        assert!(
            e <= 1e-5,
            "{name}: norm-wise relative error {e:e} against nn.GRU"
        );
    }
    assert!(
        !got.has("c_n") && !got.has("grad.c0"),
        "a GRU has no cell state"
    );
}

/// Why `scripts/load_checkpoint.py` cannot run here, if it cannot.
fn torch_unavailable() -> Option<String> {
    match Command::new("python3")
        .args(["-c", "import torch, safetensors"])
        .output()
    {
        Err(e) => Some(format!("python3 cannot run ({e})")),
        Ok(o) if !o.status.success() => Some(format!(
            "python3 cannot import torch and safetensors ({}); pip install torch safetensors",
            text(&o.stderr).lines().last().unwrap_or("").trim()
        )),
        Ok(_) => None,
    }
}

/// The script in the README loads a gradlab checkpoint into nn.LSTM + nn.Linear and agrees
/// with `gradlab grad` on the loss's gradients. CI has no torch: it skips, saying why, unless
/// GRADLAB_REQUIRE_TORCH=1.
#[test]
fn a_checkpoint_loads_into_pytorch_and_its_gradients_match_gradlab_grad() {
    if let Some(reason) = torch_unavailable() {
        assert!(
            std::env::var_os("GRADLAB_REQUIRE_TORCH").is_none(),
            "GRADLAB_REQUIRE_TORCH is set, but {reason}"
        );
        eprintln!("skipping the PyTorch checkpoint test: {reason}");
        return;
    }
    let dir = tmpdir("torch");
    for (cell, extra) in [
        ("lstm", "depth=2"),
        ("rnn", "nonlinearity=relu"),
        ("gru", "depth=2"),
    ] {
        let out = dir.join(cell);
        ok(&[
            "run",
            "--cell",
            cell,
            "--set",
            extra,
            "--hidden",
            "8",
            "--steps",
            "20",
            "--seq-len",
            "15",
            "--eval-sequences",
            "20",
            "--out",
            s(&out),
        ]);
        let ck = std::fs::read_dir(out.join("checkpoints"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/load_checkpoint.py");
        let o = Command::new("python3")
            .arg(&script)
            .arg(&ck)
            .args(["--gradlab", env!("CARGO_BIN_EXE_gradlab")])
            .output()
            .unwrap();
        let out = text(&o.stdout);
        assert!(o.status.success(), "{cell}: {out}{}", text(&o.stderr));
        assert!(out.contains("gradlab grad matches torch autograd"), "{out}");
        eprintln!("{out}");
    }
}
