//! Killed and stopped sweeps lose no work: a sweep SIGKILLed at random moments (mid-update,
//! mid-checkpoint, mid-write) and started again, over and over, ends with results equal bit
//! for bit to a sweep never killed; SIGTERM and SIGINT stop it cleanly with a checkpoint, exit
//! 128 + the signal and print the command that continues; `gradlab run --resume` continues a
//! single run.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{assert_same_results, gradlab, s, sweep_ok, text, text_file, tmpdir, wait_for};
use gradlab_kernels::rng::SplitMix64;

/// Synthetic: RNN and LSTM with every optimiser, TBPTT(10).
const SYNTHETIC: &str = r#"name = "synthetic"
seeds = [0]

[base]
task = "adding"
seq_len = 40
hidden = 24
steps = 1200
momentum = 0.9
truncation = 10
log_every = 10
eval_every = 100
eval_sequences = 100
diag_every = 150
lyapunov_steps = 50

[grid]
cell = ["rnn", "lstm"]
optimizer = ["sgd", "adagrad", "rmsprop", "adam"]
"#;

/// Text: RNN and LSTM, truncated and full BPTT, with the state carried between windows.
fn charlm_spec(dir: &Path) -> String {
    let path = text_file(dir, 40_000);
    format!(
        r#"name = "text"
seeds = [0]

[base]
task = "charlm"
text = {:?}
seq_len = 30
hidden = 32
batch = 8
steps = 600
optimizer = "adam"
lr = 0.003
log_every = 10
eval_every = 100
eval_sequences = 16

[grid]
cell = ["rnn", "lstm"]
truncation = [8, "full"]
"#,
        path.display().to_string()
    )
}

fn start_sweep(spec: &Path, out: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gradlab"))
        .args(["sweep", s(spec), "--out", s(out), "--jobs", "2"])
        .args(extra)
        // A write waits 5 ms between its temporary file and the rename: kills land mid-write.
        .env("GRADLAB_TEST_WRITE_DELAY_MS", "5")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gradlab starts")
}

fn output(child: &mut Child) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (out, err)
}

/// Files a killed writer may leave (temporaries) and checkpoints, anywhere in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for sub in [
        "",
        "runs",
        "steps",
        "layers",
        "flow",
        "spectrum",
        "checkpoints",
        "failed",
    ] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.contains(".tmp-") || name.contains(".partial") || sub == "failed" {
                    found.push(format!("{sub}/{name}"));
                }
            }
        }
    }
    found
}

#[test]
fn a_sweep_killed_at_random_moments_again_and_again_ends_bit_identical() {
    let dir = tmpdir("kill-resume");
    let mut rng = SplitMix64(0x5eed);
    let (mut kills, mut resumed_starts, mut runs) = (0, 0, 0);
    for (name, spec) in [
        ("synthetic", SYNTHETIC.to_string()),
        ("text", charlm_spec(&dir)),
    ] {
        let spec_path = dir.join(format!("{name}.toml"));
        std::fs::write(&spec_path, spec).unwrap();
        let plain = dir.join(format!("{name}-plain"));
        let every = ["--set", "checkpoint_every=20"];
        sweep_ok(
            &[
                &[s(&spec_path), "--out", s(&plain), "--jobs", "2"][..],
                &every,
            ]
            .concat(),
        );
        // Two rounds, each from an empty folder.
        for round in 0..2 {
            let killed = dir.join(format!("{name}-killed-{round}"));
            let mut finished = false;
            // Kills come later as attempts go on: a run's last stretch (its final evaluation and
            // writes, which no checkpoint splits) must fit between two kills.
            for attempt in 0..100 {
                let mut child = start_sweep(&spec_path, &killed, &every);
                let delay = 50 + rng.below(600) + 40 * attempt;
                std::thread::sleep(Duration::from_millis(delay as u64));
                if let Some(status) = child.try_wait().unwrap() {
                    let (out, err) = output(&mut child);
                    assert!(status.success(), "{out}{err}");
                    finished = true;
                    break;
                }
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                let (out, _) = output(&mut child);
                resumed_starts += usize::from(out.contains("from their checkpoints"));
            }
            assert!(finished, "{name}: the sweep never finished between kills");
            // A last start finds every run complete.
            let out = sweep_ok(&[s(&spec_path), "--out", s(&killed), "--jobs", "2"]);
            assert!(out.contains("0 to run"), "{out}");
            assert_same_results(&plain, &killed);
            assert_eq!(leftovers(&killed), Vec::<String>::new(), "{name}");
            runs += gradlab_experiments::store::parts(&killed, "runs")
                .unwrap()
                .len();
        }
    }
    eprintln!(
        "{kills} SIGKILLs, {resumed_starts} starts continued from checkpoints; {runs} runs \
         equal bit for bit"
    );
    assert!(kills >= 6, "too few kills to prove anything: {kills}");
    assert!(
        resumed_starts >= 3,
        "too few starts from checkpoints: {resumed_starts}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} failed");
}

