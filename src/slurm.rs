//! `gradlab sweep --slurm`: a Slurm job array whose task i runs shard i of the sweep.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;
use gradlab_experiments::fs::write_bytes_atomic;
use gradlab_experiments::store;
use gradlab_experiments::sweep::{self, PlannedRun};

/// Slurm options of `gradlab sweep`.
#[derive(Args, Debug, Default)]
pub struct SlurmArgs {
    /// Write a Slurm job array for the sweep (results/<name>/slurm/array.sbatch) and submit it
    #[arg(long)]
    pub slurm: bool,
    /// Array tasks running at once (sbatch --array=...%K)
    #[arg(long, value_name = "K", requires = "slurm")]
    array_parallelism: Option<usize>,
    /// Array tasks, each one shard of the sweep [default: one per run, at most 1000]
    #[arg(long, value_name = "N", requires = "slurm")]
    array_tasks: Option<usize>,
    /// Slurm partition
    #[arg(long, value_name = "P", requires = "slurm")]
    partition: Option<String>,
    /// Time limit of each task (sbatch --time), e.g. 1:00:00
    #[arg(long, value_name = "T", requires = "slurm")]
    time: Option<String>,
    /// CPUs of each task; its runs use that many threads
    #[arg(long, value_name = "C", requires = "slurm", default_value_t = 1)]
    cpus_per_task: usize,
    /// Account to charge (sbatch --account)
    #[arg(long, value_name = "A", requires = "slurm")]
    account: Option<String>,
    /// Quality of service (sbatch --qos)
    #[arg(long, value_name = "Q", requires = "slurm")]
    qos: Option<String>,
    /// Memory of each task (sbatch --mem), e.g. 4G
    #[arg(long, value_name = "M", requires = "slurm")]
    mem: Option<String>,
    /// Node features a task needs (sbatch --constraint), e.g. 'avx512&ib'
    #[arg(long, value_name = "C", requires = "slurm")]
    constraint: Option<String>,
    /// Seconds before the time limit at which Slurm warns a task (sbatch
    /// --signal=B:USR1@<seconds>): its runs checkpoint and the task requeues itself, to
    /// continue where it stopped (0: no warning; a task killed at its limit is resubmitted by
    /// running the same `gradlab sweep --slurm` again)
    #[arg(
        long,
        value_name = "SECONDS",
        requires = "slurm",
        default_value_t = 120
    )]
    signal_before: u32,
    /// Any other sbatch option, written as an #SBATCH line (repeatable), e.g.
    /// --sbatch-arg=--gres=gpu:1 --sbatch-arg '--mail-type=END'
    #[arg(
        long,
        value_name = "ARG",
        requires = "slurm",
        allow_hyphen_values = true
    )]
    sbatch_arg: Vec<String>,
}

impl SlurmArgs {
    /// The `#SBATCH` lines of the pass-through options, in a fixed order; a value that would
    /// break the script (a newline) or an argument that is not an option is an error.
    fn directives(&self) -> Result<String> {
        let mut args: Vec<String> = [
            ("partition", &self.partition),
            ("time", &self.time),
            ("account", &self.account),
            ("qos", &self.qos),
            ("mem", &self.mem),
            ("constraint", &self.constraint),
        ]
        .into_iter()
        .filter_map(|(flag, v)| v.as_ref().map(|v| format!("--{flag}={v}")))
        .collect();
        if self.signal_before > 0 {
            // Tasks requeue themselves (and Slurm may requeue a preempted one): complete runs
            // are kept and checkpointed ones continue.
            args.push("--requeue".into());
            args.push(format!("--signal=B:USR1@{}", self.signal_before));
        }
        for arg in &self.sbatch_arg {
            if !arg.starts_with('-') {
                bail!(
                    "--sbatch-arg '{arg}': give an sbatch option with its dashes, e.g. \
                     --sbatch-arg=--gres=gpu:1"
                );
            }
            args.push(arg.clone());
        }
        let mut lines = String::new();
        for arg in args {
            if arg.contains(['\n', '\r']) || arg.trim().is_empty() {
                bail!("sbatch option {arg:?}: must be one non-empty line");
            }
            lines += &format!("#SBATCH {arg}\n");
        }
        Ok(lines)
    }
}

