//! Memory: what a run holds at its peak, estimated from its configuration before it starts,
//! against what this machine (or `--max-memory`) allows, so that a run too large to fit is
//! refused with the numbers instead of taking the whole process down when an allocation fails
//! (Rust aborts the process on a failed allocation; it cannot be caught).
//!
//! The estimate adds the buffers a run allocates when it is set up and keeps for its whole
//! life: the parameters, their gradients (the engine's, the diagnostics' and the backward
//! scratch), the optimiser's state, the TBPTT engine's workspaces (what a forward keeps for
//! backward, the gradient buffers, the packed GEMM operands), the diagnostics' and the
//! evaluation's workspaces and logits, the Jacobian-spectrum probe's f64 matrices, the batches,
//! a charlm text, and the rows a run logs before it writes them. It counts every allocated
//! byte, although pages a run never touches (a forward-only workspace's gradient buffers) never
//! become resident: it is meant to be above the measured peak, within about 2x (see the test
//! `the_estimate_is_near_the_measured_peak`).
//!
//! A sweep runs `jobs` runs at once: [`MemoryBudget`] lets a run start only when its estimate
//! fits beside those of the runs already going, so that runs that fit one at a time wait for
//! each other rather than overcommit the machine together.

use std::fmt;
use std::sync::{Condvar, Mutex};

use gradlab_kernels::{Cell, StackShape};

use crate::config::{ModelKind, Regularizer, RunConfig};
use crate::model::jacobian::state_dim;
use crate::model::kernel_cell;
use crate::task::{Task, TextError};
use crate::train::eval::EVAL_BATCH;
use crate::train::record::FlowRow;
use crate::train::spectrum::WARMUP;

/// What a run holds at its peak, in bytes, by what holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MemoryEstimate {
    /// The model's parameters.
    pub parameters: f64,
    /// Gradients: the engine's, the diagnostics' and the backward passes' own.
    pub gradients: f64,
    /// The optimiser's state (momentum, moments).
    pub optimizer: f64,
    /// The training windows' workspaces, output gradients and logits.
    pub workspaces: f64,
    /// The diagnostics' full-window backward (truncation bias, probe).
    pub diagnostics: f64,
    /// The evaluation's workspace, batch and logits.
    pub evaluation: f64,
    /// The Jacobian-spectrum probe: its input stream, workspace and `n × n` f64 matrices.
    pub spectrum: f64,
    /// The training batch and a charlm text.
    pub data: f64,
    /// The logged rows (steps, layers, flow, spectrum) kept until the run is written.
    pub records: f64,
}

/// Bytes in a GiB.
const GIB: f64 = (1u64 << 30) as f64;

impl MemoryEstimate {
    /// Every part added up, in bytes.
    pub fn total(&self) -> f64 {
        self.parts().iter().map(|(_, b)| b).sum()
    }

    fn parts(&self) -> [(&'static str, f64); 9] {
        [
            ("parameters", self.parameters),
            ("gradients", self.gradients),
            ("optimizer", self.optimizer),
            ("workspaces", self.workspaces),
            ("diagnostics", self.diagnostics),
            ("evaluation", self.evaluation),
            ("spectrum", self.spectrum),
            ("data", self.data),
            ("records", self.records),
        ]
    }

    /// `85.9 GiB (parameters 80.0 GiB, workspaces 5.1 GiB)`: the total and its largest parts.
    pub fn describe(&self) -> String {
        let mut parts: Vec<_> = self.parts().into_iter().filter(|(_, b)| *b > 0.0).collect();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let largest: Vec<String> = parts
            .iter()
            .take(3)
            .map(|(name, b)| format!("{name} {}", Bytes(*b)))
            .collect();
        format!("{} ({})", Bytes(self.total()), largest.join(", "))
    }
}

/// A byte count shown in binary units: `512 MiB`, `85.9 GiB`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bytes(pub f64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1024.0 * 1024.0 * GIB {
            write!(f, "{b:.1e} bytes")
        } else if b >= 1024.0 * GIB {
            write!(f, "{:.1} TiB", b / (1024.0 * GIB))
        } else if b >= GIB {
            write!(f, "{:.1} GiB", b / GIB)
        } else {
            write!(f, "{:.0} MiB", (b / (1u64 << 20) as f64).ceil())
        }
    }
}