#[test]
fn sigterm_and_sigint_stop_a_sweep_with_checkpoints_and_say_how_to_continue() {
    let dir = tmpdir("sigterm");
    let spec_path = dir.join("spec.toml");
    // Runs of a few seconds each, so the signal lands mid-run.
    std::fs::write(
        &spec_path,
        SYNTHETIC.replace("steps = 1200", "steps = 3000"),
    )
    .unwrap();
    let plain = dir.join("plain");
    sweep_ok(&[s(&spec_path), "--out", s(&plain), "--jobs", "2"]);
    let out = dir.join("stopped");
    for (name, code) in [("TERM", 143), ("INT", 130)] {
        let mut child = start_sweep(&spec_path, &out, &[]);
        // Mid-run: once a run is claimed (it trains next; on a loaded machine the start can
        // take longer than any fixed wait), and a moment more.
        wait_for("a run to start", || {
            std::fs::read_dir(out.join("claims")).is_ok_and(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".lock"))
            })
        });
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, name);
        let status = child.wait().unwrap();
        let (stdout, stderr) = output(&mut child);
        assert_eq!(status.code(), Some(code), "SIG{name}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("stopped by SIG{name}")) && stderr.contains("checkpointed"),
            "{stderr}"
        );
        let hint = stderr
            .lines()
            .find_map(|l| l.strip_prefix("to continue: gradlab "))
            .unwrap_or_else(|| panic!("no command to continue in {stderr}"));
        assert!(
            hint.starts_with("sweep ") && hint.contains(s(&out)),
            "{hint}"
        );
        // Nothing half-written, and the runs in flight have checkpoints.
        let left = leftovers(&out);
        assert!(
            left.iter()
                .all(|f| f.ends_with(".partial") || f.ends_with(".partial.prev")),
            "{left:?}"
        );
        assert!(
            left.iter().any(|f| f.ends_with(".partial")),
            "no checkpoint: {left:?}"
        );
    }
    // The printed command finishes the sweep, from the checkpoints.
    let o = gradlab(&[
        "sweep",
        s(&dir.join("stopped").join("sweep.toml")),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        text(&o.stdout).contains("from their checkpoints"),
        "{}",
        text(&o.stdout)
    );
    assert_same_results(&plain, &out);
    assert_eq!(leftovers(&out), Vec::<String>::new());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gradlab_run_stopped_by_sigint_continues_with_resume() {
    let dir = tmpdir("run-resume");
    let args = |out: &Path| -> Vec<String> {
        [
            "run",
            "--out",
            s(out),
            "--cell",
            "lstm",
            "--hidden",
            "24",
            "--steps",
            "3000",
        ]
        .map(String::from)
        .to_vec()
    };
    let plain = dir.join("plain");
    let o = gradlab(&args(&plain).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stopped = dir.join("stopped");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradlab"))
        .args(args(&stopped))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    signal(&child, "INT");
    let status = child.wait().unwrap();
    let (_, stderr) = output(&mut child);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "to continue: gradlab run --resume {}",
            s(&stopped)
        )),
        "{stderr}"
    );
    let o = gradlab(&["run", "--resume", s(&stopped)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("continues from its checkpoint at update"));
    assert_same_results(&plain, &stopped);
    // The final weights too.
    let weights = |d: &Path| {
        let p = std::fs::read_dir(d.join("checkpoints"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let ck = gradlab_experiments::model::checkpoint::load(&p.path()).unwrap();
        (
            ck.model
                .params
                .iter()
                .map(|x| x.to_bits())
                .collect::<Vec<_>>(),
            ck.config,
        )
    };
    assert_eq!(weights(&plain), weights(&stopped));
    // Nothing left to continue.
    let o = gradlab(&["run", "--resume", s(&stopped)]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("has no mid-run checkpoint"),
        "{}",
        text(&o.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
}
