//! The per-run guard: a small process between oxi and a worker, so that "the worker dies with
//! oxi" holds for everything the worker starts, not only for the worker itself.
//!
//! A parent-death signal reaches only a direct child: when oxi is killed with SIGKILL, a
//! worker's own children (codex's native binary under its node wrapper, a grandchild that
//! called `setsid`) are handed to init and live on until a later tick reaps the recorded group,
//! or forever when they left it. The guard is the `oxi` binary itself, re-executed as
//! `oxi __guard <oxi-pid> <program> <argv0> [args…]` (a hidden entry point, see `main.rs`):
//!
//! - it is oxi's child, the leader of the run's process group (its pid is what the ledger
//!   records and the reaper ends), and it gets SIGTERM when oxi dies (its parent-death signal);
//! - it is a child subreaper, so every descendant of the worker that loses its parent is
//!   re-parented to the guard, whatever process group or session it moved to, and can be found
//!   by walking parent pids in /proc;
//! - it starts the worker in its own group with the same cwd, environment and pipes (it reads
//!   and writes nothing itself), waits for it, then kills whatever is left below it and exits
//!   with the worker's status (the same code, or the same signal);
//! - on SIGTERM it asks whether oxi is still its parent: if not, oxi is gone and it kills its
//!   whole tree at once (SIGKILL, repeated until nothing is left); if so, the SIGTERM came to
//!   the whole group from one of oxi's deadlines, the worker got it too, and the guard passes
//!   it on only to descendants that left the group;
//! - on SIGUSR1 (oxi's "end it now", where it would otherwise SIGKILL the group) it kills its
//!   whole tree and exits, so what left the group is ended too.
//!
//! Linux only (subreapers and parent-death signals are Linux's). Elsewhere oxi starts the
//! worker directly, in its own process group, ended by deadlines and the reaper.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The `argv[1]` that makes `oxi` run as a guard instead of parsing a command line.
pub const ENTRY: &str = "__guard";

static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Called by the `oxi` binary at startup: runs of this process are started under a guard
/// (`oxi __guard …`). A library user (unit tests, benches) that does not call it runs workers
/// directly, without a guard. On Linux the path is `/proc/self/exe`, which still names this
/// binary after an upgrade replaced the file on disk.
pub fn enable() {
    #[cfg(target_os = "linux")]
    {
        let _ = PROGRAM.set(PathBuf::from("/proc/self/exe"));
    }
}

/// The binary to run as the guard, when this process is `oxi` on Linux.
pub fn program() -> Option<PathBuf> {
    PROGRAM.get().cloned()
}

/// Variables of oxi's own environment that its guard keeps for itself and never hands the
/// worker: `LLVM_PROFILE_FILE`, so that a coverage build of oxi (scripts/coverage) adds the
/// guard's counts to the measurement instead of writing `default_*.profraw` into the worktree.
const OWN_ENV: &[&str] = &["LLVM_PROFILE_FILE"];

/// Names the variables [`own_env`] gave the guard, so it removes them again before the worker
/// starts (a worker whose configuration sets one of them keeps its own value: it is not given).
const OWN_ENV_MARKER: &str = "OXI_GUARD_OWN_ENV";

/// Set by LLVM's profiling runtime in the environment of an instrumented process, here the
/// guard's own (a coverage build); the worker must not inherit it.
const PROFILE_RUNTIME_ENV: &str = "__LLVM_PROFILE_RT_INIT_ONCE";

/// What the guard gets besides the worker's environment `worker_env`: oxi's own
/// `LLVM_PROFILE_FILE` when set and absent from the worker's, and a marker naming it so the
/// guard removes it again before the worker starts.
#[must_use]
pub fn own_env(worker_env: &[(String, String)]) -> Vec<(String, OsString)> {
    let given: Vec<(String, OsString)> = OWN_ENV
        .iter()
        .filter(|name| !worker_env.iter().any(|(k, _)| k == *name))
        .filter_map(|name| std::env::var_os(name).map(|value| ((*name).to_owned(), value)))
        .collect();
    if given.is_empty() {
        return given;
    }
    let names = given
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let mut env = given;
    env.push((OWN_ENV_MARKER.to_owned(), OsString::from(names)));
    env
}

