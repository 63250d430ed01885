//! Claims: which process runs a run when several `gradlab sweep` processes (not shards) share
//! one results folder, so that each run executes once.
//!
//! Before it trains a run, a sweep creates `claims/<run_id>.lock` with `create_new` (O_EXCL,
//! atomic on local file systems and on NFS v3 and later) holding its host, pid, a nonce and the
//! start time; whoever creates the file runs the run, and removes the file once the results or
//! the failure record are written. A heartbeat thread touches the claims a process holds every
//! [`HEARTBEAT`]. A claim is stale when its holder is on this host and its process is gone, or,
//! held from another host (whose processes cannot be seen), when it has not been touched for
//! [`LEASE`]. A stale claim is removed only by the holder of its takeover lock
//! (`<run_id>.lock.takeover`, also created with `create_new`), after reading it again and
//! finding it unchanged; the run then goes to whoever creates the claim next. So a live claim
//! is never removed, and exactly one process runs the run. A takeover lock is held for
//! milliseconds; one left by a taker that died is itself stale by the same rules.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// The folder of a results folder that holds the claims.
pub const CLAIMS: &str = "claims";

/// How often a process touches the claims it holds.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// How long a claim held from another host may go untouched before it counts as abandoned:
/// four heartbeats, so that a slow file server or a busy machine does not lose its claims.
pub const LEASE: Duration = Duration::from_secs(120);

/// Who holds a claim, as written in its file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// Tells this claim from an earlier one of the same process.
    pub nonce: String,
    /// Seconds since the Unix epoch.
    pub started: u64,
}

impl Holder {
    /// This process, with a fresh nonce.
    fn me() -> Self {
        Holder {
            host: crate::fs::host(),
            pid: std::process::id(),
            nonce: nonce(),
            started: crate::fs::unix_time(),
        }
    }
}

/// The outcome of [`Claims::take`].
#[derive(Debug)]
pub enum Taken {
    /// This process holds the claim until it gives it back ([`Claims::release`]).
    Mine,
    /// A live process holds it (`None`: its file is being written right now).
    Busy(Option<Holder>),
}

/// The claims one process holds in one results folder, kept alive by a heartbeat thread while
/// this value lives.
pub struct Claims {
    dir: PathBuf,
    held: Arc<Mutex<BTreeMap<String, String>>>,
    heartbeat: Option<(Sender<()>, JoinHandle<()>)>,
}

