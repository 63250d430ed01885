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

/// Submits with `gradlab sweep --slurm` and returns the job id and what it printed.
fn submit(spec: &Path, out: &Path) -> (Option<String>, String) {
    let stdout = sweep_ok(&[
        s(spec),
        "--out",
        s(out),
        "--slurm",
        "--array-parallelism",
        "2",
    ]);
    let job = stdout
        .lines()
        .find_map(|l| l.strip_prefix("submitted array job "))
        .map(|rest| rest.split(':').next().unwrap().to_string());
    (job, stdout)
}

fn wait_for_job(job: &str) {
    let start = Instant::now();
    loop {
        let o = Command::new("squeue")
            .args(["-h", "-j", job])
            .output()
            .unwrap();
        if o.status.success() && o.stdout.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "job {job} did not finish"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_sweep_as_a_slurm_job_array_equals_a_local_run_and_resubmits_what_is_missing() {
    if let Some(reason) = slurm_unavailable() {
        assert!(
            std::env::var_os("GRADLAB_REQUIRE_SLURM").is_none(),
            "GRADLAB_REQUIRE_SLURM is set, but {reason}"
        );
        eprintln!("skipping the Slurm test: {reason}");
        return;
    }
    let dir = tmpdir("slurm");
    let spec = write_spec(&dir);
    let (local, cluster) = (dir.join("local"), dir.join("cluster"));
    sweep_ok(&[s(&spec), "--out", s(&local), "--jobs", "2"]);

    let (job, printed) = submit(&spec, &cluster);
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
    wait_for_job(&job);
    let logs = std::fs::read_dir(cluster.join("slurm")).unwrap().count();
    assert_eq!(logs, 9, "expected the script and 8 task logs");
    assert_same_results(&local, &cluster);

    // Lose one run; a resubmission runs only its shard.
    let lost = gradlab_experiments::store::parts(&cluster, "runs").unwrap()[3]
        .1
        .clone();
    std::fs::remove_file(&lost).unwrap();
    let (job, printed) = submit(&spec, &cluster);
    assert!(
        printed.contains("1 tasks (of 8 shards) for 1 missing runs"),
        "{printed}"
    );
    wait_for_job(&job.unwrap());
    assert_same_results(&local, &cluster);
    let (job, printed) = submit(&spec, &cluster);
    assert!(
        job.is_none() && printed.contains("nothing to submit"),
        "{printed}"
    );
}