/// The estimate of `cfg` (validated): sets up its task (a charlm run reads its text, for the
/// vocabulary) and adds up what the run will allocate.
pub fn estimate(cfg: &RunConfig) -> Result<MemoryEstimate, TextError> {
    let task = Task::new(cfg.task, cfg.seq_len, cfg.text.as_deref())?;
    Ok(estimate_for(cfg, &task))
}

/// f32 bytes.
const F32: f64 = 4.0;
/// f64 bytes.
const F64: f64 = 8.0;

/// Columns of a packed GEMM operand are padded to panels of this many.
const PANEL: f64 = 64.0;

fn panels(n: f64) -> f64 {
    (n / PANEL).ceil() * PANEL
}

/// Parameters of `s`, counted in f64 so that no size overflows.
fn params(s: StackShape) -> f64 {
    let (h, gh) = (s.hidden as f64, (s.cell.gates() * s.hidden) as f64);
    (0..s.layers.min(2))
        .map(|l| {
            let copies = if l == 0 { 1.0 } else { (s.layers - 1) as f64 };
            copies * (gh * (s.layer_input(l) as f64 + h) + 2.0 * gh)
        })
        .sum()
}

/// Bytes of a kernel workspace of `s` for `t` steps of batch `b` (`kernels::rnn::Workspace`:
/// per layer the stored gates, states, gate gradients, flow rows, the layer below's gradient
/// and the packed operands).
fn workspace(s: StackShape, t: f64, b: f64) -> f64 {
    let (h, g) = (s.hidden as f64, s.cell.gates() as f64);
    let stored = s.cell.stored_gates(s.hidden) as f64;
    let lstm = if s.cell.has_cell_state() { 1.0 } else { 0.0 };
    let gru = if s.cell == Cell::Gru { 1.0 } else { 0.0 };
    (0..s.layers.min(2))
        .map(|l| {
            let copies = if l == 0 { 1.0 } else { (s.layers - 1) as f64 };
            let i = s.layer_input(l) as f64;
            let below = if l > 0 { h } else { 0.0 };
            let per_step = stored + h * (1.0 + 2.0 * lstm) + g * h * (1.0 + gru) + below;
            let packed = panels(g * h) * (2.0 * h + i) + panels(i.max(h)) * t * b;
            copies * (F32 * (t * b * per_step + (t + 1.0) * b * h + packed) + F64 * t * b)
        })
        .sum()
}

