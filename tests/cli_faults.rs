//! Sweep folders that survive faults and many processes (issue 12): damaged Parquet parts, a
//! full disk, a read-only or vanished folder mid-sweep, four `gradlab sweep` processes on one
//! folder, and `gradlab compact` killed or interrupted. Each test compares against an
//! uninterrupted sweep, so each can fail.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{assert_same_results, gradlab, ids, s, sweep_ok, text, tmpdir, wait_for, write_spec};
use gradlab_experiments::store;
use gradlab_experiments::sweep::status::folders;
use polars::prelude::*;

/// Bytes the disk-fault tests let through: `sweep.toml`, `manifest.json` and about two and a
/// half runs of [`common::SPEC`] (a run writes about 34 kB).
const FAULT_AFTER_BYTES: u64 = 90_000;

fn part(dir: &Path, table: &str, id: &str) -> PathBuf {
    dir.join(table).join(format!("{id}.parquet"))
}

/// `gradlab ARGS` with the test hook `GRADLAB_TEST_DISK_FAULT=<errno>:<bytes>`.
fn with_disk_fault(args: &[&str], errno: i32, bytes: u64) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradlab"))
        .args(args)
        .env("GRADLAB_TEST_DISK_FAULT", format!("{errno}:{bytes}"))
        .output()
        .unwrap()
}

/// Every row of `table` as a glob reader sees it: every Parquet file in its folder, the
/// compacted one included.
fn glob_read(dir: &Path, table: &str) -> DataFrame {
    let mut frames = Vec::new();
    for e in std::fs::read_dir(dir.join(table)).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".parquet") && !name.starts_with('.') {
            frames.push(store::read_parquet(&p).unwrap());
        }
    }
    store::concat_aligned(frames).unwrap().unwrap()
}