impl Claims {
    /// The claims of this process in `results/claims`, with its heartbeat started.
    pub fn new(results: &Path) -> std::io::Result<Self> {
        let dir = results.join(CLAIMS);
        match fs::create_dir(&dir) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let held: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let (tx, rx) = mpsc::channel::<()>();
        let (beat_dir, beat_held) = (dir.clone(), Arc::clone(&held));
        let thread = std::thread::Builder::new()
            .name("claims-heartbeat".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(HEARTBEAT) {
                    let ids: Vec<String> = lock(&beat_held).keys().cloned().collect();
                    for id in ids {
                        // A claim released meanwhile is gone; nothing to touch.
                        let _ = touch(&claim_path(&beat_dir, &id));
                    }
                }
            })?;
        Ok(Claims {
            dir,
            held,
            heartbeat: Some((tx, thread)),
        })
    }

    /// Claims run `id` for this process, taking over a stale claim.
    pub fn take(&self, id: &str) -> std::io::Result<Taken> {
        let path = claim_path(&self.dir, id);
        // Three attempts: one may find a stale claim and remove it (a claim is removed once,
        // by the first taker to hold its takeover lock), and the next creates the claim again.
        for _ in 0..3 {
            let me = Holder::me();
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let text = serde_json::to_string(&me).expect("json serializes");
                    if let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.sync_all()) {
                        // An empty claim (a full disk) would keep others off the run for a
                        // whole lease.
                        let _ = fs::remove_file(&path);
                        return Err(e);
                    }
                    lock(&self.held).insert(id.to_string(), me.nonce);
                    return Ok(Taken::Mine);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let seen = match fs::read(&path) {
                Ok(bytes) => bytes,
                // Released between the two calls: try again.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let holder: Option<Holder> = serde_json::from_slice(&seen).ok();
            if !is_stale(&path, holder.as_ref())? {
                return Ok(Taken::Busy(holder));
            }
            take_over(&path, &seen)?;
        }
        let holder = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Ok(Taken::Busy(holder))
    }

    /// Gives back the claim of run `id` (its results or failure written): removes its file if it
    /// is still this process's.
    pub fn release(&self, id: &str) -> std::io::Result<()> {
        let Some(nonce) = lock(&self.held).remove(id) else {
            return Ok(());
        };
        let path = claim_path(&self.dir, id);
        let holder: Option<Holder> = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if holder.is_some_and(|h| h.nonce == nonce) {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

impl Drop for Claims {
    fn drop(&mut self) {
        if let Some((tx, thread)) = self.heartbeat.take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The claim file of run `id` in the claims folder `dir`.
pub fn claim_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.lock"))
}

/// A value no other claim has: host, pid, time and a counter.
fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{}-{nanos}-{}",
        crate::fs::host(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sets the modification time of `path` to now.
fn touch(path: &Path) -> std::io::Result<()> {
    File::options()
        .write(true)
        .open(path)?
        .set_modified(SystemTime::now())
}

/// Whether the claim at `path`, held by `holder` (`None`: unreadable, e.g. being written), is
/// abandoned: its process on this host is gone, or it has gone untouched for [`LEASE`].
fn is_stale(path: &Path, holder: Option<&Holder>) -> std::io::Result<bool> {
    if let Some(h) = holder {
        if h.host == crate::fs::host() {
            return Ok(!Path::new("/proc").join(h.pid.to_string()).exists());
        }
    }
    let age = match fs::metadata(path).and_then(|m| m.modified()) {
        Ok(t) => t.elapsed().unwrap_or_default(),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(age > LEASE)
}

/// Removes the stale claim `path`, whose bytes were `seen`, if it is still that claim: under
/// its takeover lock, so that no two takers can remove a claim one of them has just made.
/// Another taker busy with the same claim leaves it to them.
fn take_over(path: &Path, seen: &[u8]) -> std::io::Result<()> {
    let mut lock_name = path.as_os_str().to_owned();
    lock_name.push(".takeover");
    let lock = PathBuf::from(lock_name);
    match OpenOptions::new().write(true).create_new(true).open(&lock) {
        Ok(mut f) => {
            let me = serde_json::to_string(&Holder::me()).expect("json serializes");
            f.write_all(me.as_bytes())?
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            // A takeover in progress, or one whose taker died: that lock is stale by the rules
            // of a claim, and removed for the next attempt.
            let holder: Option<Holder> = fs::read(&lock)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if is_stale(&lock, holder.as_ref())? {
                let _ = fs::remove_file(&lock);
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    let result = match fs::read(path) {
        Ok(now) if now == seen => fs::remove_file(path),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    fs::remove_file(&lock)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gradlab-claim-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A claim as a process of this host with pid `pid` left it.
    fn plant(results: &Path, id: &str, pid: u32) {
        let holder = Holder {
            host: crate::fs::host(),
            pid,
            nonce: format!("planted-{pid}"),
            started: 0,
        };
        let path = claim_path(&results.join(CLAIMS), id);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, serde_json::to_string(&holder).unwrap()).unwrap();
    }

    /// The pid of a process that has ended.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_live_claim_is_busy_and_a_dead_one_is_taken_over() {
        let dir = tmpdir("live-dead");
        let claims = Claims::new(&dir).unwrap();
        assert!(matches!(claims.take("a").unwrap(), Taken::Mine));
        // This process is alive: a second taker (another thread's view) finds it busy.
        let other = Claims::new(&dir).unwrap();
        assert!(matches!(other.take("a").unwrap(), Taken::Busy(Some(_))));
        // Only the holder's release removes the file.
        other.release("a").unwrap();
        assert!(claim_path(&dir.join(CLAIMS), "a").exists());
        claims.release("a").unwrap();
        assert!(!claim_path(&dir.join(CLAIMS), "a").exists());

        plant(&dir, "b", dead_pid());
        assert!(matches!(claims.take("b").unwrap(), Taken::Mine));
        let held: Holder =
            serde_json::from_slice(&fs::read(claim_path(&dir.join(CLAIMS), "b")).unwrap()).unwrap();
        assert_eq!(held.pid, std::process::id());
        assert!(crate::fs::temporaries(&[dir.join(CLAIMS)]).is_empty());
    }

    /// Eight takers race for one stale claim, many times: exactly one wins each time.
    #[test]
    fn one_of_many_takers_wins_a_stale_claim() {
        let dir = tmpdir("race");
        let pid = dead_pid();
        for round in 0..50 {
            let id = format!("r{round}");
            plant(&dir, &id, pid);
            let wins = std::sync::atomic::AtomicUsize::new(0);
            // All take at once, and every claim is held until all have tried (a claim given
            // back early could rightly be taken again).
            let (start, tried) = (std::sync::Barrier::new(8), std::sync::Barrier::new(8));
            std::thread::scope(|scope| {
                for _ in 0..8 {
                    scope.spawn(|| {
                        let claims = Claims::new(&dir).unwrap();
                        start.wait();
                        if let Taken::Mine = claims.take(&id).unwrap() {
                            wins.fetch_add(1, Ordering::Relaxed);
                        }
                        tried.wait();
                    });
                }
            });
            assert_eq!(wins.into_inner(), 1, "round {round}");
        }
    }
}
