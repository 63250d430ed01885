//! Mid-run checkpoints: a run stopped at any update and continued from its checkpoint (in a
//! new trainer, as a new process would) ends with exactly the record of a run never stopped,
//! for every cell, task kind, truncation, optimiser and regulariser; damaged checkpoints are
//! passed over for the one before them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use gradlab_experiments::config::RunConfig;
use gradlab_experiments::train::record::RunRecord;
use gradlab_experiments::train::resume::{self, Checkpointing, ResumeError};
use gradlab_experiments::train::{Control, RunEnd, Trainer};
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::Par;

fn tmpdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gradlab-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A text of words for charlm, long enough for its validation streams.
fn text_file(dir: &Path) -> PathBuf {
    let words = [
        "the", "gradient", "vanishes", "explodes", "slowly", "(and", "then)",
    ];
    let mut rng = SplitMix64(7);
    let mut text = String::new();
    while text.len() < 30_000 {
        text += words[(rng.next_u64() % words.len() as u64) as usize];
        text += if rng.next_u64().is_multiple_of(9) {
            ".\n"
        } else {
            " "
        };
    }
    let path = dir.join("text.txt");
    std::fs::write(&path, text).unwrap();
    path
}

/// Small, with every diagnostic on: logged rows, evaluations and spectra between the stops.
fn config(extra: &str, text: &Path) -> RunConfig {
    let text = match extra.contains("charlm") {
        true => format!("text = {:?}\n", text.display().to_string()),
        false => String::new(),
    };
    let base = format!(
        "hidden = 12\nbatch = 4\nseq_len = 20\nsteps = 90\nlog_every = 7\neval_every = 30\n\
         eval_sequences = 40\ndiag_every = 40\nlyapunov_steps = 20\n{text}"
    );
    let mut table: toml::Table = toml::from_str(&base).unwrap();
    table.extend(toml::from_str::<toml::Table>(extra).unwrap());
    RunConfig::from_toml(&table.to_string()).unwrap_or_else(|e| panic!("{e}\n{table}"))
}

/// The record as text, the wall-clock columns cleared: `{:?}` of an f64 round-trips, so equal
/// text is equal bits (NaN included).
fn fingerprint(mut r: RunRecord) -> String {
    r.outcome.wall_seconds = 0.0;
    r.outcome.steps_per_sec = 0.0;
    r.outcome.started_at = std::time::UNIX_EPOCH;
    format!("{r:?}")
}

fn bits(params: &[f32]) -> Vec<u32> {
    params.iter().map(|p| p.to_bits()).collect()
}

/// Trains `cfg` to the end, stopping after each of the updates in `stops` (counted from
/// where each session starts) and continuing in a new trainer from the checkpoint, every other
/// session on two threads. Returns the record and the final parameters.
fn train_in_sessions(cfg: &RunConfig, path: &Path, stops: &[usize]) -> (RunRecord, Vec<f32>) {
    let checkpoint = Checkpointing {
        path: path.to_path_buf(),
        every: 0,
        seconds: 0.0,
    };
    for session in 0..=stops.len() {
        let par = if session % 2 == 0 {
            Par::Seq
        } else {
            Par::rayon(2)
        };
        let (mut trainer, from, skipped) = Trainer::resumed(cfg.clone(), par, path).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(from.is_some(), session > 0, "session {session}");
        let updates = AtomicUsize::new(0);
        let stop_after = stops.get(session).copied();
        let stop = || Some(updates.fetch_add(1, Ordering::Relaxed) + 1) == stop_after;
        let ctl = Control {
            checkpoint: Some(&checkpoint),
            stop: &stop,
            batches: None,
        };
        match trainer.run_with(&ctl, |_, _| {}).unwrap() {
            RunEnd::Finished(record) => {
                assert_eq!(session, stops.len(), "finished before its last stop");
                return (record, trainer.model.params.clone());
            }
            RunEnd::Interrupted { next_step, .. } => {
                assert_eq!(next_step, from.unwrap_or(0) + stop_after.unwrap());
            }
        }
    }
    unreachable!("the last session runs to the end")
}

