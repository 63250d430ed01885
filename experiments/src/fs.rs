//! Files on disk, at the bottom of every stage: atomic writes, the temporary files they leave
//! when a writer is killed, and output folders checked before any work starts.
//!
//! Every file gradlab writes goes through [`write_atomic`]: a temporary file in the same folder,
//! flushed to disk, then renamed, so a reader sees the old file or the whole new one, never a
//! part. A writer killed between the two leaves a temporary file, which [`clean_temporaries`]
//! removes once its writer is gone.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// This machine's host name, as recorded in results and temporary-file names.
pub fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Seconds since the Unix epoch (0 on a clock set before it), as recorded in failure records
/// and manifests.
pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Marks a temporary file: `.<name>.tmp-<host>-<pid>-<n>`. Host and pid tell
/// [`clean_temporaries`] whether its writer may still be alive; `n` keeps the writes of one
/// process apart.
const TMP_MARK: &str = ".tmp-";

/// The host as it appears in temporary-file names (`-` separates the fields).
fn tmp_host() -> String {
    host().replace('-', "_")
}

/// A fresh temporary name beside `path`, in the form [`clean_temporaries`] recognises.
fn tmp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = folder_of(path);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        ".{name}{TMP_MARK}{}-{}-{n}",
        tmp_host(),
        std::process::id()
    ))
}

