//! `gradlab sweep`, `status` and `compact` as a user runs them: malformed specs, resume after
//! SIGKILL at several points, crashes inside runs, shards, compaction, and output folders that
//! cannot be written. Each test compares against an uninterrupted sweep, so each can fail.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{assert_same_results, gradlab, ids, s, sweep_ok, text, tmpdir, wait_for, write_spec};
use gradlab_experiments::store::{self, read_table};
use gradlab_experiments::sweep::status::folders;

/// The temporary files gradlab left in the results folder `dir`.
fn temporaries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    gradlab_experiments::fs::temporaries(&folders(dir))
}

fn spawn_sweep(args: &[&str], delay_ms: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gradlab"))
        .arg("sweep")
        .args(args)
        .env("GRADLAB_TEST_WRITE_DELAY_MS", delay_ms.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn kill(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

fn count(dir: &Path, table: &str) -> usize {
    store::parts(dir, table).unwrap().len()
}

/// Every file in a folder tree with its contents, to show that nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
                out.push((p, Vec::new()));
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn malformed_specs_name_file_line_and_key_and_change_nothing() {
    let dir = tmpdir("sweep-bad");
    let existing = dir.join("existing");
    sweep_ok(&[s(&write_spec(&dir)), "--out", s(&existing), "--jobs", "2"]);
    let before = snapshot(&existing);
    let head = "name = \"x\"\nseeds = [0]\n";
    #[rustfmt::skip]
    let cases: Vec<(&str, String, Vec<&str>, Vec<&str>)> = vec![
        ("bad TOML", format!("{head}[base\n"), vec![], vec![":3:", "unclosed table"]),
        ("unclosed array", "name = \"x\"\nseeds = [0\n".into(), vec![], vec![":2:", "unclosed array"]),
        ("unknown top-level key", format!("{head}colour = 3\n"), vec![], vec![":3:", "unknown field `colour`", "`grid`"]),
        ("unknown base key", format!("{head}[base]\nhiden = 3\n"), vec![], vec![":4:", "unknown key 'hiden'", "hidden"]),
        ("unknown grid key", format!("{head}[grid]\nwidth = [1, 2]\n"), vec![], vec![":4:", "unknown key 'width'", "hidden"]),
        ("wrong type", format!("{head}[base]\nhidden = \"big\"\n"), vec![], vec![":4:", "'hidden'", "expected usize"]),
        ("bad value", format!("{head}[base]\nclip = \"norm:-1\"\n"), vec![], vec![":4:", "'clip'", "none, norm:<τ> or value:<τ>"]),
        ("bad enum value in grid", format!("{head}[grid]\ncell = [\"rnn\", \"transformer\"]\n"), vec![], vec![":4:", "'cell'", "expected one of `rnn`, `lstm`, `gru`"]),
        ("zero hidden", format!("{head}[base]\nhidden = 0\n"), vec![], vec![":4:", "'hidden'", "at least 1"]),
        ("k1 > k2", format!("{head}[base]\ntruncation_k1 = 50\n[grid]\ntruncation_k2 = [10, 100]\n"), vec![], vec![":4:", "truncation_k1", "must not exceed truncation_k2 = 10"]),
        ("empty axis", format!("{head}[grid]\nhidden = []\n"), vec![], vec![":4:", "hidden", "empty"]),
        ("empty grid", format!("{head}[grid]\n"), vec![], vec![":3:", "[grid] has no axes"]),
        ("axis not a list", format!("{head}[grid]\nhidden = 5\n"), vec![], vec![":4:", "list of values"]),
        ("duplicate axis", format!("{head}[grid]\nhidden = [1]\nhidden = [2]\n"), vec![], vec![":5:", "duplicate key"]),
        ("duplicate axis value", format!("{head}[grid]\nlr = [0.1, 0.1]\n"), vec![], vec![":4:", "lr", "0.1 is listed twice"]),
        ("axis in grid and random", format!("{head}[grid]\nlr = [0.1]\n[random]\nn = 2\nlr = {{ uniform = [0.01, 0.1] }}\n"), vec![], vec![":7:", "lr is also a [grid] axis"]),
        ("bad distribution", format!("{head}[random]\nn = 3\nlr = {{ uniform = [1, 0] }}\n"), vec![], vec![":5:", "lr", "lo < hi"]),
        ("random without n", format!("{head}[random]\nlr = {{ uniform = [0.1, 1] }}\n"), vec![], vec![":3:", "missing n"]),
        ("empty seeds", "name = \"x\"\nseeds = []\n".into(), vec![], vec![":2:", "seeds is empty"]),
        ("negative seed", "name = \"x\"\nseeds = [-1]\n".into(), vec![], vec![":2:", "expected u64"]),
        ("missing name", "seeds = [0]\n".into(), vec![], vec!["missing field `name`"]),
        ("path as name", "name = \"../x\"\nseeds = [0]\n".into(), vec![], vec![":1:", "invalid sweep name", "letters, digits"]),
        ("seed in base", format!("{head}[base]\nseed = 3\n"), vec![], vec![":4:", "'seed' cannot be set here"]),
        ("shard outside 0..N", head.into(), vec!["--shard", "3/2"], vec!["invalid shard '3/2'", "0 <= i < N"]),
        ("shard not i/N", head.into(), vec!["--shard", "two"], vec!["invalid shard 'two'"]),
        ("unknown --set key", head.into(), vec!["--set", "hiden=3"], vec!["--set hiden=3", "unknown key 'hiden'"]),
        ("--set on a swept key", format!("{head}[grid]\nhidden = [1, 2]\n"), vec!["--set", "hidden=3"], vec!["'hidden' is swept", "--grid hidden="]),
        ("empty --grid", head.into(), vec!["--grid", "hidden="], vec!["--grid hidden=", "empty"]),
        ("--grid bad value", head.into(), vec!["--grid", "depth=1,0"], vec!["--grid depth=1,0", "'depth'", "at least 1"]),
        ("missing text file", format!("{head}[base]\ntask = \"charlm\"\ntext = \"/no/such/file.txt\"\n"), vec![], vec!["/no/such/file.txt", "does not exist"]),
    ];
    assert!(cases.len() >= 15);
    for (what, spec, extra, expected) in &cases {
        let path = dir.join("bad.toml");
        std::fs::write(&path, spec).unwrap();
        for out in [&existing, &dir.join("fresh")] {
            let o = gradlab(&[&["sweep", s(&path), "--out", s(out)], &extra[..]].concat());
            let err = text(&o.stderr);
            assert!(!o.status.success(), "{what}: accepted");
            for e in expected {
                assert!(err.contains(e), "{what}: {e:?} not in {err:?}");
            }
            if !extra.iter().any(|a| a.starts_with("--")) && !what.contains("text") {
                assert!(err.contains("bad.toml"), "{what}: no file name in {err:?}");
            }
        }
        assert_eq!(
            snapshot(&existing),
            before,
            "{what}: the output folder changed"
        );
        assert!(
            !dir.join("fresh").exists(),
            "{what}: an output folder was created"
        );
    }
}

#[test]
fn sweeps_resume_and_give_the_same_results_whatever_jobs() {
    let dir = tmpdir("sweep-jobs");
    let spec = write_spec(&dir);
    let (one, two) = (dir.join("one"), dir.join("two"));
    let dry = sweep_ok(&[s(&spec), "--out", s(&one), "--dry-run"]);
    assert!(dry.contains("8 runs; in") && dry.contains("0 complete, 0 failed, 8 missing"));
    assert!(!one.exists(), "--dry-run wrote the output folder");
    let out = sweep_ok(&[s(&spec), "--out", s(&one), "--jobs", "1"]);
    assert!(out.contains("8 to run"), "{out}");
    sweep_ok(&[s(&spec), "--out", s(&two), "--jobs", "2"]);
    assert_same_results(&one, &two);
    let again = sweep_ok(&[s(&spec), "--out", s(&one)]);
    assert!(again.contains("8 already complete, 0 to run"), "{again}");
    // The written sweep.toml runs the same runs.
    assert_eq!(ids(&one.join("sweep.toml")), ids(&spec));
    let again = sweep_ok(&[s(&one.join("sweep.toml")), "--out", s(&one)]);
    assert!(again.contains("0 to run"), "{again}");
    // --grid adds runs; the old ones are kept and not rerun.
    let more = sweep_ok(&[
        s(&spec),
        "--out",
        s(&one),
        "--grid",
        "clip=none,norm:1,value:0.5",
    ]);
    assert!(
        more.contains("12 runs, 8 already complete, 4 to run"),
        "{more}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(one.join("manifest.json")).unwrap()).unwrap();
    for key in [
        "gradlab_version",
        "git_commit",
        "rustc",
        "host",
        "isa",
        "cpu_features",
    ] {
        assert!(!manifest[key].is_null(), "manifest.json lacks {key}");
    }
}

#[test]
fn sigkill_at_several_points_then_rerun_completes_exactly_once() {
    let dir = tmpdir("sweep-kill");
    let spec = write_spec(&dir);
    let (clean, killed) = (dir.join("clean"), dir.join("killed"));
    sweep_ok(&[s(&spec), "--out", s(&clean), "--jobs", "2"]);
    let args = [s(&spec), "--out", s(&killed), "--jobs", "2"];

    // 1. During a write (a temporary file exists).
    let child = spawn_sweep(&args, 300);
    wait_for("a temporary file", || !temporaries(&killed).is_empty());
    kill(child);
    assert!(
        !temporaries(&killed).is_empty(),
        "the kill left no partial file"
    );

    // 2. During a run (between writes, after a run completed).
    let child = spawn_sweep(&args, 30);
    let before = count(&killed, "runs");
    wait_for("a completed run", || count(&killed, "runs") > before);
    kill(child);

    // 3. While the completion marker itself is being written.
    let child = spawn_sweep(&args, 300);
    wait_for("a temporary runs file", || {
        temporaries(&killed)
            .iter()
            .any(|p| p.parent().unwrap().ends_with("runs"))
    });
    kill(child);
    let done = count(&killed, "runs");
    assert!(
        done < 8,
        "the kills came too late to test anything ({done} runs done)"
    );

    let out = sweep_ok(&args);
    assert!(out.contains(&format!("{done} already complete")), "{out}");
    assert!(temporaries(&killed).is_empty(), "temporary files remain");
    let runs = read_table(&killed, "runs").unwrap().unwrap();
    let ids: BTreeSet<&str> = runs
        .column("run_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(runs.height(), 8);
    assert_eq!(ids.len(), 8, "a run_id appears twice");
    assert_same_results(&clean, &killed);
}

#[test]
fn a_panicking_run_is_recorded_the_others_finish_and_a_rerun_retries_it() {
    let dir = tmpdir("sweep-panic");
    let spec = write_spec(&dir);
    let bad = ids(&spec)[2].clone();
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_gradlab"))
        .args(["sweep", s(&spec), "--out", s(&out), "--jobs", "2"])
        .env("GRADLAB_TEST_PANIC_RUN", &bad)
        .output()
        .unwrap();
    assert!(!o.status.success(), "a sweep with a failed run exits 0");
    assert!(
        text(&o.stderr).contains("1 runs failed"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(count(&out, "runs"), 7);
    let failed = std::fs::read_to_string(out.join("failed").join(format!("{bad}.json"))).unwrap();
    assert!(failed.contains("injected panic"), "{failed}");
    let status = text(&gradlab(&["status", s(&out)]).stdout);
    assert!(
        status.contains("7 complete (0 diverged), 1 failed, 0 missing"),
        "{status}"
    );
    assert!(status.contains(&format!("failed {bad}")), "{status}");

    sweep_ok(&[s(&spec), "--out", s(&out)]);
    assert_eq!(count(&out, "runs"), 8);
    assert!(!out.join("failed").join(format!("{bad}.json")).exists());
    let status = text(&gradlab(&["status", s(&out)]).stdout);
    assert!(
        status.contains("8 complete (0 diverged), 0 failed, 0 missing"),
        "{status}"
    );

    // --fail-fast: nothing starts after the failure (one thread: runs 0 and 1 came before).
    let ff = dir.join("ff");
    let o = Command::new(env!("CARGO_BIN_EXE_gradlab"))
        .args([
            "sweep",
            s(&spec),
            "--out",
            s(&ff),
            "--jobs",
            "1",
            "--fail-fast",
        ])
        .env("GRADLAB_TEST_PANIC_RUN", &bad)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o.stdout).contains("5 not started"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(count(&ff, "runs"), 2);
}

#[test]
fn concurrent_shards_into_one_folder_make_the_whole_sweep() {
    let dir = tmpdir("sweep-shards");
    let spec = write_spec(&dir);
    let (whole, sharded) = (dir.join("whole"), dir.join("sharded"));
    sweep_ok(&[s(&spec), "--out", s(&whole), "--jobs", "1"]);
    let children: Vec<Child> = (0..3)
        .map(|i| {
            let shard = format!("{i}/3");
            spawn_sweep(
                &[
                    s(&spec),
                    "--out",
                    s(&sharded),
                    "--jobs",
                    "1",
                    "--shard",
                    &shard,
                ],
                0,
            )
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_same_results(&whole, &sharded);
    let dry = sweep_ok(&[
        s(&spec),
        "--out",
        s(&sharded),
        "--shard",
        "1/3",
        "--dry-run",
    ]);
    assert!(
        dry.contains("shard 1/3 holds 3") && dry.contains("8 complete"),
        "{dry}"
    );
}

#[test]
fn compact_merges_parts_without_losing_a_row_even_when_killed() {
    let dir = tmpdir("sweep-compact");
    let spec = write_spec(&dir);
    let (plain, out) = (dir.join("plain"), dir.join("out"));
    sweep_ok(&[s(&spec), "--out", s(&plain), "--jobs", "2"]);
    sweep_ok(&[
        s(&spec),
        "--out",
        s(&out),
        "--jobs",
        "2",
        "--grid",
        "clip=none",
    ]);

    // Killed while writing the merged file: the parts are all still there.
    let child = Command::new(env!("CARGO_BIN_EXE_gradlab"))
        .args(["compact", s(&out)])
        .env("GRADLAB_TEST_WRITE_DELAY_MS", "2000")
        .spawn()
        .unwrap();
    wait_for("a temporary compacted file", || {
        !temporaries(&out).is_empty()
    });
    kill(child);
    assert_eq!(count(&out, "steps"), 4);

    let o = gradlab(&["compact", s(&out)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The killed compaction's temporary file is removed by the next (issue 12).
    assert!(
        text(&o.stdout).contains("removed 1 temporary files left by a killed compaction")
            && text(&o.stdout).contains("runs: merged 4 part files"),
        "{}",
        text(&o.stdout)
    );
    assert!(temporaries(&out).is_empty());
    // More runs after compaction, then compaction again, with the rest of the grid.
    sweep_ok(&[s(&spec), "--out", s(&out), "--jobs", "2"]);
    let more = text(&gradlab(&["compact", s(&out)]).stdout);
    assert!(
        more.contains("runs: merged 4 part files") && more.contains("(8 rows)"),
        "{more}"
    );
    for table in store::TABLES {
        let files: Vec<_> = std::fs::read_dir(out.join(table))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, [store::COMPACTED], "{table}");
    }
    assert!(temporaries(&out).is_empty());
    assert_same_results(&plain, &out);
    let again = sweep_ok(&[s(&spec), "--out", s(&out)]);
    assert!(again.contains("8 already complete, 0 to run"), "{again}");
    let status = text(&gradlab(&["status", s(&out)]).stdout);
    assert!(status.contains("8 complete"), "{status}");
}

#[test]
fn unwritable_missing_or_foreign_folders_are_clear_errors_before_any_run() {
    let dir = tmpdir("sweep-folders");
    let spec = write_spec(&dir);
    let ro = dir.join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&ro, perms).unwrap();
    let o = gradlab(&["sweep", s(&spec), "--out", s(&ro)]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("is read-only"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        std::fs::read_dir(&ro).unwrap().count(),
        0,
        "something was written"
    );

    let missing = dir.join("no").join("such").join("out");
    let o = gradlab(&["sweep", s(&spec), "--out", s(&missing)]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("does not exist"),
        "{}",
        text(&o.stderr)
    );
    assert!(!dir.join("no").exists());

    for verb in ["status", "compact"] {
        let o = gradlab(&[verb, s(&dir.join("nowhere"))]);
        assert!(!o.status.success());
        assert!(text(&o.stderr).contains("nowhere"), "{}", text(&o.stderr));
        let o = gradlab(&[verb, s(&dir)]);
        assert!(!o.status.success());
        assert!(
            text(&o.stderr).contains("not a"),
            "{verb}: {}",
            text(&o.stderr)
        );
    }
}