/// Regression (issue 12): a truncated or empty `runs/` part made `gradlab sweep` say "8 already
/// complete, 0 to run" while `status`, `report` and `compact` failed on it with a thrift error,
/// and a run whose `layers/` part was deleted counted as complete.
#[test]
fn damaged_parts_are_listed_never_read_as_results_and_run_again() {
    let dir = tmpdir("faults-damaged");
    let spec = write_spec(&dir);
    let (clean, out) = (dir.join("clean"), dir.join("out"));
    sweep_ok(&[s(&spec), "--out", s(&clean), "--jobs", "2"]);
    sweep_ok(&[s(&spec), "--out", s(&out), "--jobs", "2"]);
    let ids = ids(&spec);
    let truncated = part(&out, "runs", &ids[0]);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(part(&out, "steps", &ids[1]), b"").unwrap();
    std::fs::remove_file(part(&out, "layers", &ids[2])).unwrap();

    let status = text(&gradlab(&["status", s(&out)]).stdout);
    assert!(
        status.contains("5 complete") && status.contains("3 runs have damaged or missing files"),
        "{status}"
    );
    for (id, problem) in [
        (&ids[0], "truncated"),
        (&ids[1], "empty file"),
        (&ids[2], "missing"),
    ] {
        assert!(
            status
                .lines()
                .any(|l| l.contains(id.as_str()) && l.contains(problem)),
            "{id} {problem}: {status}"
        );
    }

    let report = |extra: &[&str]| {
        let args = [
            &["report", s(&out), "--no-plots", "--format", "md"][..],
            extra,
        ]
        .concat();
        gradlab(&args)
    };
    let r = report(&[]);
    assert!(!r.status.success());
    let err = text(&r.stderr);
    assert!(
        err.contains("3 runs have damaged or missing files") && !err.contains("thrift"),
        "{err}"
    );
    let r = report(&["--partial"]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert!(
        text(&r.stdout).contains("5 of 8 runs complete"),
        "{}",
        text(&r.stdout)
    );

    let o = gradlab(&["compact", s(&out)]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("3 runs in") && err.contains(s(&truncated)) && !err.contains("thrift"),
        "{err}"
    );
    assert_eq!(
        store::parts(&out, "steps").unwrap().len(),
        8,
        "compact changed nothing"
    );

    let o = gradlab(&["sweep", s(&spec), "--out", s(&out), "--jobs", "2"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("5 already complete, 3 to run"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        text(&o.stderr).contains("3 runs have damaged or missing files"),
        "{}",
        text(&o.stderr)
    );
    assert_same_results(&clean, &out);
    // Kept for inspection: the two damaged files and the three runs' completion markers
    // (one of which was the truncated file).
    let aside = |table: &str| {
        std::fs::read_dir(out.join("damaged").join(table))
            .unwrap()
            .count()
    };
    assert_eq!((aside("runs"), aside("steps")), (3, 1));
    let o = gradlab(&["compact", s(&out)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&gradlab(&["status", s(&out)]).stdout).contains("8 complete"));
}

/// Regression (issue 12): on a full disk the sweep kept training every remaining run, recorded
/// 2 of 14 failures and said "Invalid thrift: transport error". Now the first such write stops
/// it from starting runs, names the folder, lists the failures it could not record, and a rerun
/// completes the sweep. The same for a folder that became read-only (the hook, since root
/// writes to read-only folders), and for `gradlab compact`.
#[test]
fn a_full_or_read_only_disk_stops_the_sweep_and_a_rerun_completes_it() {
    let dir = tmpdir("faults-disk");
    let spec = write_spec(&dir);
    let clean = dir.join("clean");
    sweep_ok(&[s(&spec), "--out", s(&clean), "--jobs", "2"]);
    for (errno, says) in [(28, "no space left on"), (30, "is read-only")] {
        let out = dir.join(format!("out-{errno}"));
        let args = ["sweep", s(&spec), "--out", s(&out), "--jobs", "2"];
        let o = with_disk_fault(&args, errno, FAULT_AFTER_BYTES);
        assert!(!o.status.success());
        let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
        assert!(
            stderr.contains(says) && stderr.contains(s(&out)) && !stderr.contains("thrift"),
            "{stderr}"
        );
        assert!(
            stdout.contains("not started (the results folder)"),
            "{stdout}"
        );
        // Every write fails now, failure records too: each failed run is named instead.
        let unrecorded = stderr
            .lines()
            .find(|l| l.starts_with("could not record the failures of"))
            .unwrap_or_else(|| panic!("{stderr}"));
        let complete = store::completed_ids(&out).unwrap();
        let failed: Vec<String> = ids(&spec)
            .into_iter()
            .filter(|id| !complete.contains(id) && unrecorded.contains(id.as_str()))
            .collect();
        assert!(
            !failed.is_empty() && complete.len() + failed.len() < 8,
            "{stderr}"
        );
        assert!(store::health(&out).unwrap().damaged.is_empty());

        let again = sweep_ok(&[s(&spec), "--out", s(&out), "--jobs", "2"]);
        assert!(
            again.contains(&format!("{} already complete", complete.len())),
            "{again}"
        );
        assert_same_results(&clean, &out);
    }

    let out = dir.join("out-28");
    let o = with_disk_fault(&["compact", s(&out)], 28, 0);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("no space left on {}", s(&out)))
            && err.contains("the parts were kept"),
        "{err}"
    );
    assert_eq!(store::parts(&out, "runs").unwrap().len(), 8);
    assert!(gradlab_experiments::fs::temporaries(&folders(&out)).is_empty());
    assert!(gradlab(&["compact", s(&out)]).status.success());
    assert_same_results(&clean, &out);
}

/// A results folder moved away (or unmounted) mid-sweep: the sweep stops with its path instead
/// of writing the rest into a new empty folder; put back, a rerun completes it.
#[test]
fn a_folder_vanished_mid_sweep_is_named_and_a_rerun_completes_it() {
    let dir = tmpdir("faults-vanished");
    let spec = write_spec(&dir);
    let (clean, out, moved) = (dir.join("clean"), dir.join("out"), dir.join("moved"));
    sweep_ok(&[s(&spec), "--out", s(&clean), "--jobs", "2"]);
    let child = Command::new(env!("CARGO_BIN_EXE_gradlab"))
        .args(["sweep", s(&spec), "--out", s(&out), "--jobs", "1"])
        .env("GRADLAB_TEST_WRITE_DELAY_MS", "200")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("a complete run", || {
        store::parts(&out, "runs").is_ok_and(|p| !p.is_empty())
    });
    std::fs::rename(&out, &moved).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("the results folder {} has vanished", s(&out))),
        "{err}"
    );
    assert!(!out.exists(), "the folder was made again");
    std::fs::rename(&moved, &out).unwrap();
    sweep_ok(&[s(&spec), "--out", s(&out), "--jobs", "2"]);
    assert_same_results(&clean, &out);
    assert!(gradlab_experiments::fs::temporaries(&folders(&out)).is_empty());
}

