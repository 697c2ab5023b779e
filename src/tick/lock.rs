//! One tick at a time: an exclusive lock on `.oxi/tick.lock`, holding the holder's pid. The
//! kernel drops the lock when the process dies (even by SIGKILL), so a crash never wedges the
//! queue.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("tick already running (pid {0})")]
    Held(String),
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct TickLock {
    _file: File,
    pub path: PathBuf,
}

pub fn acquire(path: &Path) -> Result<TickLock, LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            // The holder writes its pid right after locking; give it a moment if we raced it.
            let mut holder = String::new();
            for _ in 0..20 {
                holder.clear();
                let _ = file.rewind();
                let _ = file.read_to_string(&mut holder);
                if !holder.trim().is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let holder = holder.trim();
            return Err(LockError::Held(if holder.is_empty() {
                "unknown".to_owned()
            } else {
                holder.to_owned()
            }));
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(TickLock {
        _file: file,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tick.lock");
        let first = acquire(&path).unwrap();
        let second = acquire(&path).unwrap_err();
        assert_eq!(
            second.to_string(),
            format!("tick already running (pid {})", std::process::id())
        );
        drop(first);
        assert!(acquire(&path).is_ok());
    }
}