/// The guard's argv after `oxi`, for a worker started by the oxi process `parent`.
pub fn args(parent: u32, program: &std::path::Path, argv: &[String]) -> Vec<OsString> {
    let mut args = vec![
        OsString::from(ENTRY),
        OsString::from(parent.to_string()),
        program.as_os_str().to_owned(),
    ];
    args.extend(argv.iter().map(OsString::from));
    args
}

/// True when process `pid` is a run's guard (its argv is `oxi __guard …`), so it may be sent
/// the guard's signals. Never on other systems.
pub fn leads(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).nth(1) == Some(ENTRY.as_bytes()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        false
    }
}

#[cfg(target_os = "linux")]
pub use linux::{main, processes};

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::OsString;
    use std::io::Write;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::time::Duration;

    use nix::errno::Errno;
    use nix::sys::signal::{SigSet, Signal, kill};

    use super::{OWN_ENV_MARKER, PROFILE_RUNTIME_ENV};
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    use nix::unistd::Pid;

    use super::ENTRY;

    /// Exit code when the guard could not start the worker (as shells report "cannot
    /// execute").
    const CANNOT_START: i32 = 127;

    /// A process as /proc/<pid>/stat describes it.
    #[derive(Debug, Clone, Copy)]
    pub struct ProcStat {
        pub pid: u32,
        pub ppid: u32,
        pub pgrp: u32,
        /// Dead, waiting for its parent to collect it: holds nothing, cannot run.
        pub zombie: bool,
    }

    /// Every process visible in /proc.
    pub fn processes() -> Vec<ProcStat> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                // pid (comm) state ppid pgrp ...; comm may contain spaces, so split after ')'.
                let (_, rest) = stat.rsplit_once(')')?;
                let mut fields = rest.split_whitespace();
                let state = fields.next()?;
                let ppid = fields.next()?.parse().ok()?;
                let pgrp = fields.next()?.parse().ok()?;
                Some(ProcStat {
                    pid,
                    ppid,
                    pgrp,
                    zombie: matches!(state, "Z" | "X"),
                })
            })
            .collect()
    }

    /// The live (not zombie) processes below `root`, found by walking parent pids.
    fn descendants(root: u32) -> Vec<ProcStat> {
        let all = processes();
        let mut found: Vec<ProcStat> = Vec::new();
        let mut frontier = vec![root];
        while let Some(parent) = frontier.pop() {
            for p in all.iter().filter(|p| p.ppid == parent) {
                frontier.push(p.pid);
                found.push(*p);
            }
        }
        found.retain(|p| !p.zombie);
        found
    }

    fn send(pid: u32, signal: Signal) {
        if let Ok(raw) = i32::try_from(pid) {
            // ESRCH (gone meanwhile) is fine.
            let _ = kill(Pid::from_raw(raw), signal);
        }
    }

    /// Collects every exited child; returns the worker's status if it was among them.
    fn reap_children(worker: Pid) -> Option<std::process::ExitStatus> {
        let mut status = None;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    if pid == worker {
                        status = Some(std::process::ExitStatus::from_raw((code & 0xff) << 8));
                    }
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    if pid == worker {
                        status = Some(std::process::ExitStatus::from_raw(signal as i32));
                    }
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return status,
                Ok(_) => {}
            }
        }
    }

    /// SIGKILLs everything below the guard until nothing is left (a process forking while it is
    /// killed leaves a child that is re-parented here and found on the next pass), collecting
    /// whatever exits. Returns the worker's status if it was collected meanwhile.
    fn kill_tree(me: u32, worker: Pid) -> Option<std::process::ExitStatus> {
        let mut status = None;
        for _ in 0..2000 {
            let below = descendants(me);
            if below.is_empty() {
                break;
            }
            for p in &below {
                send(p.pid, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(2));
            status = status.or(reap_children(worker));
        }
        status.or(reap_children(worker))
    }

    /// Kills the whole tree and exits as the worker ended (killed, unless it had exited already).
    fn end_all(me: u32, worker: Pid) -> ! {
        let status = kill_tree(me, worker);
        exit_like(status.unwrap_or(std::process::ExitStatus::from_raw(Signal::SIGKILL as i32)))
    }

    /// Ends the guard the way the worker ended: the same exit code, or the same signal.
    fn exit_like(status: std::process::ExitStatus) -> ! {
        if let Some(code) = status.code() {
            std::process::exit(code);
        }
        let signal = status.signal().unwrap_or(Signal::SIGKILL as i32);
        if let Ok(signal) = Signal::try_from(signal) {
            // No core file of oxi for a worker that dumped core.
            let _ = nix::sys::prctl::set_dumpable(false);
            #[allow(unsafe_code)]
            // SAFETY: restoring the default disposition installs no handler code.
            unsafe {
                let _ = nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl);
            }
            let mut set = SigSet::empty();
            set.add(signal);
            let _ = set.thread_unblock();
            let _ = nix::sys::signal::raise(signal);
        }
        std::process::exit(128 + signal)
    }

    /// The guard's main: `args` are what follows `oxi __guard`. Never returns.
    pub fn main(args: &[OsString]) -> ! {
        let (Some(parent), Some(program), Some(argv0)) = (
            args.first()
                .and_then(|p| p.to_str())
                .and_then(|p| p.parse::<i32>().ok()),
            args.get(1),
            args.get(2),
        ) else {
            let _ = writeln!(
                std::io::stderr(),
                "oxi {ENTRY}: internal entry point of oxi; usage: oxi {ENTRY} <oxi-pid> <program> <argv0> [args…]"
            );
            std::process::exit(crate::exit::USAGE);
        };
        let parent = Pid::from_raw(parent);
        // Signals are taken synchronously (sigwait), so nothing runs in a handler. Blocked before
        // the parent check: a parent-death signal that comes later stays pending, one that came
        // earlier killed the guard (default action) before it started anything.
        let mut waited = SigSet::empty();
        waited.add(Signal::SIGTERM);
        waited.add(Signal::SIGCHLD);
        waited.add(Signal::SIGUSR1);
        let _ = waited.thread_block();
        if nix::unistd::getppid() != parent {
            std::process::exit(CANNOT_START);
        }
        let _ = nix::sys::prctl::set_child_subreaper(true);
        let me = std::process::id();

        let mut command = std::process::Command::new(program);
        command.arg0(argv0).args(&args[3..]);
        command.env_remove(PROFILE_RUNTIME_ENV);
        if let Some(names) = std::env::var_os(OWN_ENV_MARKER) {
            command.env_remove(OWN_ENV_MARKER);
            for name in names.to_string_lossy().split(',') {
                command.env_remove(name);
            }
        }
        #[allow(unsafe_code)]
        // SAFETY: runs in the forked child before exec and only calls sigprocmask(2), which is
        // async-signal-safe; `waited` is a plain bit set copied into the closure.
        unsafe {
            // The worker must not inherit the guard's blocked signals (it would never see oxi's
            // SIGTERM); the mask survives exec.
            command.pre_exec(move || waited.thread_unblock().map_err(std::io::Error::from));
        }
        crate::process::die_with_parent(&mut command, Signal::SIGKILL);
        let worker = match command.spawn() {
            Ok(child) => Pid::from_raw(child.id() as i32),
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "oxi: cannot start {}: {e}",
                    program.to_string_lossy()
                );
                std::process::exit(CANNOT_START);
            }
        };

        loop {
            match waited.wait() {
                Ok(Signal::SIGCHLD) => {
                    if let Some(status) = reap_children(worker) {
                        // Whatever the worker left behind is an orphan of this run.
                        kill_tree(me, worker);
                        exit_like(status);
                    }
                }
                Ok(Signal::SIGUSR1) => end_all(me, worker),
                // oxi is gone: nobody will read the output or stop the run.
                Ok(Signal::SIGTERM) if nix::unistd::getppid() != parent => end_all(me, worker),
                Ok(Signal::SIGTERM) => {
                    // One of oxi's deadlines signalled the group; pass it on to the descendants
                    // that left the group, which the group signal did not reach.
                    let group = nix::unistd::getpgrp().as_raw() as u32;
                    for p in descendants(me).iter().filter(|p| p.pgrp != group) {
                        send(p.pid, Signal::SIGTERM);
                    }
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => end_all(me, worker),
            }
        }
    }
}

/// Not Linux: no guard is ever started (see [`program`]).
#[cfg(not(target_os = "linux"))]
pub fn main(_args: &[OsString]) -> ! {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "oxi {ENTRY}: the per-run guard exists only on Linux"
    );
    std::process::exit(crate::exit::USAGE)
}