/// Testing hook (feature `test-hooks` only): milliseconds to wait between writing a temporary
/// file and renaming it (`GRADLAB_TEST_WRITE_DELAY_MS`), so that the reliability tests can
/// kill a process mid-write. A user's build has no such hook.
#[cfg(feature = "test-hooks")]
fn write_delay() -> Option<Duration> {
    static DELAY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *DELAY.get_or_init(|| {
        std::env::var("GRADLAB_TEST_WRITE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    })
}

#[cfg(not(feature = "test-hooks"))]
fn write_delay() -> Option<Duration> {
    None
}

/// Testing hook (feature `test-hooks` only): `GRADLAB_TEST_DISK_FAULT=<errno>:<bytes>` makes
/// every write through [`write_atomic`] fail with OS error `errno` (28: no space left, 30:
/// read-only file system) once this process has written `bytes` bytes, so that the tests of a
/// full disk and a read-only folder run without root. A user's build has no such hook.
#[cfg(feature = "test-hooks")]
fn injected_fault(len: usize) -> Option<std::io::Error> {
    static FAULT: std::sync::OnceLock<Option<(i32, u64)>> = std::sync::OnceLock::new();
    static WRITTEN: AtomicU64 = AtomicU64::new(0);
    let (errno, limit) = (*FAULT.get_or_init(|| {
        let v = std::env::var("GRADLAB_TEST_DISK_FAULT").ok()?;
        let (errno, bytes) = v.split_once(':')?;
        Some((errno.parse().ok()?, bytes.parse().ok()?))
    }))?;
    let before = WRITTEN.fetch_add(len as u64, Ordering::Relaxed);
    (before + len as u64 > limit).then(|| std::io::Error::from_raw_os_error(errno))
}

#[cfg(not(feature = "test-hooks"))]
fn injected_fault(_len: usize) -> Option<std::io::Error> {
    None
}

/// The temporary file [`write_atomic`] hands its writer. It keeps the first error the disk
/// returned, because encoders wrap it in their own: polars reports a full disk as "Invalid
/// thrift: transport error", and the user must read "no space left" instead.
pub struct TempFile {
    file: File,
    first_error: Option<std::io::Error>,
}

impl TempFile {
    fn keep<T>(&mut self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &result {
            if self.first_error.is_none() {
                self.first_error = Some(match e.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(e.kind(), e.to_string()),
                });
            }
        }
        result
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let result = match injected_fault(buf.len()) {
            Some(e) => Err(e),
            None => self.file.write(buf),
        };
        self.keep(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = self.file.flush();
        self.keep(result)
    }
}

/// The folder `path` is in: its parent, or `.` for a bare file name (whose parent is empty).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes `path` atomically: a temporary file in the same folder, flushed to disk, then renamed,
/// so a reader sees the old file or the whole new one, never a part. The folder is created if
/// its own parent exists; a missing parent is an error (`NotFound`), so that a results folder
/// deleted or unmounted mid-sweep is noticed instead of silently made again. When `write`
/// fails after the disk refused a write, the error is the disk's (e.g. `StorageFull`).
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut TempFile) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = folder_of(path);
    match fs::create_dir(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = TempFile {
            file: File::create(&tmp)?,
            first_error: None,
        };
        if let Err(e) = write(&mut f).and_then(|()| f.flush()) {
            return Err(f.first_error.take().unwrap_or(e));
        }
        f.file.sync_all()?;
        if let Some(delay) = write_delay() {
            std::thread::sleep(delay);
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomic`] of a byte string.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, |f| f.write_all(bytes))
}

/// How long a temporary file of another host must be untouched before it counts as left over
/// (a write takes milliseconds; hosts sharing a folder cannot see each other's processes).
const FOREIGN_TMP_AGE: Duration = Duration::from_secs(600);

/// Lists the temporary files directly in `folders` (folders that do not exist hold none).
pub fn temporaries(folders: &[PathBuf]) -> Vec<PathBuf> {
    folders
        .iter()
        .filter_map(|dir| fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with('.') && name.contains(TMP_MARK)
        })
        .map(|e| e.path())
        .collect()
}

/// Removes the temporary files in `folders` left by killed writers: those of this host whose
/// process is gone, and those of other hosts untouched for ten minutes. Files of live writers
/// (a shard running beside this one) are kept. Returns how many were removed.
pub fn clean_temporaries(folders: &[PathBuf]) -> std::io::Result<usize> {
    let me = tmp_host();
    let mut removed = 0;
    for path in temporaries(folders) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let owner = name
            .as_deref()
            .and_then(|n| n.rsplit_once(TMP_MARK))
            .map_or("", |o| o.1);
        let mut parts = owner.rsplitn(3, '-');
        let (_n, pid, host) = (parts.next(), parts.next(), parts.next());
        let stale = if host == Some(me.as_str()) {
            let pid = pid.unwrap_or("");
            pid == std::process::id().to_string() || !Path::new("/proc").join(pid).exists()
        } else {
            fs::metadata(&path)?
                .modified()?
                .elapsed()
                .is_ok_and(|age| age > FOREIGN_TMP_AGE)
        };
        if stale {
            fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A fault of the folder results are written to that fails every later write the same way, so
/// that a sweep stops starting runs instead of failing each of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FolderFault {
    /// The disk (or quota) is full.
    NoSpace,
    /// The folder or its file system refuses writes.
    ReadOnly,
    /// The folder is gone (deleted, moved or unmounted).
    Vanished,
}

impl FolderFault {
    /// The fault behind `error`, returned by a write into the results folder `dir`; `None` for
    /// an error that may not repeat.
    pub fn of(error: &std::io::Error, dir: &Path) -> Option<FolderFault> {
        match error.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Some(FolderFault::NoSpace),
            ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => {
                Some(FolderFault::ReadOnly)
            }
            ErrorKind::NotFound if !dir.is_dir() => Some(FolderFault::Vanished),
            _ => None,
        }
    }

    /// What happened to `dir`, and what to do about it.
    pub fn message(self, dir: &Path) -> String {
        let dir = dir.display();
        match self {
            FolderFault::NoSpace => format!("no space left on {dir}; free some space"),
            FolderFault::ReadOnly => {
                format!("{dir} is read-only; make it writable (chmod -R u+w {dir}, or remount it)")
            }
            FolderFault::Vanished => format!(
                "the results folder {dir} has vanished (deleted, moved or unmounted); put it back"
            ),
        }
    }
}

/// Why an output folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OutputDirError {
    #[error("cannot create the output folder {dir}: its parent {parent} does not exist; create it first or choose another --out")]
    NoParent { dir: PathBuf, parent: PathBuf },
    #[error("cannot create the output folder {dir}: its parent {parent} is not a folder")]
    ParentNotAFolder { dir: PathBuf, parent: PathBuf },
    #[error("the output path {0} is a file, not a folder")]
    NotAFolder(PathBuf),
    #[error("the output folder {0} is read-only; make it writable (chmod u+w {0}) or choose another --out")]
    ReadOnly(PathBuf),
    #[error("the output folder {dir} is not writable: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Checks, before any work starts, that results can be written to `dir` and to those of its
/// `subfolders` that exist, and creates `dir`. The folder's parent must exist (a mistyped path
/// is an error, not a new tree of folders) unless `create_parents` (the default
/// `results/<name>`); a folder marked read-only (no write permission bits) is refused even where
/// the user could write to it anyway (root).
pub fn prepare_output_dir(
    dir: &Path,
    create_parents: bool,
    subfolders: &[&str],
) -> Result<(), OutputDirError> {
    if dir.exists() {
        check_writable(dir)?;
        for sub in subfolders {
            let sub = dir.join(sub);
            if sub.is_dir() {
                check_writable(&sub)?;
            }
        }
        return Ok(());
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (dir_buf, parent_buf) = (dir.to_path_buf(), parent.to_path_buf());
    if parent.exists() && !parent.is_dir() {
        return Err(OutputDirError::ParentNotAFolder {
            dir: dir_buf,
            parent: parent_buf,
        });
    }
    if !parent.exists() && !create_parents {
        return Err(OutputDirError::NoParent {
            dir: dir_buf,
            parent: parent_buf,
        });
    }
    fs::create_dir_all(dir).map_err(|source| OutputDirError::Io {
        dir: dir_buf,
        source,
    })?;
    check_writable(dir)
}

fn check_writable(dir: &Path) -> Result<(), OutputDirError> {
    let io = |source| OutputDirError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let meta = fs::metadata(dir).map_err(io)?;
    if !meta.is_dir() {
        return Err(OutputDirError::NotAFolder(dir.to_path_buf()));
    }
    #[cfg(unix)]
    let read_only = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o222 == 0;
    #[cfg(not(unix))]
    let read_only = meta.permissions().readonly();
    if read_only {
        return Err(OutputDirError::ReadOnly(dir.to_path_buf()));
    }
    let probe = dir.join(format!(".gradlab-write-test-{}", std::process::id()));
    fs::write(&probe, b"").map_err(io)?;
    fs::remove_file(&probe).ok();
    Ok(())
}