/// What a run of `cfg` on `task` allocates at its peak (see the module's documentation).
pub fn estimate_for(cfg: &RunConfig, task: &Task) -> MemoryEstimate {
    let stack = StackShape {
        cell: kernel_cell(cfg.cell, cfg.nonlinearity),
        input: task.input_size().max(1),
        hidden: cfg.hidden,
        layers: cfg.depth,
    };
    let (b, h, o) = (
        cfg.batch as f64,
        cfg.hidden as f64,
        task.output_size() as f64,
    );
    let t = task.time_steps() as f64;
    let i = stack.input as f64;
    let layers = cfg.recurrent_layers() as f64;
    let head = o * h + o;
    let (t_src, i_src) = task.source_shape();
    let encoder = StackShape {
        input: i_src.max(1),
        ..stack
    };
    let p_stack = params(stack);
    let p = match cfg.model {
        ModelKind::Stack => p_stack + head,
        ModelKind::Seq2seq => p_stack + params(encoder) + head,
    };
    let eval_b = b.max(EVAL_BATCH as f64);
    let adam = cfg.optimizer == crate::config::OptimizerKind::Adam;
    let logs = (cfg.steps / cfg.log_every) as f64 + 2.0;
    let flow_row = std::mem::size_of::<FlowRow>() as f64;
    let mut e = MemoryEstimate {
        parameters: F32 * p,
        optimizer: F32 * p * if adam { 2.0 } else { 1.0 },
        ..MemoryEstimate::default()
    };
    match cfg.model {
        ModelKind::Stack => {
            let (k1, k2) = cfg.tbptt();
            let (k1, k2) = (k1.min(task.time_steps()), k2.min(task.time_steps()));
            let chunk = if k1 == k2 { k1 } else { k2 } as f64;
            let full = if (k1 as f64) < t {
                workspace(stack, t, b)
            } else {
                0.0
            };
            // Each backward keeps the stack's output gradient and the head's logits.
            let backprop = F32 * t * b * (h + o);
            e.gradients = F32 * (2.0 * p + 2.0 * p_stack);
            e.workspaces = workspace(stack, chunk, b) + full + backprop;
            if cfg.regularizer != Regularizer::None {
                // Pascanu's Ω: the update's own gradient, each layer's H × H sums, and one
                // layer's U = A·W_hh with the two packed operands.
                e.gradients += F32 * (p + layers * h * h);
                e.workspaces += F32 * (chunk * b * h + panels(h) * (h + chunk * b));
            }
            e.diagnostics = backprop + F32 * layers * t;
            e.evaluation = workspace(stack, t, eval_b) + F32 * t * eval_b * (i + o);
            if cfg.lyapunov_steps > 0 {
                let len = (WARMUP + cfg.lyapunov_steps) as f64;
                let n = state_dim(stack.cell, cfg.hidden) as f64;
                // The step Jacobian, the product, its next value, Benettin's frame, image and
                // transpose, and the singular value decomposition's copy and transpose.
                e.spectrum = F32 * len * i + workspace(stack, len, 1.0) + F64 * 8.0 * n * n;
            }
            // The training flow and the probe's, per logged update.
            e.records = logs * 2.0 * layers * t * flow_row;
        }
        ModelKind::Seq2seq => {
            let (ts, td) = (t_src as f64, t);
            let pass = |b: f64| workspace(encoder, ts, b) + workspace(stack, td, b);
            e.gradients = F32 * 2.0 * p;
            e.workspaces = pass(b) + F32 * (td + ts) * b * (h + o);
            e.evaluation = pass(eval_b) + F32 * eval_b * (ts * i_src as f64 + td * (i + o));
            e.records = logs * layers * (ts + td) * flow_row;
        }
    }
    let text = task
        .corpus
        .as_ref()
        .map_or(0.0, |c| (c.train.len() + c.valid.len()) as f64);
    // Reading a text holds it as UTF-8, as chars and as ids at once.
    e.data = F32 * t * b * (i + 1.0) + 13.0 * text;
    e
}

/// Where a memory limit comes from, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitSource {
    /// `--max-memory`.
    Flag,
    /// `MemAvailable` of `/proc/meminfo`.
    Available,
    /// The control group's limit less its usage.
    Cgroup,
}

/// The memory runs may use, and where that figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    pub source: LimitSource,
}

impl fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = Bytes(self.bytes as f64);
        match self.source {
            LimitSource::Flag => write!(f, "the {bytes} that --max-memory allows"),
            LimitSource::Available => write!(f, "the {bytes} available on this machine"),
            LimitSource::Cgroup => write!(f, "the {bytes} left under this control group's limit"),
        }
    }
}

