//! Stopping cleanly on a signal: SIGINT (Ctrl-C), SIGTERM (a scheduler's or `kill`'s stop) and
//! SIGUSR1 (Slurm's warning before a time limit, `sbatch --signal=B:USR1@<seconds>`).
//!
//! [`install`] makes these signals set a flag instead of killing the process; training checks
//! [`requested`] after every update, writes a checkpoint and stops, and no new run starts. The
//! process then exits with [`exit_code`] (128 + the signal's number, as a shell reports a
//! process killed by it: 130 for SIGINT, 143 for SIGTERM, 138 for SIGUSR1). A second SIGINT or
//! SIGTERM ends the process at once, with the same code (every file is written atomically, so
//! nothing half-written is left; checkpoints already written are kept).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

/// The signal that asked to stop (0: none yet).
fn received() -> &'static Arc<AtomicUsize> {
    static SIGNAL: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    SIGNAL.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// Catches SIGINT, SIGTERM and SIGUSR1 for the rest of the process (see the module's text).
pub fn install() -> std::io::Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let asked = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGUSR1] {
        if signal != SIGUSR1 {
            // Registered first, so it sees `asked` as the previous signal left it.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                exit_code(signal),
                asked.clone(),
            )?;
        }
        signal_hook::flag::register(signal, asked.clone())?;
        signal_hook::flag::register_usize(signal, received().clone(), signal as usize)?;
    }
    INSTALLED.get_or_init(|| ());
    Ok(())
}

/// The signal that asked the process to stop, if one did.
pub fn requested() -> Option<i32> {
    match received().load(Ordering::Relaxed) {
        0 => None,
        s => Some(s as i32),
    }
}

/// The exit status of a process stopped by `signal`: 128 + its number.
pub fn exit_code(signal: i32) -> i32 {
    128 + signal
}

/// The signal's name (`SIGTERM`).
pub fn name(signal: i32) -> String {
    match signal {
        SIGINT => "SIGINT".into(),
        SIGTERM => "SIGTERM".into(),
        SIGUSR1 => "SIGUSR1".into(),
        s => format!("signal {s}"),
    }
}

/// A command stopped by a signal, after checkpointing: the binary exits with
/// [`exit_code`]`(signal)` and prints this (with how to continue) instead of an error.
#[derive(Debug, thiserror::Error)]
#[error("stopped by {}: {what}\nto continue: {resume}", name(*.signal))]
pub struct Interrupted {
    pub signal: i32,
    /// What was kept.
    pub what: String,
    /// The command that continues the work.
    pub resume: String,
}
