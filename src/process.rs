//! Running a worker process as a careful human would: argv-form (no shell anywhere), a cleared
//! environment, null stdin, its own process group, a parent-death signal, wall-clock and stall
//! deadlines that end the whole group (SIGTERM, grace, SIGKILL), and both pipes drained
//! concurrently with bounded memory however much the worker prints. In the `oxi` binary on
//! Linux the worker runs under a per-run guard (see [`guard`]) so that everything it starts
//! dies with oxi, also what left its process group.

pub mod guard;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

/// Bytes read from a pipe at a time.
const CHUNK: usize = 32 * 1024;
/// Output is handed to the sink's `persist` at most this long after it was read, so a run
/// whose supervisor dies keeps what it printed, without a write per line.
pub const PERSIST_EVERY: Duration = Duration::from_millis(200);

/// Errors that prevent a run from starting. Once started, every ending is a `Finished`.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The binary is missing or not executable. Not retryable with the same config.
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// An empty argv (config validation prevents this).
    #[error("empty argv")]
    EmptyArgv,
    /// The sink refused the process before its first byte was read (e.g. the ledger could not
    /// record its pid); the process group has been killed.
    #[error("could not record the started process: {0}")]
    Record(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Spawn {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// The complete environment (the caller builds the allow-list; nothing is inherited).
    pub env: Vec<(String, String)>,
    /// The `oxi` binary to run as this run's guard ([`guard::program`]), or `None` to start
    /// the argv directly (library tests and benches, which are not `oxi`; macOS): the worker
    /// then still has its own group and, on Linux, a parent-death signal, but descendants
    /// that outlive it or leave its group are not ended when oxi dies.
    pub guard: Option<PathBuf>,
    /// Applied in the child before exec (Linux: Landlock), inherited by all it starts.
    pub confine: Option<std::sync::Arc<crate::confine::Confinement>>,
}

/// Deadlines and caps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub wall: Duration,
    pub stall: Duration,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Longer lines are cut to this many bytes and marked truncated.
    pub line_cap: usize,
    /// After the worker exits, how long to keep reading pipes that grandchildren hold open.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall: Duration::from_secs(45 * 60),
            stall: Duration::from_secs(10 * 60),
            grace: Duration::from_secs(5),
            line_cap: 1024 * 1024,
            drain: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Why oxi stopped the process (as opposed to it exiting by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    WallClock,
    Stalled,
    Budget,
    OutputCapped,
    Shutdown,
}

/// The sink's answer to a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop(StopReason),
}

/// Receives the process's pid before any output is read, then every line.
pub trait LineSink {
    /// Called once, right after spawn and before the first byte is read.
    fn spawned(&mut self, pid: u32) -> Result<(), String>;
    /// One line (without its newline). `truncated` when it was longer than `line_cap`.
    fn line(&mut self, stream: Stream, line: &[u8], truncated: bool) -> Control;
    /// Called on every output chunk, so leases can be renewed while output flows.
    fn heartbeat(&mut self) {}
    /// Called at most [`PERSIST_EVERY`] after output was read: write what is buffered to
    /// disk, so it survives oxi being killed.
    fn persist(&mut self) {}
}

/// How the process ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finished {
    pub pid: u32,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stop: Option<StopReason>,
    pub elapsed_ms: u64,
    /// From oxi's first stop signal to the exit, when oxi stopped it.
    pub stop_to_exit_ms: Option<u64>,
    /// From oxi's first stop signal until no process of the group was left.
    pub stop_to_gone_ms: Option<u64>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub lines_truncated: u64,
    /// Pipes were still held open (by grandchildren) after the drain window; reading stopped.
    pub pipes_abandoned: bool,
}

enum Chunk {
    Data(Stream, Vec<u8>),
    Eof(Stream),
}

/// Splits a byte stream into lines with a cap, keeping at most `cap` bytes of any line.
struct LineSplitter {
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl LineSplitter {
    fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap,
            truncated: false,
        }
    }

    /// Feeds bytes; calls `emit(line, truncated)` for each complete line.
    fn feed(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8], bool) -> Control) -> Control {
        while !data.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(pos) => {
                    self.push(&data[..pos]);
                    data = &data[pos + 1..];
                    let control = self.flush(emit);
                    if control != Control::Continue {
                        return control;
                    }
                }
                None => {
                    self.push(data);
                    data = &[];
                }
            }
        }
        Control::Continue
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.buf.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn flush(&mut self, emit: &mut dyn FnMut(&[u8], bool) -> Control) -> Control {
        let mut line: &[u8] = &self.buf;
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let control = emit(line, self.truncated);
        self.buf.clear();
        if self.buf.capacity() > CHUNK * 2 {
            self.buf.shrink_to(CHUNK);
        }
        self.truncated = false;
        control
    }

    fn finish(&mut self, emit: &mut dyn FnMut(&[u8], bool) -> Control) -> Control {
        if self.buf.is_empty() && !self.truncated {
            return Control::Continue;
        }
        self.flush(emit)
    }
}