impl MemoryLimit {
    /// `--max-memory` when given, otherwise what this machine has available now: the smaller
    /// of `MemAvailable` and the control group's limit less its usage (cgroup v2 or v1).
    /// `None` where neither can be read (not Linux): runs are then not checked.
    pub fn resolve(max_memory: Option<u64>) -> Option<MemoryLimit> {
        if let Some(bytes) = max_memory {
            return Some(MemoryLimit {
                bytes,
                source: LimitSource::Flag,
            });
        }
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let available = read("/proc/meminfo")
            .and_then(|t| meminfo_available(&t))
            .map(|bytes| MemoryLimit {
                bytes,
                source: LimitSource::Available,
            });
        let cgroup = [
            ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory/memory.usage_in_bytes",
            ),
        ]
        .iter()
        .find_map(|(limit, usage)| {
            let limit: u64 = read(limit)?.trim().parse().ok()?;
            let usage: u64 = read(usage)?.trim().parse().ok()?;
            Some(MemoryLimit {
                bytes: limit.saturating_sub(usage),
                source: LimitSource::Cgroup,
            })
        });
        [available, cgroup]
            .into_iter()
            .flatten()
            .min_by_key(|l| l.bytes)
    }
}

/// This process's peak resident memory so far (`VmHWM` of `/proc/self/status`), in bytes;
/// `None` where it cannot be read (not Linux).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    kib_field(&status, "VmHWM:")
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn meminfo_available(meminfo: &str) -> Option<u64> {
    kib_field(meminfo, "MemAvailable:")
}

/// The `key  N kB` line of a `/proc` text, in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// A size that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid size '{0}': expected a number of bytes with an optional unit K, M, G or T (powers of 1024), e.g. 8G or 512M")]
pub struct SizeError(String);

/// Parses `8G`, `512M`, `1.5GiB`, `1T`, `1000000` (bytes); units are powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let bad = || SizeError(text.to_string());
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (number, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let x: f64 = number.trim().parse().map_err(|_| bad())?;
    let bytes = x * (1u64 << shift) as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Why a run was not started.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(
        "the run needs about {estimate}, more than {limit}: make it smaller (hidden, depth, \
         batch, seq_len, lyapunov_steps), or, if the estimate is wrong, raise the limit with \
         --max-memory SIZE"
    )]
    TooLarge {
        /// [`MemoryEstimate::describe`].
        estimate: String,
        limit: MemoryLimit,
    },
    #[error(
        "the run needs about {estimate}, but the allocator refuses that much: make it smaller \
         (hidden, depth, batch, seq_len, lyapunov_steps)"
    )]
    Refused { estimate: String },
    #[error(transparent)]
    Text(#[from] TextError),
}

/// The memory of the runs going at once: a run starts when its estimate fits beside theirs
/// ([`MemoryBudget::reserve`]), and is refused when it cannot fit even alone.
#[derive(Debug)]
pub struct MemoryBudget {
    /// `None`: no limit known or wanted, nothing is checked.
    limit: Option<MemoryLimit>,
    /// Bytes reserved by the runs going.
    held: Mutex<u64>,
    freed: Condvar,
}

/// A run's share of a [`MemoryBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut held = self.budget.lock();
        *held -= self.bytes;
        self.budget.freed.notify_all();
    }
}

