//! Mid-run checkpoints: everything a run needs to continue exactly where it stopped, so that a
//! run killed at any update and resumed from its last checkpoint writes the same rows, bit for
//! bit, as a run never stopped.
//!
//! A checkpoint holds the parameters, the optimiser's state, the data RNG, the text streams'
//! positions and the state they carry, the last gradient-flow probe (the run's decay rate is
//! fitted on it), the rows logged so far, and the counters of the outcome (clipped updates,
//! best evaluation loss, wall time so far). The learning rate is a function of the update.
//!
//! On disk, `checkpoints/<run_id>.partial` is a header (magic, format, payload length, CRC-32 of
//! the payload) and the payload (postcard). A new checkpoint first renames the current one to
//! `<run_id>.partial.prev`, then writes itself atomically: a writer killed at any point leaves
//! one readable checkpoint, and one whose checksum fails (a torn or damaged file) is passed
//! over for the previous one. Both are removed when the run completes.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::optim::OptimizerState;
use super::record::{FlowRow, SpectrumRow, StepRow};

/// The first bytes of a checkpoint file.
const MAGIC: &[u8; 16] = b"gradlab-resume\n\0";
/// The payload's layout; a checkpoint of another format is not read. 2: logged rows carry
/// Pascanu's Ω.
const FORMAT: u32 = 2;
/// Magic, format, payload length, CRC-32.
const HEADER: usize = 16 + 4 + 8 + 4;

/// Where and how often a run writes mid-run checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpointing {
    /// The checkpoint file ([`resume_path`]).
    pub path: PathBuf,
    /// Every this many updates (0: not by count).
    pub every: usize,
    /// At least every this many seconds of training (0: not by time).
    pub seconds: f64,
}

impl Checkpointing {
    /// The checkpoints `cfg` asks for (`checkpoint_every`, `checkpoint_seconds`), at `path`.
    pub fn of(cfg: &crate::config::RunConfig, path: PathBuf) -> Self {
        Checkpointing {
            path,
            every: cfg.checkpoint_every,
            seconds: cfg.checkpoint_seconds,
        }
    }
}

/// The mid-run checkpoint of run `id` in results folder `dir`.
pub fn resume_path(dir: &Path, id: &str) -> PathBuf {
    dir.join("checkpoints").join(format!("{id}.partial"))
}

/// The checkpoint before `path`'s, kept until the next one is written.
fn previous(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".prev");
    PathBuf::from(name)
}

/// Where a run stands: the loop's counters and the rows logged so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The next update to train (0 at the start).
    pub next_step: usize,
    pub logged: Vec<StepRow>,
    pub flow: Vec<FlowRow>,
    pub spectrum: Vec<SpectrumRow>,
    pub clipped_updates: usize,
    /// Lowest evaluation loss so far (infinite before the first evaluation).
    pub best_loss: f64,
    /// When the run first started, and its wall time before this session.
    pub started_at: Option<SystemTime>,
    pub wall_seconds: f64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            next_step: 0,
            logged: Vec::new(),
            flow: Vec::new(),
            spectrum: Vec::new(),
            clipped_updates: 0,
            best_loss: f64::INFINITY,
            started_at: None,
            wall_seconds: 0.0,
        }
    }
}

/// Everything a run continues from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The run's identity ([`crate::config::RunConfig::identity_toml`]): a checkpoint resumes
    /// only the run it was written by.
    pub identity: String,
    /// The whole configuration (TOML), for `gradlab run --resume`.
    pub config: String,
    /// The build that wrote it (runs are bit-identical across resumes within one build).
    pub gradlab_version: String,
    pub git_commit: String,
    pub params: Vec<f32>,
    pub optimizer: OptimizerState,
    /// The data RNG's state.
    pub rng: u64,
    /// charlm: the training streams' positions, and the state they carry `[L][B][H]`.
    pub streams: Vec<usize>,
    pub carried_h: Vec<f32>,
    pub carried_c: Vec<f32>,
    /// The last gradient-flow probe `[L][len]` and `len`.
    pub probe: Vec<f32>,
    pub probe_len: usize,
    pub progress: Progress,
}

/// Why a checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged ({reason})")]
    Damaged { path: PathBuf, reason: String },
    #[error("{path} belongs to another run configuration")]
    OtherRun { path: PathBuf },
    #[error("{path} does not fit the model: {reason}")]
    Mismatch { path: PathBuf, reason: String },
}

