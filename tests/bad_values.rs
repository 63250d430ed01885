//! Bad values as a new user types them: every one is refused at parse time with the key's name,
//! or, for a run too large for the machine, before it starts with its memory estimate; none
//! panics or aborts, and one bad run never takes a sweep down with it.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{gradlab, s, text, tmpdir};
use gradlab_experiments::memory::parse_size;
use gradlab_experiments::store::read_table;

/// Runs gradlab, which must fail without a panic or an abort; returns its standard error.
fn fails(args: &[&str]) -> String {
    let o = gradlab(args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "gradlab {args:?} must fail with an error:\n{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let err = text(&o.stderr);
    assert!(
        !err.contains("panicked"),
        "gradlab {args:?} panicked: {err}"
    );
    err
}

fn write(dir: &Path, name: &str, spec: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, spec).unwrap();
    p
}

/// `gradlab sweep SPEC --dry-run` of a spec whose `[base]`/`[random]` is `body`.
fn dry_run_fails(dir: &Path, body: &str) -> String {
    let spec = write(
        dir,
        "spec.toml",
        &format!("name = \"b\"\nseeds = [0]\n{body}"),
    );
    fails(&["sweep", s(&spec), "--dry-run", "--out", s(&dir.join("out"))])
}

#[test]
fn integers_beyond_i64_are_refused_with_the_key() {
    // Passed --dry-run, then every run panicked writing the seed ("u64 value was too large");
    // `gradlab run` trained fully and panicked at the end, leaving steps/ without runs/.
    let dir = tmpdir("int64");
    let big = "18446744073709551615";
    let spec = write(
        &dir,
        "seeds.toml",
        &format!("name = \"b\"\nseeds = [{big}]\n"),
    );
    let e = fails(&["sweep", s(&spec), "--dry-run"]);
    assert!(e.contains("seed 18446744073709551615 is too large"), "{e}");
    let body = format!("[base]\neval_every = {big}\n");
    let e = dry_run_fails(&dir, &body);
    assert!(e.contains("spec.toml:4: ") && e.contains("int64"), "{e}");
    for key in [
        "seed",
        "eval_every",
        "steps",
        "lyapunov_steps",
        "truncation_k1",
    ] {
        let e = fails(&["run", "--set", &format!("{key}={big}")]);
        assert!(
            e.contains(&format!("for '{key}'")) && e.contains("int64"),
            "{key}: {e}"
        );
    }
}

#[test]
fn tbptt_values_that_would_panic_are_refused_with_the_key() {
    // truncation_k1 = 0 panicked in step_by(0); truncation_k2 alone blamed 'truncation_k1'
    // with the value 18446744073709551615.
    let e = fails(&[
        "run",
        "--set",
        "truncation_k1=0",
        "--set",
        "truncation_k2=5",
    ]);
    assert!(
        e.contains("'truncation_k1'") && e.contains("at least 1"),
        "{e}"
    );
    let e = fails(&["run", "--set", "truncation_k2=0"]);
    assert!(e.contains("'truncation_k2'"), "{e}");
    let e = fails(&["run", "--set", "truncation_k2=5"]);
    assert!(
        e.contains("'truncation_k2'") && e.contains("add truncation_k1") && !e.contains("1844"),
        "{e}"
    );
    let e = fails(&["run", "--truncation", "8", "--set", "truncation_k2=5"]);
    assert!(e.contains("'truncation'") && e.contains("k <= 5"), "{e}");
}

