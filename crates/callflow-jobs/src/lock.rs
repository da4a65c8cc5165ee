//! [`DirLock`]: one process at a time on a directory (an upload or results directory), held for the process's life.
//!
//! Two managers on one results directory would each recover the other's running jobs,
//! and two servers on one upload directory would each take the other's captures for
//! leftovers. So whoever runs a manager takes an exclusive advisory lock (`flock`) on a
//! lock file in each directory it owns and keeps it until it exits; the kernel releases
//! it when the process dies, however it dies, so a crash leaves no stale lock. The holder
//! writes its PID and start time into the file, for the refusal to name it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name, in each locked directory.
pub const LOCK_FILE: &str = ".callflowd.lock";

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the directory.
    #[error(
        "{dir} is in use by another callflowd or callflow-cli ({holder}); stop it, or give this one other directories"
    )]
    Held {
        /// The directory.
        dir: PathBuf,
        /// What the holder wrote in the lock file (`pid 1234, started at 1764851000`).
        holder: String,
    },
    /// The lock file cannot be created or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// An exclusive lock on a directory, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    /// Held open: closing it would release the lock.
    _file: File,
    dir: PathBuf,
}

impl DirLock {
    /// Locks `dir` (created if missing) for this process, or says who holds it.
    pub fn acquire(dir: impl AsRef<Path>) -> Result<DirLock, LockError> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        std::fs::create_dir_all(&dir).map_err(io)?;
        // Not truncated on open: the holder's line must survive a refused attempt.
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "a process that has not written its PID yet".to_string(),
                    line => line.to_string(),
                };
                return Err(LockError::Held { dir, holder });
            }
            Err(e) => return Err(io(e.into())),
        }
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let line = format!("pid {}, started at {started} (Unix time)\n", std::process::id());
        file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(line.as_bytes())).map_err(io)?;
        Ok(DirLock { _file: file, dir })
    }

    /// Locks every directory of `dirs` once (the same directory named twice, or by two
    /// paths, is locked once: a second `flock` of it from this process would fail).
    pub fn acquire_all<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Result<Vec<DirLock>, LockError> {
        let mut locks: Vec<DirLock> = Vec::new();
        for dir in dirs {
            std::fs::create_dir_all(dir).map_err(|source| LockError::Io { path: dir.to_path_buf(), source })?;
            let canonical = dir.canonicalize().map_err(|source| LockError::Io { path: dir.to_path_buf(), source })?;
            if locks.iter().any(|l| l.dir == canonical) {
                continue;
            }
            locks.push(DirLock::acquire(&canonical)?);
        }
        Ok(locks)
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_directory_is_refused_with_the_holders_pid_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("callflow-lock-{}", std::process::id()));
        let first = DirLock::acquire(&dir).unwrap();
        // Another open file description conflicts, as another process's would.
        let err = DirLock::acquire(&dir).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(err.contains(&dir.display().to_string()), "{err}");
        // The same directory twice, by two spellings, is one lock.
        drop(first);
        let twice = DirLock::acquire_all([dir.as_path(), dir.join(".").as_path()]).unwrap();
        assert_eq!(twice.len(), 1);
        drop(twice);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