/// Writes `snapshot` as the checkpoint `path`, keeping the one it replaces as the previous one.
pub fn save(path: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let payload = postcard::to_stdvec(snapshot).map_err(std::io::Error::other)?;
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    match std::fs::rename(path, previous(path)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    crate::fs::write_bytes_atomic(path, &bytes)
}

/// Reads one checkpoint file, checking its header and checksum.
fn read_one(path: &Path) -> Result<Snapshot, ResumeError> {
    let bytes = std::fs::read(path).map_err(|source| ResumeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(path, &bytes)
}

/// The configuration of the run whose checkpoint is `path` (or the one before it), if either
/// is readable.
pub fn config_of(path: &Path) -> Option<crate::config::RunConfig> {
    [path.to_path_buf(), previous(path)]
        .iter()
        .filter_map(|p| read_one(p).ok())
        .find_map(|s| crate::config::RunConfig::from_toml(&s.config).ok())
}

/// A checkpoint from its bytes (read from `path`), checking its header and checksum.
fn decode(path: &Path, bytes: &[u8]) -> Result<Snapshot, ResumeError> {
    let damaged = |reason: &str| ResumeError::Damaged {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    if bytes.len() < HEADER || &bytes[..16] != MAGIC {
        return Err(damaged("not a gradlab checkpoint"));
    }
    let word = |at: usize, n: usize| -> u64 {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&bytes[at..at + n]);
        u64::from_le_bytes(b)
    };
    if word(16, 4) != u64::from(FORMAT) {
        return Err(damaged(
            "written by a gradlab with another checkpoint format",
        ));
    }
    let payload = &bytes[HEADER..];
    if word(20, 8) != payload.len() as u64 {
        return Err(damaged("truncated"));
    }
    if word(28, 4) != u64::from(crc32fast::hash(payload)) {
        return Err(damaged("checksum mismatch"));
    }
    postcard::from_bytes(payload).map_err(|e| damaged(&format!("unreadable payload: {e}")))
}

/// What [`load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The newest usable checkpoint (`None`: none, start from the beginning).
    pub snapshot: Option<Snapshot>,
    /// Checkpoint files passed over, and why (to report; they are left in place until the
    /// next checkpoint replaces them).
    pub skipped: Vec<ResumeError>,
}

/// The newest readable checkpoint of the run whose identity is `identity`: `path`, or the
/// previous one where `path` is missing or damaged.
pub fn load(path: &Path, identity: &str) -> Loaded {
    let mut loaded = Loaded::default();
    for candidate in [path.to_path_buf(), previous(path)] {
        if !candidate.exists() {
            continue;
        }
        match read_one(&candidate) {
            Ok(s) if s.identity == identity => {
                loaded.snapshot = Some(s);
                break;
            }
            Ok(_) => loaded
                .skipped
                .push(ResumeError::OtherRun { path: candidate }),
            Err(e) => loaded.skipped.push(e),
        }
    }
    loaded
}

/// Removes the checkpoint `path` and its previous one (the run completed).
pub fn remove(path: &Path) -> std::io::Result<()> {
    for p in [path.to_path_buf(), previous(path)] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The run_ids with a checkpoint file (usable or not) in `dir/checkpoints`.
pub fn checkpointed(dir: &Path) -> std::io::Result<std::collections::BTreeSet<String>> {
    let entries = match std::fs::read_dir(dir.join("checkpoints")) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    let mut ids = std::collections::BTreeSet::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let id = name
            .strip_suffix(".partial.prev")
            .or(name.strip_suffix(".partial"));
        if let Some(id) = id.filter(|_| !name.starts_with('.')) {
            ids.insert(id.to_string());
        }
    }
    Ok(ids)
}

/// Removes the checkpoints of the runs in `complete` (a process killed between writing a
/// run's results and removing its checkpoint leaves one); returns how many runs had one.
pub fn remove_stale(
    dir: &Path,
    complete: &std::collections::BTreeSet<String>,
) -> std::io::Result<usize> {
    let stale: Vec<String> = checkpointed(dir)?.intersection(complete).cloned().collect();
    for id in &stale {
        remove(&resume_path(dir, id))?;
    }
    Ok(stale.len())
}