/// A real full disk: a small tmpfs (root only; skipped with the reason otherwise), grown after
/// the failure as a user would free space.
#[test]
fn a_real_full_tmpfs_stops_the_sweep_and_a_rerun_after_growing_it_completes() {
    let dir = tmpdir("faults-tmpfs");
    let spec = write_spec(&dir);
    let (clean, mount) = (dir.join("clean"), dir.join("mnt"));
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=128k", "tmpfs", s(&mount)])
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!("skipping: cannot mount a tmpfs here: {}", text(&o.stderr));
            return;
        }
        Err(e) => {
            eprintln!("skipping: cannot run mount: {e}");
            return;
        }
    }
    let out = mount.join("out");
    let result = std::panic::catch_unwind(|| {
        sweep_ok(&[s(&spec), "--out", s(&clean), "--jobs", "2"]);
        let o = gradlab(&["sweep", s(&spec), "--out", s(&out), "--jobs", "2"]);
        assert!(!o.status.success());
        let err = text(&o.stderr);
        assert!(
            err.contains(&format!("no space left on {}", s(&out))),
            "{err}"
        );
        assert!(store::health(&out).unwrap().damaged.is_empty());
        let grown = Command::new("mount")
            .args(["-o", "remount,size=16m", s(&mount)])
            .status()
            .unwrap();
        assert!(grown.success());
        sweep_ok(&[s(&spec), "--out", s(&out), "--jobs", "2"]);
        assert_same_results(&clean, &out);
    });
    Command::new("umount").arg(s(&mount)).status().unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Regression (issue 12): two independent `gradlab sweep` processes on one spec and folder ran
/// every run twice, and with a `compact` in between a glob reader saw a run twice. With claims,
/// four processes (and a compaction meanwhile) execute each run once.
#[test]
fn four_sweeps_on_one_folder_execute_each_run_once() {
    let dir = tmpdir("faults-four");
    let spec = write_spec(&dir);
    let (clean, out) = (dir.join("clean"), dir.join("out"));
    let seeds = ["--seeds", "0,1,2"];
    sweep_ok(&[&[s(&spec), "--out", s(&clean)][..], &seeds].concat());
    let children: Vec<Child> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_gradlab"))
                .args(
                    [
                        &["sweep", s(&spec), "--out", s(&out), "--jobs", "1"][..],
                        &seeds,
                    ]
                    .concat(),
                )
                .env("GRADLAB_TEST_WRITE_DELAY_MS", "50")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_for("two complete runs", || {
        store::parts(&out, "runs").is_ok_and(|p| p.len() >= 2)
    });
    let o = gradlab(&["compact", s(&out)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // One line per run a process executed (stderr is not a terminal): `[i/n] <run_id> ...`.
    let mut executed: BTreeMap<String, usize> = BTreeMap::new();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        for line in text(&o.stderr).lines().filter(|l| l.contains("final loss")) {
            let (_, rest) = line.split_once("] ").unwrap();
            let id = rest.split_whitespace().next().unwrap().to_string();
            *executed.entry(id).or_default() += 1;
        }
    }
    let all = ids(&out.join("sweep.toml"));
    assert_eq!(all.len(), 12);
    assert!(
        all.iter().all(|id| executed.get(id) == Some(&1)),
        "{executed:?}"
    );
    assert_eq!(executed.len(), all.len(), "{executed:?}");
    for table in ["runs", "steps"] {
        let df = glob_read(&out, table);
        let runs = df.column("run_id").unwrap().n_unique().unwrap();
        assert_eq!(runs, all.len(), "{table}");
        if table == "runs" {
            assert_eq!(df.height(), all.len(), "a run read twice");
        }
    }
    assert_same_results(&clean, &out);
    let claims = std::fs::read_dir(out.join("claims")).unwrap().count();
    assert_eq!(claims, 0, "every claim given back");
}

/// SIGTERM or SIGINT during `gradlab compact`: the table being merged is finished, the others
/// keep their parts, and the message says what was kept and how to continue (issue 12).
#[test]
fn an_interrupted_compaction_says_what_was_kept_and_how_to_finish() {
    let dir = tmpdir("faults-compact-signal");
    let spec = write_spec(&dir);
    let (clean, out) = (dir.join("clean"), dir.join("out"));
    sweep_ok(&[s(&spec), "--out", s(&clean), "--jobs", "2"]);
    sweep_ok(&[s(&spec), "--out", s(&out), "--jobs", "2"]);
    for signal in ["-TERM", "-INT"] {
        let child = Command::new(env!("CARGO_BIN_EXE_gradlab"))
            .args(["compact", s(&out)])
            .env("GRADLAB_TEST_WRITE_DELAY_MS", "1000")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("a temporary compacted file", || {
            !gradlab_experiments::fs::temporaries(&folders(&out)).is_empty()
        });
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let o = child.wait_with_output().unwrap();
        assert!(matches!(o.status.code(), Some(130 | 143)), "{:?}", o.status);
        let err = text(&o.stderr);
        assert!(
            err.contains("stopped by SIG")
                && err.contains("kept their part files")
                && err.contains(&format!("to continue: gradlab compact {}", s(&out))),
            "{signal}: {err}"
        );
        assert_same_results(&clean, &out);
    }
    let o = gradlab(&["compact", s(&out)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for table in store::TABLES {
        assert!(store::parts(&out, table).unwrap().is_empty(), "{table}");
    }
    assert_same_results(&clean, &out);
}
