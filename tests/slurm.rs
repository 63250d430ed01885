//! `gradlab sweep --slurm` on a real one-node Slurm cluster (`scripts/local-slurm.sh setup`
//! starts one): the job array's results equal a local run's, and resubmitting after a loss
//! runs only what is missing. Skips, saying why, where no Slurm cluster answers; CI starts one
//! and sets GRADLAB_REQUIRE_SLURM=1, which turns the skip into a failure.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_same_results, s, sweep_ok, tmpdir, write_spec};

/// Why no Slurm cluster can take jobs here, if it cannot.
fn slurm_unavailable() -> Option<String> {
    let hint = "start one with: scripts/local-slurm.sh setup";
    match Command::new("sinfo").args(["-h", "-o", "%T"]).output() {
        Err(e) => Some(format!(
            "sinfo cannot run ({e}): Slurm is not installed; {hint}"
        )),
        Ok(o) if !o.status.success() => Some(format!(
            "sinfo failed (is slurmctld running?): {}; {hint}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(o) => {
            let states = String::from_utf8_lossy(&o.stdout).to_string();
            let up = states
                .lines()
                .any(|l| ["idle", "mixed", "allocated"].contains(&l.trim()));
            (!up).then(|| format!("no Slurm node is up (states: {states:?}); {hint}"))
        }
    }
}

/// Submits with `gradlab sweep --slurm EXTRA` and returns the job id and what it printed.
fn submit(spec: &Path, out: &Path, extra: &[&str]) -> (Option<String>, String) {
    let stdout = sweep_ok(&[&[s(spec), "--out", s(out), "--slurm"][..], extra].concat());
    let job = stdout
        .lines()
        .find_map(|l| l.strip_prefix("submitted array job "))
        .map(|rest| rest.split(':').next().unwrap().to_string());
    (job, stdout)
}

/// Whether a Slurm cluster answers; if not, says why the test `name` skips (or fails, under
/// GRADLAB_REQUIRE_SLURM).
fn slurm_ready(name: &str) -> bool {
    let Some(reason) = slurm_unavailable() else {
        return true;
    };
    assert!(
        std::env::var_os("GRADLAB_REQUIRE_SLURM").is_none(),
        "GRADLAB_REQUIRE_SLURM is set, but {reason}"
    );
    eprintln!("skipping {name}: {reason}");
    false
}

#[test]
fn a_sweep_as_a_slurm_job_array_equals_a_local_run_and_resubmits_what_is_missing() {
    if !slurm_ready("the Slurm test") {
        return;
    }
    let dir = tmpdir("slurm");
    let spec = write_spec(&dir);
    let (local, cluster) = (dir.join("local"), dir.join("cluster"));
    sweep_ok(&[s(&spec), "--out", s(&local), "--jobs", "2"]);

    let (job, printed) = submit(&spec, &cluster, &["--array-parallelism", "2"]);
    let job = job.unwrap_or_else(|| panic!("no job id in {printed:?}"));
    assert!(
        printed.contains("8 tasks (of 8 shards) for 8 missing runs"),
        "{printed}"
    );
    let script = std::fs::read_to_string(cluster.join("slurm").join("array.sbatch")).unwrap();
    assert!(
        script.contains("--shard \"$SLURM_ARRAY_TASK_ID/8\""),
        "{script}"
    );
    wait_releasing_requeues(&job);
    let logs = std::fs::read_dir(cluster.join("slurm")).unwrap().count();
    assert_eq!(logs, 9, "expected the script and 8 task logs");
    assert_same_results(&local, &cluster);

    // Lose one run; a resubmission runs only its shard.
    let lost = gradlab_experiments::store::parts(&cluster, "runs").unwrap()[3]
        .1
        .clone();
    std::fs::remove_file(&lost).unwrap();
    let (job, printed) = submit(&spec, &cluster, &["--array-parallelism", "2"]);
    assert!(
        printed.contains("1 tasks (of 8 shards) for 1 missing runs"),
        "{printed}"
    );
    wait_releasing_requeues(&job.unwrap());
    assert_same_results(&local, &cluster);
    let (job, printed) = submit(&spec, &cluster, &["--array-parallelism", "2"]);
    assert!(
        job.is_none() && printed.contains("nothing to submit"),
        "{printed}"
    );
}

/// One run of 2-3 minutes on one CPU: past the warning of a task limited to 2 minutes.
const LONG_RUN: &str = r#"name = "long"
seeds = [0]

[base]
task = "adding"
cell = "lstm"
hidden = 128
seq_len = 100
steps = 12000
log_every = 100
eval_every = 2000
eval_sequences = 100
"#;

/// Waits for every task of `job` to end (squeue lists a task being requeued as gone for a
/// moment, so this reads the tasks' states); a requeued task waits about two minutes before
/// Slurm starts it again (its begin time), which this shortens to 15 s (`scontrol update
/// StartTime=now`). Returns how many times it did.
fn wait_releasing_requeues(job: &str) -> usize {
    const ENDED: [&str; 6] = [
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
    ];
    let start = Instant::now();
    let mut released = 0;
    let mut pending = std::collections::HashMap::new();
    loop {
        let o = Command::new("scontrol")
            .args(["show", "job", job])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let field = |task: &str, key: &str| {
            task.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(String::from)
        };
        let tasks: Vec<&str> = text
            .split("\n\n")
            .filter(|t| t.contains("JobState="))
            .collect();
        if !tasks.is_empty()
            && tasks
                .iter()
                .all(|t| field(t, "JobState=").is_some_and(|s| ENDED.contains(&s.as_str())))
        {
            return released;
        }
        for t in tasks.iter().filter(|t| t.contains("Reason=BeginTime")) {
            let id = format!(
                "{}_{}",
                field(t, "ArrayJobId=").unwrap(),
                field(t, "ArrayTaskId=").unwrap()
            );
            // Started at once, the task finds the credential of its last start revoked and
            // fails: give slurmd a moment to finish the old one.
            let since = *pending.entry(id.clone()).or_insert_with(Instant::now);
            if since.elapsed() < Duration::from_secs(15) {
                continue;
            }
            let ok = Command::new("scontrol")
                .args(["update", &format!("JobId={id}"), "StartTime=now"])
                .status()
                .unwrap()
                .success();
            assert!(ok, "cannot release the requeued task {id}");
            pending.remove(&id);
            released += 1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "job {job} did not finish:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_task_warned_before_its_time_limit_checkpoints_requeues_and_equals_a_local_sweep() {
    if !slurm_ready("the Slurm requeue test") {
        return;
    }
    let dir = tmpdir("slurm-requeue");
    let spec = dir.join("long.toml");
    std::fs::write(&spec, LONG_RUN).unwrap();
    let (local, cluster) = (dir.join("local"), dir.join("cluster"));
    // A 2-minute limit with the warning 30 s before it: Slurm sends it 30-70 s before the
    // limit, while the run is still training: 12,000 updates take about 90 s alone on this
    // 2-core machine and longer beside the local sweep (8,000, as before, could end before the
    // warning on a quiet machine).
    let (job, stdout) = submit(&spec, &cluster, &["--time", "2", "--signal-before", "30"]);
    let job = job.unwrap_or_else(|| panic!("no job id in {stdout}"));
    // The local sweep runs meanwhile, on the other core.
    let local_sweep = std::thread::spawn({
        let (spec, local) = (spec.clone(), local.clone());
        move || sweep_ok(&[s(&spec), "--out", s(&local), "--jobs", "1"])
    });
    let requeues = wait_releasing_requeues(&job);
    local_sweep.join().unwrap();
    assert!(requeues >= 1, "the task was never requeued");
    let log = std::fs::read_to_string(cluster.join("slurm").join(format!("{job}_0.out")))
        .unwrap_or_default();
    assert!(
        log.contains("stopped by SIGUSR1") && log.contains("requeueing"),
        "the task was not warned and requeued:\n{log}"
    );
    assert!(
        log.contains("continues from its checkpoint at update"),
        "the requeued task did not continue from the checkpoint:\n{log}"
    );
    assert_same_results(&local, &cluster);
    let left: Vec<_> = std::fs::read_dir(cluster.join("checkpoints"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "checkpoints left: {left:?}");
}
