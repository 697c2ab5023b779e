//! One supervisor at a time: an exclusive lock on `.oxi/tick.lock`, holding who holds it (pid,
//! host, when it started, its command line) so a refused `oxi tick` or `oxi saturate` can name
//! it. The kernel drops the lock when the process dies (even by SIGKILL), so a crash never
//! wedges the queue.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another `oxi tick` or `oxi saturate` holds the lock (not an error for a scheduled tick,
    /// which exits 0; saturate refuses to start).
    #[error("already running: {} holds {}; stop it first ({}) or wait for it to end", describe(.holder.as_ref()), .path.display(), stop_hint(.holder.as_ref()))]
    Held {
        path: PathBuf,
        /// `None` when the file says nothing readable (the holder had not written it yet).
        holder: Option<Holder>,
    },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Who holds the lock, as written into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// The holder's command line, e.g. `oxi saturate --concurrency 2`.
    pub command: String,
}

impl Holder {
    fn this_process() -> Self {
        Self {
            pid: std::process::id(),
            host: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "unknown host".to_owned()),
            started_at: crate::clock::rfc3339(crate::clock::now_ms()),
            command: command_line(std::env::args()),
        }
    }

    /// The lock file's text: this format, or a bare pid (an older oxi).
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        serde_json::from_str(text).ok().or_else(|| {
            text.parse().ok().map(|pid| Self {
                pid,
                host: "unknown host".to_owned(),
                started_at: "at an unknown time".to_owned(),
                command: "oxi".to_owned(),
            })
        })
    }
}