/// How long a guard is given to end its tree after oxi asked it to, before the group is
/// killed without it.
const BACKSTOP: Duration = Duration::from_secs(2);

/// The started process of a run (the guard, or the worker itself), ended when it is dropped
/// before its end was seen (a caller that stops polling `supervise`).
struct RunProcess {
    pgid: u32,
    guarded: bool,
    done: bool,
}

impl RunProcess {
    /// Ends the run at once: a guard is asked to kill its whole tree (also what left the
    /// group); without one, the group is killed.
    fn kill(&self) {
        if self.guarded {
            if let Ok(raw) = i32::try_from(self.pgid) {
                let _ = nix::sys::signal::kill(Pid::from_raw(raw), Signal::SIGUSR1);
            }
        } else {
            signal_group(self.pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for RunProcess {
    fn drop(&mut self) {
        if !self.done {
            self.kill();
        }
    }
}

fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else { return };
    // ESRCH (already gone) is the common, fine case.
    let _ = killpg(Pid::from_raw(raw), signal);
}

/// True when any process of the group is alive. Zombies (dead, not yet reaped by their parent)
/// do not count: they hold no resources and cannot run.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    if killpg(Pid::from_raw(raw), None).is_err() {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        guard::processes()
            .iter()
            .any(|p| p.pgrp == pgid && !p.zombie)
    }
    #[cfg(not(target_os = "linux"))]
    true
}

/// Ends a whole process group: SIGTERM, up to `grace`, then SIGKILL. Used by the reaper and
/// `oxi cancel`. When the group is led by a run's guard, the guard is asked to end its whole
/// tree first (also what left the group), and the group is killed after at most
/// `BACKSTOP` more.
pub async fn terminate_group(pgid: u32, grace: Duration) {
    signal_group(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && group_alive(pgid) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if group_alive(pgid) && guard::leads(pgid) {
        let guard = RunProcess {
            pgid,
            guarded: true,
            done: true,
        };
        guard.kill();
        let backstop = Instant::now() + BACKSTOP;
        while Instant::now() < backstop && group_alive(pgid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    signal_group(pgid, Signal::SIGKILL);
}

/// The parent-death signal only covers a parent that is alive when it is set: a supervisor
/// killed between fork and `prctl` would leave a worker nobody recorded and nobody will end (the
/// chaos harness found one, still spending, after a SIGKILL mid-spawn). So the child checks that
/// it was not already handed to another parent, and refuses to exec if it was.
#[cfg(target_os = "linux")]
fn still_supervised(supervisor: Pid, parent: Pid) -> std::io::Result<()> {
    if parent == supervisor {
        Ok(())
    } else {
        // A raw errno: allocating here, between fork and exec, could deadlock.
        Err(std::io::Error::from(nix::errno::Errno::ESRCH))
    }
}

/// Sets a parent-death signal on the child of `command` (it gets `signal` when the process
/// that started it dies, even by SIGKILL) and makes it refuse to exec if it was already handed
/// to another parent before the signal was armed (see [`still_supervised`]).
#[cfg(target_os = "linux")]
pub(crate) fn die_with_parent(command: &mut std::process::Command, signal: Signal) {
    use std::os::unix::process::CommandExt;
    let supervisor = nix::unistd::getpid();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2) and
    // getppid(2), which are async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(signal).map_err(std::io::Error::from)?;
            still_supervised(supervisor, nix::unistd::getppid())
        });
    }
}

/// The program of `argv` as the worker's PATH and cwd resolve it: with a guard, oxi starts the
/// guard, not the worker, so a missing binary is reported here, as the spawn itself would.
fn resolve_program(spawn: &Spawn, program: &str) -> Result<PathBuf, ProcessError> {
    // As a direct spawn would: the worker's PATH, else oxi's own.
    let path = spawn
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| std::ffi::OsString::from(v))
        .or_else(|| std::env::var_os("PATH"));
    which::which_in(program, path, &spawn.cwd).map_err(|_| ProcessError::Spawn {
        program: program.to_owned(),
        source: std::io::Error::from(nix::errno::Errno::ENOENT),
    })
}