#[test]
fn a_sweep_too_large_to_expand_is_refused_at_once() {
    // `[random] n = 1000000000` made --dry-run grow to 7 GB.
    let dir = tmpdir("nruns");
    let start = Instant::now();
    let e = dry_run_fails(
        &dir,
        "[random]\nn = 1000000000\nlr = { log_uniform = [1e-3, 1e-1] }\n",
    );
    assert!(e.contains("n = 1000000000") && e.contains("100000"), "{e}");
    let e = fails(&[
        "sweep",
        "--grid",
        "hidden=range(1,100001)",
        "--seeds",
        "range(0,100)",
        "--dry-run",
    ]);
    assert!(e.contains("10000000 runs") && e.contains("split it"), "{e}");
    let e = fails(&[
        "sweep",
        "--random",
        "lr=log_uniform(1e-4,1e-1)",
        "--samples",
        "1000000000",
        "--dry-run",
    ]);
    assert!(e.contains("--samples") && e.contains("100000"), "{e}");
    // An int range whose width overflows an i64 (it wrapped to a draw below 0).
    let e = dry_run_fails(
        &dir,
        "[random]\nn = 2\nforget_bias = { int = [-9223372036854775808, 9223372036854775807] }\n",
    );
    assert!(e.contains("too wide"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(20), "refused at once");
}

#[test]
fn jobs_far_above_the_cores_are_refused() {
    // --jobs 100000 spent minutes creating threads.
    let e = fails(&["sweep", "--jobs", "100000", "--dry-run"]);
    assert!(
        e.contains("'--jobs'") && e.contains("cores") && e.contains("at most"),
        "{e}"
    );
    let e = fails(&["run", "--threads", "100000"]);
    assert!(e.contains("'--threads'"), "{e}");
}

#[test]
fn values_a_new_user_tries_get_an_error_naming_the_key() {
    for (kv, key) in [
        ("hidden=-1", "hidden"),
        ("hidden=0", "hidden"),
        ("seq_len=99999999999999", "seq_len"),
        ("seq_len=0", "seq_len"),
        ("lr=nan", "lr"),
        ("lr=inf", "lr"),
        ("truncation=0", "truncation"),
        ("lr_schedule=step:0:0.5", "lr_schedule"),
        ("clip=norm:inf", "clip"),
        ("momentum=1", "momentum"),
        ("depth=1e3", "depth"),
        ("batch=18446744073709551616", "batch"),
        ("forget_bias=inf", "forget_bias"),
        ("regularizer=pascanu:0", "regularizer"),
        ("regularizer=pascanu", "regularizer"),
        ("regularizer=dropout", "regularizer"),
    ] {
        let e = fails(&["run", "--set", kv]);
        assert!(e.contains(&format!("'{key}'")), "{kv}: {e}");
    }
}

#[test]
fn a_run_too_large_for_memory_is_refused_with_its_estimate() {
    // hidden = 4294967296 aborted the process: "memory allocation of 85899345924 bytes failed".
    let dir = tmpdir("toolarge");
    let out = s(&dir);
    let e = fails(&["run", "--hidden", "4294967296", "--out", out]);
    assert!(
        e.contains("the run needs about") && e.contains("available") && e.contains("--max-memory"),
        "{e}"
    );
    let e = fails(&[
        "run",
        "--hidden",
        "2000",
        "--max-memory",
        "64M",
        "--out",
        out,
    ]);
    assert!(e.contains("the 64 MiB that --max-memory allows"), "{e}");
    let o = gradlab(&["run", "--max-memory", "lots"]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert!(text(&o.stderr).contains("invalid size 'lots'"));
    assert!(
        !dir.join("runs").exists() || std::fs::read_dir(dir.join("runs")).unwrap().count() == 0
    );
}

#[test]
fn a_sweep_records_a_run_too_large_as_failed_and_goes_on() {
    let dir = tmpdir("sweepmem");
    let spec = write(
        &dir,
        "spec.toml",
        "name = \"mem\"\nseeds = [0]\n[base]\nseq_len = 10\nsteps = 3\neval_sequences = 10\n\
         lyapunov_steps = 0\n[grid]\nhidden = [4, 4294967296]\n",
    );
    let out = dir.join("out");
    let o = gradlab(&["sweep", s(&spec), "--dry-run", "--out", s(&out)]);
    let listing = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        listing.contains("too big") && listing.contains("1 runs are too big"),
        "{listing}"
    );
    let o = gradlab(&["sweep", s(&spec), "--out", s(&out), "--jobs", "2"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let failed: Vec<_> = std::fs::read_dir(out.join("failed")).unwrap().collect();
    assert_eq!(failed.len(), 1);
    let record = std::fs::read_to_string(failed[0].as_ref().unwrap().path()).unwrap();
    assert!(record.contains("the run needs about"), "{record}");
    assert_eq!(std::fs::read_dir(out.join("runs")).unwrap().count(), 1);
}

#[test]
fn the_memory_estimate_is_near_the_measured_peak() {
    // A run whose buffers dominate the process (long windows of a wide batch) and whose
    // evaluation is short (a charlm validation text): its peak RSS against the estimate.
    let dir = tmpdir("estimate");
    let chars: String = (0..40_000)
        .map(|i| (b'a' + ((i * 7919) % 26) as u8) as char)
        .collect();
    let textfile = dir.join("t.txt");
    std::fs::write(&textfile, chars).unwrap();
    let o = gradlab(&[
        "run",
        "--task",
        "charlm",
        "--text",
        s(&textfile),
        "--cell",
        "gru",
        "--seq-len",
        "100",
        "--batch",
        "256",
        "--hidden",
        "128",
        "--depth",
        "2",
        "--truncation",
        "20",
        "--steps",
        "2",
        "--lyapunov-steps",
        "0",
        "--threads",
        "1",
        "--out",
        s(&dir.join("out")),
    ]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let line = stdout
        .lines()
        .find(|l| l.starts_with("peak memory"))
        .expect("the summary says the peak memory");
    let size = |s: &str| parse_size(s).unwrap() as f64;
    let peak = size(
        line.trim_start_matches("peak memory ")
            .split(" (")
            .next()
            .unwrap(),
    );
    let estimate = size(
        line.split("(estimated ")
            .nth(1)
            .unwrap()
            .split(" (")
            .next()
            .unwrap(),
    );
    // The process itself (binary, allocator, Parquet writer) holds about 30 MiB of its own.
    let process = 64.0 * (1 << 20) as f64;
    assert!(
        peak <= estimate + process && estimate <= 2.0 * peak,
        "estimate {estimate} vs measured peak {peak}: {line}"
    );
}

#[test]
fn an_undefined_decay_rate_is_null_not_nan() {
    // seq_len = 2 has one lag >= 1 to fit: decay_rate was stored as NaN with status ok.
    let dir = tmpdir("decay");
    let o = gradlab(&[
        "run",
        "--seq-len",
        "2",
        "--steps",
        "3",
        "--eval-sequences",
        "10",
        "--out",
        s(&dir),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("gradient decay rate undefined"));
    let runs = read_table(&dir, "runs").unwrap().unwrap();
    let decay = runs.column("decay_rate").unwrap();
    assert_eq!(decay.null_count(), 1, "{decay:?}");
    assert_eq!(
        runs.column("status").unwrap().str().unwrap().get(0),
        Some("ok")
    );
}

#[test]
fn sample_streams_a_huge_len() {
    // `--len 18446744073709551615` printed nothing until it ended (never).
    let dir = tmpdir("stream");
    let o = gradlab(&["run", "--task", "hello", "--steps", "1", "--out", s(&dir)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ck = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradlab"))
        .args(["sample", "--checkpoint", s(&ck), "--len"])
        .arg(u64::MAX.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut got = [0u8; 100];
    child
        .stdout
        .take()
        .unwrap()
        .read_exact(&mut got)
        .expect("the sample streams");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(got.iter().all(|b| b"helo".contains(b)), "{got:?}");
}