/// The end of the array script, after gradlab started in the background: Slurm's warning
/// (USR1, to this shell only) and a stop (TERM) are passed on to gradlab, which checkpoints its
/// runs and exits 128 + the signal; after the warning the task requeues itself, and its next
/// start continues from the checkpoints. `wait` returns early when a trapped signal arrives,
/// so it waits again until gradlab has exited.
const REQUEUE_ON_WARNING: &str = r#"pid=$!
trapped=0
trap 'trapped=1; kill -USR1 "$pid" 2>/dev/null' USR1
trap 'trapped=1; kill -TERM "$pid" 2>/dev/null' TERM
while :; do
  trapped=0
  wait "$pid"
  rc=$?
  [ "$trapped" = 1 ] || break
done
if [ "$rc" -eq 138 ]; then
  echo "gradlab: checkpointed before the time limit; requeueing ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
fi
exit "$rc"
"#;

/// A word for a POSIX shell, quoted.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `0-3,7,9-12` for sbatch --array.
fn ranges(indices: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            indices[i].to_string()
        } else {
            format!("{}-{}", indices[i], indices[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// Writes the array script into `dir/slurm/` and submits the tasks whose shard has runs still
/// missing (all of them the first time), so resubmitting finishes only what is missing.
/// `flags`: options every task's `gradlab sweep` gets (e.g. ` --save-weights`).
pub fn submit(
    a: &SlurmArgs,
    dir: &Path,
    runs: &[PlannedRun],
    flags: &str,
    dry_run: bool,
) -> Result<()> {
    if a.cpus_per_task == 0 {
        bail!("--cpus-per-task must be at least 1");
    }
    if a.array_parallelism == Some(0) {
        bail!("--array-parallelism must be at least 1");
    }
    let directives = a.directives()?;
    let n = a.array_tasks.unwrap_or(runs.len().min(1000));
    if n == 0 || n > runs.len() {
        bail!(
            "--array-tasks {n}: must be between 1 and the number of runs ({})",
            runs.len()
        );
    }
    let dir = std::path::absolute(dir).context("cannot resolve the output folder")?;
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    let exe = std::env::current_exe().context("cannot find the gradlab binary")?;
    let done = if dir.is_dir() {
        store::completed_ids(&dir)?
    } else {
        Default::default()
    };
    let pending: Vec<usize> = (0..n)
        .filter(|&i| {
            sweep::shard(runs, i, n)
                .iter()
                .any(|r| !done.contains(&r.id))
        })
        .collect();
    let missing = runs.iter().filter(|r| !done.contains(&r.id)).count();
    if pending.is_empty() {
        println!(
            "all {} runs are complete in {}; nothing to submit",
            runs.len(),
            dir.display()
        );
        return Ok(());
    }

    let slurm_dir = dir.join("slurm");
    let script_path = slurm_dir.join("array.sbatch");
    let mut script = format!(
        "#!/bin/bash\n\
         # Written by `gradlab sweep --slurm`. Task i of this array runs shard i/{n} of the sweep\n\
         # in {dir}; complete runs are skipped, so resubmitting finishes what is missing.\n\
         # The shard count is written out (not $SLURM_ARRAY_TASK_COUNT) because a resubmission\n\
         # runs only some of the tasks.\n\
         #SBATCH --job-name=gradlab-{name}\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --output={out}/%A_%a.out\n\
         #SBATCH --open-mode=append\n\
         #SBATCH --chdir={cwd}\n\
         #SBATCH --cpus-per-task={cpus}\n",
        dir = dir.display(),
        name = runs[0].config.name,
        last = n - 1,
        out = slurm_dir.display(),
        cwd = cwd.display(),
        cpus = a.cpus_per_task,
    );
    script += &directives;
    script += &format!(
        "set -u\n{exe} sweep {spec} --out {dir} --jobs \"${{SLURM_CPUS_PER_TASK:-1}}\" \
         --shard \"$SLURM_ARRAY_TASK_ID/{n}\"{flags} &\n{REQUEUE_ON_WARNING}",
        exe = quote(&exe.to_string_lossy()),
        spec = quote(&dir.join("sweep.toml").to_string_lossy()),
        dir = quote(&dir.to_string_lossy()),
    );
    let array = match a.array_parallelism {
        Some(k) => format!("{}%{k}", ranges(&pending)),
        None => ranges(&pending),
    };
    let args = [
        "--parsable".to_string(),
        format!("--array={array}"),
        script_path.to_string_lossy().into_owned(),
    ];
    if dry_run {
        println!("{script}");
        println!(
            "would write {} and run: sbatch {} ({} tasks for {missing} missing runs; dry run: nothing written or submitted)",
            script_path.display(),
            args.join(" "),
            pending.len()
        );
        return Ok(());
    }
    write_bytes_atomic(&script_path, script.as_bytes())
        .with_context(|| format!("cannot write {}", script_path.display()))?;
    let out = Command::new("sbatch").args(&args).output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run sbatch ({e}): --slurm needs a Slurm client on PATH; without Slurm, run \
             the shards with any launcher: gradlab sweep SPEC --shard i/N"
        )
    })?;
    if !out.status.success() {
        bail!(
            "sbatch failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let job = stdout.trim().split(';').next().unwrap_or("").to_string();
    println!(
        "submitted array job {job}: {} tasks (of {n} shards) for {missing} missing runs",
        pending.len()
    );
    println!("follow it:  squeue -j {job}");
    println!("progress:   gradlab status {}", dir.display());
    println!("task logs:  {}/{job}_<task>.out", slurm_dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sbatch --array takes ranges and single indices; a resubmission names only some tasks.
    #[test]
    fn array_ranges_merge_consecutive_indices() {
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[4]), "4");
        assert_eq!(ranges(&[0, 1, 2, 3]), "0-3");
        assert_eq!(ranges(&[0, 1, 2, 3, 7, 9, 10, 11, 12]), "0-3,7,9-12");
        assert_eq!(ranges(&[1, 3, 5]), "1,3,5");
        assert_eq!(ranges(&[5, 6]), "5-6");
    }

    /// What a cluster asks for reaches the script as #SBATCH lines, in a fixed order.
    #[test]
    fn cluster_options_become_sbatch_lines() {
        let a = SlurmArgs {
            slurm: true,
            partition: Some("short".into()),
            time: Some("1:00:00".into()),
            account: Some("proj42".into()),
            qos: Some("high".into()),
            mem: Some("4G".into()),
            constraint: Some("avx512&ib".into()),
            signal_before: 90,
            sbatch_arg: vec!["--gres=gpu:1".into(), "--mail-type=END".into()],
            ..SlurmArgs::default()
        };
        assert_eq!(
            a.directives().unwrap(),
            "#SBATCH --partition=short\n#SBATCH --time=1:00:00\n#SBATCH --account=proj42\n\
             #SBATCH --qos=high\n#SBATCH --mem=4G\n#SBATCH --constraint=avx512&ib\n\
             #SBATCH --requeue\n#SBATCH --signal=B:USR1@90\n#SBATCH --gres=gpu:1\n\
             #SBATCH --mail-type=END\n"
        );
        assert_eq!(SlurmArgs::default().directives().unwrap(), "");
    }

    /// A value that would end the #SBATCH line (and start a shell line) is refused, and so is
    /// a pass-through argument that is not an option.
    #[test]
    fn sbatch_options_cannot_break_the_script() {
        let a = SlurmArgs {
            account: Some("x\nrm -rf ~".into()),
            ..SlurmArgs::default()
        };
        assert!(a.directives().unwrap_err().to_string().contains("one"));
        let a = SlurmArgs {
            sbatch_arg: vec!["gres=gpu:1".into()],
            ..SlurmArgs::default()
        };
        let e = a.directives().unwrap_err().to_string();
        assert!(e.contains("--sbatch-arg=--gres=gpu:1"), "{e}");
    }

    /// Paths with spaces, quotes and `$` reach the job script as one literal word each.
    #[test]
    fn shell_quoting_keeps_every_word_literal() {
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote("with space"), "'with space'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME/`x`"), "'$HOME/`x`'");
        assert_eq!(quote(""), "''");
    }

    /// The quoting survives a real shell: sh reads back exactly the original words.
    #[test]
    fn quoted_words_read_back_unchanged_through_sh() {
        let words = ["a b", "it's", "$HOME", "back\\slash", "new\nline", "*"];
        let script = words
            .iter()
            .map(|w| format!("printf '%s\\0' {}", quote(w)))
            .collect::<Vec<_>>()
            .join("; ");
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh runs");
        let got: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .split_terminator('\0')
            .map(String::from)
            .collect();
        assert_eq!(got, words);
    }
}