/// The command that starts `spawn`: the guard running the worker, or the worker itself. Both
/// get the worker's cwd, environment, null stdin and oxi's pipes, their own process group
/// (led by the guard when there is one), and a parent-death signal.
fn build_command(spawn: &Spawn) -> Result<tokio::process::Command, ProcessError> {
    let (program, args) = spawn.argv.split_first().ok_or(ProcessError::EmptyArgv)?;
    let (mut std_command, death_signal) = match &spawn.guard {
        Some(oxi) => {
            let resolved = resolve_program(spawn, program)?;
            let mut command = std::process::Command::new(oxi);
            // Named so in `ps`: `oxi __guard <oxi-pid> <program> <argv…>`.
            std::os::unix::process::CommandExt::arg0(&mut command, "oxi");
            command.args(guard::args(std::process::id(), &resolved, &spawn.argv));
            // The guard handles SIGTERM: it ends the whole tree when its parent is gone.
            (command, Signal::SIGTERM)
        }
        None => {
            let mut command = std::process::Command::new(program);
            command.args(args);
            (command, Signal::SIGKILL)
        }
    };
    #[cfg(target_os = "linux")]
    die_with_parent(&mut std_command, death_signal);
    #[cfg(not(target_os = "linux"))]
    let _ = death_signal;
    std_command
        .current_dir(&spawn.cwd)
        .env_clear()
        .envs(spawn.env.iter().map(|(k, v)| (k, v)));
    if spawn.guard.is_some() {
        std_command.envs(guard::own_env(&spawn.env));
    }
    std_command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own group, so a deadline can end the worker and everything it started.
    std::os::unix::process::CommandExt::process_group(&mut std_command, 0);
    // No `kill_on_drop`: it would SIGKILL the guard alone, before it could end its tree.
    // `RunProcess` ends the run if `supervise` is dropped.
    // The ruleset was built before the fork; the child only applies it, after the hooks above,
    // so the guard and everything it starts are confined.
    if let Some(confinement) = &spawn.confine {
        confinement.apply(&mut std_command);
    }
    Ok(tokio::process::Command::from(std_command))
}