#[test]
fn a_run_stopped_and_continued_anywhere_ends_bit_identical_to_one_never_stopped() {
    let dir = tmpdir("sessions");
    let text = text_file(&dir);
    let cases = [
        "cell = 'rnn'\ntask = 'adding'\noptimizer = 'sgd'",
        "cell = 'rnn'\nnonlinearity = 'relu'\ninit = 'identity'\ntask = 'temporal-order'\n\
         optimizer = 'sgd'\nmomentum = 0.9\ntruncation = 7\nclip = 'value:0.5'",
        "cell = 'rnn'\ntask = 'copy'\nseq_len = 10\noptimizer = 'sgd'\nmomentum = 0.5\n\
         nesterov = true\ntruncation_k1 = 4\ntruncation_k2 = 9",
        "cell = 'rnn'\ntask = 'adding'\nregularizer = 'pascanu:4'\noptimizer = 'sgd'",
        "cell = 'rnn'\nnonlinearity = 'relu'\ntask = 'temporal-order'\ndepth = 2\n\
         regularizer = 'pascanu:2'\ntruncation = 7\noptimizer = 'adam'\nlr = 0.003",
        "cell = 'lstm'\ntask = 'adding'\noptimizer = 'adam'\nlr = 0.003\nlr_schedule = 'step:25:0.5'",
        "cell = 'lstm'\ntask = 'charlm'\noptimizer = 'rmsprop'\nlr = 0.002\nclip = 'none'",
        "cell = 'gru'\ntask = 'charlm'\ndepth = 2\noptimizer = 'adagrad'\nlr = 0.05\ntruncation = 6",
        "cell = 'lstm'\ntask = 'temporal-order'\ndepth = 2\noptimizer = 'adam'\nlr = 0.003\n\
         truncation = 8",
        "model = 'seq2seq'\ntask = 'reverse'\nseq_len = 6\ncell = 'gru'\noptimizer = 'adam'\n\
         lr = 0.003",
    ];
    let mut rng = SplitMix64(2024);
    for (i, case) in cases.iter().enumerate() {
        let cfg = config(case, &text);
        cfg.validate().unwrap_or_else(|e| panic!("{case}: {e}"));
        let mut plain = Trainer::new(cfg.clone(), Par::Seq).unwrap();
        let want = fingerprint(plain.run(|_, _| {}));
        // Stops at random updates, one at the very first update, through up to 3 sessions.
        let a = 1 + (rng.next_u64() % 40) as usize;
        let b = 1 + (rng.next_u64() % 40) as usize;
        for stops in [vec![a, b], vec![1], vec![89]] {
            let path = dir.join(format!("case{i}.resume"));
            let (record, params) = train_in_sessions(&cfg, &path, &stops);
            assert_eq!(
                fingerprint(record),
                want,
                "case {case:?}, stopped after {stops:?} updates"
            );
            assert_eq!(
                bits(&params),
                bits(&plain.model.params),
                "{case:?} {stops:?}"
            );
            resume::remove(&path).unwrap();
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Checkpoints of `cfg` every 10 updates, stopped after update 35: the newest is at update 30,
/// the previous at 20.
fn stopped_at_35(cfg: &RunConfig, path: &Path) {
    let checkpoint = Checkpointing {
        path: path.to_path_buf(),
        every: 10,
        seconds: 0.0,
    };
    let n = AtomicUsize::new(0);
    let stop = || n.fetch_add(1, Ordering::Relaxed) + 1 == 35;
    let ctl = Control {
        checkpoint: Some(&checkpoint),
        stop: &stop,
        batches: None,
    };
    let mut trainer = Trainer::new(cfg.clone(), Par::Seq).unwrap();
    let end = trainer.run_with(&ctl, |_, _| {}).unwrap();
    assert!(matches!(end, RunEnd::Interrupted { next_step: 35, .. }));
}

#[test]
fn a_damaged_checkpoint_is_passed_over_for_the_one_before_it() {
    let dir = tmpdir("damaged");
    let text = text_file(&dir);
    let cfg = config("cell = 'lstm'\noptimizer = 'adam'\nlr = 0.003", &text);
    let want = fingerprint(Trainer::new(cfg.clone(), Par::Seq).unwrap().run(|_, _| {}));
    let path = dir.join("run.resume");
    let prev = dir.join("run.resume.prev");
    type Damage = fn(&Path);
    let damages: [(&str, Damage, Option<usize>, usize); 5] = [
        ("intact", |_| {}, Some(35), 0),
        (
            "one flipped bit",
            |p| {
                let mut b = std::fs::read(p).unwrap();
                let i = b.len() / 2;
                b[i] ^= 0x10;
                std::fs::write(p, b).unwrap();
            },
            Some(30),
            1,
        ),
        (
            "truncated",
            |p| {
                let b = std::fs::read(p).unwrap();
                std::fs::write(p, &b[..b.len() - 100]).unwrap();
            },
            Some(30),
            1,
        ),
        (
            "missing (killed between the two renames)",
            |p| std::fs::remove_file(p).unwrap(),
            Some(30),
            0,
        ),
        ("empty", |p| std::fs::write(p, b"").unwrap(), Some(30), 1),
    ];
    for (what, damage, from, skipped) in damages {
        stopped_at_35(&cfg, &path);
        // The stop itself checkpoints at 35; the one before it is at 30.
        damage(&path);
        let (mut trainer, got_from, got_skipped) =
            Trainer::resumed(cfg.clone(), Par::Seq, &path).unwrap();
        assert_eq!(got_from, from, "{what}");
        assert_eq!(got_skipped.len(), skipped, "{what}: {got_skipped:?}");
        assert!(
            got_skipped
                .iter()
                .all(|e| matches!(e, ResumeError::Damaged { .. })),
            "{what}: {got_skipped:?}"
        );
        assert_eq!(fingerprint(trainer.run(|_, _| {})), want, "{what}");
        resume::remove(&path).unwrap();
    }

    // Both damaged: the run starts over, and says why.
    stopped_at_35(&cfg, &path);
    std::fs::write(&path, b"garbage").unwrap();
    std::fs::write(&prev, b"more garbage").unwrap();
    let (mut trainer, from, skipped) = Trainer::resumed(cfg.clone(), Par::Seq, &path).unwrap();
    assert_eq!((from, skipped.len()), (None, 2), "{skipped:?}");
    assert!(skipped[0].to_string().contains("not a gradlab checkpoint"));
    assert_eq!(fingerprint(trainer.run(|_, _| {})), want);
    resume::remove(&path).unwrap();

    // Another configuration's checkpoint is never continued.
    stopped_at_35(&cfg, &path);
    let other = RunConfig {
        seed: 1,
        ..cfg.clone()
    };
    let (_, from, skipped) = Trainer::resumed(other, Par::Seq, &path).unwrap();
    assert_eq!(from, None);
    assert!(
        skipped
            .iter()
            .all(|e| matches!(e, ResumeError::OtherRun { .. })),
        "{skipped:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