impl Holder {
    /// The named holder ran on this host and has exited (signal 0 finds no such process).
    /// Another host's process cannot be asked; a pid reused since only means no wait.
    fn is_gone(&self) -> bool {
        let this_host =
            nix::unistd::gethostname().is_ok_and(|h| h.to_string_lossy() == self.host.as_str());
        let Ok(pid) = i32::try_from(self.pid) else {
            return false;
        };
        this_host
            && pid > 0
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                == Err(nix::errno::Errno::ESRCH)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` (pid {} on {}, started {})",
            self.command, self.pid, self.host, self.started_at
        )
    }
}

/// How a refusal names the holder.
pub fn describe(holder: Option<&Holder>) -> String {
    holder.map_or_else(
        || "another oxi (it has not said which yet)".to_owned(),
        Holder::to_string,
    )
}

fn stop_hint(holder: Option<&Holder>) -> String {
    holder.map_or_else(
        || "kill -TERM its pid".to_owned(),
        |h| format!("kill -TERM {} on {}", h.pid, h.host),
    )
}

/// The program's file name and its arguments, quoted where a shell would need it.
fn command_line(args: impl Iterator<Item = String>) -> String {
    args.enumerate()
        .map(|(i, arg)| {
            let arg = if i == 0 {
                Path::new(&arg)
                    .file_name()
                    .map_or(arg.clone(), |n| n.to_string_lossy().into_owned())
            } else {
                arg
            };
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'') {
                format!("'{}'", arg.replace('\'', r"'\''"))
            } else {
                arg
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How long a lock whose named holder is gone may stay held (by the holder's forked child
/// on its way to exec or exit) before it is reported as held.
const DEAD_HOLDER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
const DEAD_HOLDER_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Who the lock file names. The holder writes itself down right after locking; give it a
/// moment if we raced it.
fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    for _ in 0..20 {
        text.clear();
        let _ = file.rewind();
        let _ = file.read_to_string(&mut text);
        if let Some(holder) = Holder::parse(&text) {
            return Some(holder);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct TickLock {
    _file: File,
    /// On a shared ledger (`[ledger] url`), this host's advisory lock on the repository too.
    shared: Option<crate::ledger::PgTickLock>,
}

/// The tick lock of `config`'s repository: the file lock, and on a shared ledger also the
/// ledger's advisory lock of this host on this repository (two hosts tick at once, one host
/// never twice, even from two clones).
///
/// # Errors
/// `Held` naming the holder when another process has either lock; `Io` when the file or the
/// shared ledger cannot be reached.
pub fn acquire_for(config: &crate::config::LoadedConfig) -> Result<TickLock, LockError> {
    let path = config.state_dir.join("tick.lock");
    let mut lock = acquire(&path)?;
    let at = config.ledger_at();
    if !at.is_shared() {
        return Ok(lock);
    }
    let shared_error = |e: crate::ledger::LedgerError| LockError::Io {
        path: PathBuf::from(at.to_string()),
        source: std::io::Error::other(e),
    };
    let ledger = crate::ledger::Ledger::open_at(&at).map_err(shared_error)?;
    let host = config.config.host.resolved_name();
    let me = serde_json::to_string(&Holder::this_process()).unwrap_or_default();
    let repository = config.repo_root.display().to_string();
    match ledger
        .try_tick_lock(&host, &repository, &me)
        .map_err(shared_error)?
    {
        crate::ledger::TickLockAttempt::Taken(shared) => {
            lock.shared = Some(shared);
            Ok(lock)
        }
        crate::ledger::TickLockAttempt::Held(holder) => Err(LockError::Held {
            path: PathBuf::from(format!("the tick lock of host {host} on {at}")),
            holder: holder.as_deref().and_then(Holder::parse),
        }),
        crate::ledger::TickLockAttempt::Sqlite => Ok(lock),
    }
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
    let mut waited_for_the_dead = std::time::Duration::ZERO;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                // A holder that is gone no longer holds the lock itself: what still does is a
                // child it forked a moment before it died, between fork and exec (the lock's
                // descriptor closes at exec or exit). Wait for that rather than skip a tick
                // over a lock about to be released, or name a dead process as its holder.
                if waited_for_the_dead < DEAD_HOLDER_GRACE
                    && holder.as_ref().is_some_and(Holder::is_gone)
                {
                    std::thread::sleep(DEAD_HOLDER_POLL);
                    waited_for_the_dead += DEAD_HOLDER_POLL;
                    continue;
                }
                return Err(LockError::Held {
                    path: path.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    let me = serde_json::to_string(&Holder::this_process()).unwrap_or_default();
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{me}").map_err(io)?;
    file.flush().map_err(io)?;
    Ok(TickLock {
        _file: file,
        shared: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_host_and_command() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tick.lock");
        let first = acquire(&path).unwrap();
        let LockError::Held { holder, .. } = acquire(&path).unwrap_err() else {
            panic!("not refused as held");
        };
        let holder = holder.unwrap();
        assert_eq!(holder.pid, std::process::id());
        assert!(!holder.host.is_empty() && !holder.command.is_empty());
        drop(first);
        assert!(acquire(&path).is_ok());
    }

    /// The lock as a dead holder's forked child keeps it: another open file description
    /// of the same file, locked, naming a process that has exited.
    fn held_for_a_dead_holder(path: &std::path::Path) -> File {
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        dead.wait().unwrap();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        file.try_lock().unwrap();
        let holder = Holder {
            pid: dead.id(),
            ..Holder::this_process()
        };
        writeln!(file, "{}", serde_json::to_string(&holder).unwrap()).unwrap();
        file
    }

    #[test]
    fn a_lock_still_held_for_a_holder_that_died_is_taken_once_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tick.lock");
        let held = held_for_a_dead_holder(&path);
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        let lock = acquire(&path);
        release.join().unwrap();
        assert!(lock.is_ok(), "{lock:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(Holder::parse(&text).unwrap().pid, std::process::id());
    }

    #[test]
    fn a_lock_a_dead_holder_never_releases_is_reported_held_in_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tick.lock");
        let _held = held_for_a_dead_holder(&path);
        let LockError::Held { holder, .. } = acquire(&path).unwrap_err() else {
            panic!("not refused as held");
        };
        assert!(holder.unwrap().is_gone());
    }

    #[test]
    fn an_older_lock_file_with_only_a_pid_still_names_the_pid() {
        let holder = Holder::parse("1234\n").unwrap();
        assert_eq!(holder.pid, 1234);
        assert!(Holder::parse("").is_none());
    }

    #[test]
    fn the_command_line_is_quoted_where_a_shell_needs_it() {
        let args = [
            "/usr/local/bin/oxi",
            "saturate",
            "--max-cost-per-day",
            "5",
            "a b",
            "it's",
        ];
        assert_eq!(
            command_line(args.iter().map(|a| (*a).to_owned())),
            r"oxi saturate --max-cost-per-day 5 'a b' 'it'\''s'"
        );
    }
}