async fn read_pipe<R: tokio::io::AsyncRead + Unpin>(
    mut pipe: R,
    stream: Stream,
    tx: mpsc::Sender<Chunk>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send(Chunk::Data(stream, buf[..n].to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = tx.send(Chunk::Eof(stream)).await;
}

/// Runs the process to its end under `limits`, feeding `sink`. Resolves when the process has
/// exited and its group has been killed, and pipes are drained or abandoned.
pub async fn supervise(
    spawn: &Spawn,
    limits: &Limits,
    sink: &mut (dyn LineSink + Send),
    mut shutdown: watch::Receiver<bool>,
) -> Result<Finished, ProcessError> {
    let Started {
        mut child,
        mut run,
        started,
    } = start(spawn, sink).await?;
    let pid = run.pgid;
    let (mut rx, readers) = read_pipes(&mut child);
    let mut pipes = Pipes {
        stdout: LineSplitter::new(limits.line_cap),
        stderr: LineSplitter::new(limits.line_cap),
        open: readers.len(),
    };
    let mut finished = Finished::started(pid);
    let wall_deadline = tokio::time::Instant::now() + limits.wall;
    let mut last_output = tokio::time::Instant::now();
    let mut stop_at: Option<tokio::time::Instant> = None;
    let mut killed = false;
    let mut backstop_done = false;
    let mut persist_at: Option<tokio::time::Instant> = None;
    let mut exit_status: Option<std::process::ExitStatus> = None;
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);

    // One loop over the run's whole life, not a function per phase: its deadlines (wall,
    // stall, grace, backstop, persist, drain) arm and disarm one another through the shared
    // state above, and one `select!` over all of them is what keeps any single one from being
    // missed while another waits. Each arm is a few lines; what they share is the point.
    loop {
        if exit_status.is_some() && pipes.open == 0 {
            break;
        }
        let stall_deadline = last_output + limits.stall;
        let kill_deadline = stop_at.map(|t| t + limits.grace).filter(|_| !killed);
        let backstop_deadline = stop_at
            .map(|t| t + limits.grace + BACKSTOP)
            .filter(|_| run.guarded && !backstop_done);
        let mut request_stop: Option<StopReason> = None;
        tokio::select! {
            chunk = rx.recv(), if pipes.open > 0 => {
                if let Some(Chunk::Data(..)) = &chunk {
                    last_output = tokio::time::Instant::now();
                    persist_at = persist_at.or(Some(last_output + PERSIST_EVERY));
                    sink.heartbeat();
                }
                request_stop = pipes.take(chunk, &mut finished, sink);
            }
            status = child.wait(), if exit_status.is_none() => {
                run.done = true;
                exit_status = Some(status.unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(0)));
                finished.stop_to_exit_ms = stop_at.map(|t| t.elapsed().as_millis() as u64);
                // Anything still in the group is an orphan of this run.
                signal_group(pid, Signal::SIGKILL);
                drain_deadline = Some(tokio::time::Instant::now() + limits.drain);
            }
            _ = tokio::time::sleep_until(wall_deadline), if stop_at.is_none() && exit_status.is_none() => {
                request_stop = Some(StopReason::WallClock);
            }
            _ = tokio::time::sleep_until(stall_deadline), if stop_at.is_none() && exit_status.is_none() => {
                request_stop = Some(StopReason::Stalled);
            }
            _ = tokio::time::sleep_until(kill_deadline.unwrap_or(far)), if kill_deadline.is_some() && exit_status.is_none() => {
                run.kill();
                killed = true;
            }
            _ = tokio::time::sleep_until(backstop_deadline.unwrap_or(far)), if backstop_deadline.is_some() && exit_status.is_none() => {
                // The guard did not end its tree in time: the group, without it.
                signal_group(pid, Signal::SIGKILL);
                backstop_done = true;
            }
            _ = tokio::time::sleep_until(persist_at.unwrap_or(far)), if persist_at.is_some() => {
                sink.persist();
                persist_at = None;
            }
            _ = tokio::time::sleep_until(drain_deadline.unwrap_or(far)), if drain_deadline.is_some() && pipes.open > 0 => {
                finished.pipes_abandoned = true;
                break;
            }
            changed = shutdown.changed(), if stop_at.is_none() && exit_status.is_none() => {
                if changed.is_err() || *shutdown.borrow() {
                    request_stop = Some(StopReason::Shutdown);
                }
            }
        }
        if let Some(reason) = request_stop
            && stop_at.is_none()
            && exit_status.is_none()
        {
            finished.stop = Some(reason);
            stop_at = Some(tokio::time::Instant::now());
            signal_group(pid, Signal::SIGTERM);
        }
    }
    for reader in readers {
        reader.abort();
    }
    Ok(settle(finished, exit_status, stop_at, started).await)
}

/// A spawned process whose pid the sink has recorded.
struct Started {
    child: tokio::process::Child,
    run: RunProcess,
    started: Instant,
}

/// Spawns the process and hands its pid to the sink; when the sink refuses it, the run is
/// ended and collected before the error is returned.
async fn start(spawn: &Spawn, sink: &mut (dyn LineSink + Send)) -> Result<Started, ProcessError> {
    let program = spawn.argv.first().cloned().unwrap_or_default();
    let mut child = build_command(spawn)?
        .spawn()
        .map_err(|source| ProcessError::Spawn { program, source })?;
    let pid = child.id().unwrap_or(0);
    let mut run = RunProcess {
        pgid: pid,
        guarded: spawn.guard.is_some(),
        done: false,
    };
    let started = Instant::now();
    if let Err(e) = sink.spawned(pid) {
        run.kill();
        if tokio::time::timeout(BACKSTOP, child.wait()).await.is_err() {
            signal_group(pid, Signal::SIGKILL);
            let _ = child.wait().await;
        }
        // Collected: its pid may be reused from here on, so it must not be signalled again.
        run.done = true;
        return Err(ProcessError::Record(e));
    }
    Ok(Started {
        child,
        run,
        started,
    })
}

/// Starts a reader per pipe, both feeding one channel; the channel closes when both end.
fn read_pipes(
    child: &mut tokio::process::Child,
) -> (mpsc::Receiver<Chunk>, Vec<tokio::task::JoinHandle<()>>) {
    // Small bounded channel: a slow sink back-pressures the pipes, never grows memory.
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(read_pipe(out, Stream::Stdout, tx.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_pipe(err, Stream::Stderr, tx.clone())));
    }
    drop(tx);
    (rx, readers)
}