impl MemoryBudget {
    /// A budget of `limit` for the runs of one process (`None`: unlimited).
    pub fn new(limit: Option<MemoryLimit>) -> Self {
        MemoryBudget {
            limit,
            held: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a run of estimate `e` fits the limit on its own.
    pub fn fits(&self, e: MemoryEstimate) -> Result<MemoryEstimate, MemoryError> {
        match self.limit {
            Some(limit) if e.total() > limit.bytes as f64 => Err(MemoryError::TooLarge {
                estimate: e.describe(),
                limit,
            }),
            _ => Ok(e),
        }
    }

    /// Reserves the memory of a run of `cfg`, estimated only when there is a limit to check
    /// ([`MemoryBudget::reserve_estimate`]).
    pub fn reserve(&self, cfg: &RunConfig) -> Result<Reservation<'_>, MemoryError> {
        match self.limit {
            Some(_) => self.reserve_estimate(estimate(cfg)?),
            None => Ok(Reservation {
                budget: self,
                bytes: 0,
            }),
        }
    }

    /// Reserves the memory of a run estimated at `e`: refused when it cannot fit even alone
    /// (or the allocator will not give that much), otherwise waits until the runs going leave
    /// room.
    pub fn reserve_estimate(&self, e: MemoryEstimate) -> Result<Reservation<'_>, MemoryError> {
        let e = self.fits(e)?;
        let (Some(limit), bytes) = (self.limit, e.total() as u64) else {
            return Ok(Reservation {
                budget: self,
                bytes: 0,
            });
        };
        // Address space only (the pages are never touched): where the kernel does not
        // overcommit, this is the allocation that would otherwise abort the process.
        let mut probe: Vec<u8> = Vec::new();
        if probe.try_reserve_exact(bytes as usize).is_err() {
            return Err(MemoryError::Refused {
                estimate: e.describe(),
            });
        }
        drop(probe);
        let mut held = self.lock();
        while *held > 0 && held.saturating_add(bytes) > limit.bytes {
            held = self.freed.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        *held += bytes;
        Ok(Reservation {
            budget: self,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2 t"), Ok(2 << 40));
        assert_eq!(parse_size("1000"), Ok(1000));
        for bad in ["", "G", "-1G", "0", "lots", "1e30T", "nanG"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(Bytes((512u64 << 20) as f64).to_string(), "512 MiB");
        assert_eq!(Bytes((3u64 << 29) as f64).to_string(), "1.5 GiB");
        assert_eq!(Bytes(1e30).to_string(), "1.0e30 bytes");
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        let meminfo =
            "MemTotal:       32000000 kB\nMemFree:  100 kB\nMemAvailable:   23000000 kB\n";
        assert_eq!(meminfo_available(meminfo), Some(23_000_000 * 1024));
        assert_eq!(meminfo_available("MemTotal: 1 kB\n"), None);
    }

    /// A budget refuses a run larger than its limit, and lets a second run start only when the
    /// first has given its memory back.
    #[test]
    fn a_run_waits_for_room_and_one_too_large_is_refused() {
        let cfg = RunConfig::default();
        let need = estimate(&cfg).unwrap().total() as u64;
        let limit = |bytes| {
            Some(MemoryLimit {
                bytes,
                source: LimitSource::Flag,
            })
        };
        let small = MemoryBudget::new(limit(need / 2));
        let e = small.reserve(&cfg).unwrap_err().to_string();
        assert!(e.contains("that --max-memory allows"), "{e}");
        let budget = MemoryBudget::new(limit(need + need / 2));
        let first = budget.reserve(&cfg).unwrap();
        let started = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _second = budget.reserve(&cfg).unwrap();
                started.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(
                !started.load(std::sync::atomic::Ordering::SeqCst),
                "no room yet"
            );
            drop(first);
        });
        assert!(started.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(*budget.lock(), 0);
        assert!(MemoryBudget::new(None).reserve(&cfg).is_ok());
    }

    /// The big terms scale as the code allocates them: the spectrum probe with n², the
    /// workspaces with T·B.
    #[test]
    fn the_estimate_grows_with_what_the_run_allocates() {
        let base = RunConfig::default();
        let at = |cfg: RunConfig| estimate(&cfg).unwrap();
        let wide = at(RunConfig {
            hidden: 20_000,
            ..base.clone()
        });
        // Three n x n f64 matrices of Benettin's method alone are 9.6 GB.
        assert!(wide.spectrum > 9.6e9, "{}", wide.describe());
        let long = at(RunConfig {
            seq_len: 10_000_000,
            ..base.clone()
        });
        // Every hidden state of one window: 10^7 x 20 x 50 f32.
        assert!(long.workspaces > 4e10, "{}", long.describe());
        let huge = at(RunConfig {
            hidden: 1 << 32,
            ..base
        });
        assert!(huge.total() > 1e20 && huge.total().is_finite());
    }
}