/// The worker's two pipes as lines, and how many are still open.
struct Pipes {
    stdout: LineSplitter,
    stderr: LineSplitter,
    open: usize,
}

impl Pipes {
    /// Feeds a chunk (or a pipe's end) to the sink line by line, counting bytes and cut lines
    /// in `finished`; returns the stop the sink asked for, if any.
    fn take(
        &mut self,
        chunk: Option<Chunk>,
        finished: &mut Finished,
        sink: &mut (dyn LineSink + Send),
    ) -> Option<StopReason> {
        let truncated = &mut finished.lines_truncated;
        let mut emit = |stream: Stream, line: &[u8], cut: bool| {
            if cut {
                *truncated += 1;
            }
            sink.line(stream, line, cut)
        };
        let control = match chunk {
            Some(Chunk::Data(stream, data)) => {
                let (splitter, counter) = match stream {
                    Stream::Stdout => (&mut self.stdout, &mut finished.stdout_bytes),
                    Stream::Stderr => (&mut self.stderr, &mut finished.stderr_bytes),
                };
                *counter += data.len() as u64;
                splitter.feed(&data, &mut |line, cut| emit(stream, line, cut))
            }
            Some(Chunk::Eof(stream)) => {
                self.open -= 1;
                let splitter = match stream {
                    Stream::Stdout => &mut self.stdout,
                    Stream::Stderr => &mut self.stderr,
                };
                splitter.finish(&mut |line, cut| emit(stream, line, cut))
            }
            None => {
                self.open = 0;
                Control::Continue
            }
        };
        match control {
            Control::Stop(reason) => Some(reason),
            Control::Continue => None,
        }
    }
}

impl Finished {
    /// A run that has just started: nothing read, no ending yet.
    fn started(pid: u32) -> Self {
        Self {
            pid,
            exit_code: None,
            signal: None,
            stop: None,
            elapsed_ms: 0,
            stop_to_exit_ms: None,
            stop_to_gone_ms: None,
            stdout_bytes: 0,
            stderr_bytes: 0,
            lines_truncated: 0,
            pipes_abandoned: false,
        }
    }
}

/// After the loop: waits until no process of the run is left, then fills in how it ended.
async fn settle(
    mut finished: Finished,
    exit_status: Option<std::process::ExitStatus>,
    stop_at: Option<tokio::time::Instant>,
    started: Instant,
) -> Finished {
    let pid = finished.pid;
    // The group was sent SIGKILL when the worker exited; give the kernel a moment to finish it
    // so callers (and the reaper's invariant) see no live process of the run.
    let gone_by = Instant::now() + Duration::from_millis(500);
    while group_alive(pid) && Instant::now() < gone_by {
        signal_group(pid, Signal::SIGKILL);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    finished.stop_to_gone_ms = stop_at.map(|t| t.elapsed().as_millis() as u64);
    let status = exit_status.unwrap_or_else(|| std::os::unix::process::ExitStatusExt::from_raw(0));
    finished.exit_code = status.code();
    finished.signal = std::os::unix::process::ExitStatusExt::signal(&status);
    finished.elapsed_ms = started.elapsed().as_millis() as u64;
    finished
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_worker_whose_supervisor_is_already_gone_refuses_to_start() {
        let me = nix::unistd::getpid();
        assert!(still_supervised(me, me).is_ok());
        // Reparented to init (or a subreaper): the parent-death signal would never fire.
        let err = still_supervised(me, Pid::from_raw(1)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::errno::Errno::ESRCH as i32));
    }

    #[test]
    fn splitter_caps_lines_and_marks_them() {
        let mut s = LineSplitter::new(4);
        let mut lines = Vec::new();
        let mut emit = |l: &[u8], t: bool| {
            lines.push((String::from_utf8_lossy(l).into_owned(), t));
            Control::Continue
        };
        s.feed(b"ab\r\nabcdefgh\nxy", &mut emit);
        s.feed(b"z\n", &mut emit);
        s.feed(b"tail", &mut emit);
        s.finish(&mut emit);
        assert_eq!(
            lines,
            vec![
                ("ab".to_owned(), false),
                ("abcd".to_owned(), true),
                ("xyz".to_owned(), false),
                ("tail".to_owned(), false),
            ]
        );
    }
}
