//! Process supervision with exact faults: stalls, a worker that ignores SIGTERM, a grandchild
//! that holds the pipes, a huge line without a newline, and the cleared environment.
//! `/bin/sh` here is only the fake worker; oxi itself never runs a shell.

use std::time::Duration;

use oxi::process::{self, Control, Limits, LineSink, Spawn, StopReason, Stream};

#[derive(Default)]
struct Collect {
    pid: u32,
    lines: Vec<(Stream, String, bool)>,
}

impl LineSink for Collect {
    fn spawned(&mut self, pid: u32) -> Result<(), String> {
        self.pid = pid;
        Ok(())
    }
    fn line(&mut self, stream: Stream, line: &[u8], truncated: bool) -> Control {
        let text = String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned();
        self.lines.push((stream, text, truncated));
        Control::Continue
    }
}

fn sh(script: &str) -> Spawn {
    Spawn {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        cwd: std::env::temp_dir(),
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("ALLOWED".into(), "yes".into()),
        ],
        guard: None,
        confine: None,
    }
}

fn limits(wall_ms: u64, stall_ms: u64, grace_ms: u64) -> Limits {
    Limits {
        wall: Duration::from_millis(wall_ms),
        stall: Duration::from_millis(stall_ms),
        grace: Duration::from_millis(grace_ms),
        line_cap: 1024,
        drain: Duration::from_millis(300),
    }
}

fn run(spawn: Spawn, limits: Limits) -> (process::Finished, Collect) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let mut sink = Collect::default();
    let finished = rt
        .block_on(async { process::supervise(&spawn, &limits, &mut sink, rx).await })
        .unwrap();
    (finished, sink)
}

#[test]
fn environment_is_cleared_to_the_allow_list_and_stdin_is_null() {
    // SAFETY of the test: HOME and friends exist in the test's own environment.
    let (finished, sink) = run(
        sh("echo HOME=${HOME:-unset} ALLOWED=$ALLOWED; read x && echo read:$x || echo stdin-eof"),
        limits(10_000, 10_000, 500),
    );
    assert_eq!(finished.exit_code, Some(0));
    let out: Vec<&str> = sink.lines.iter().map(|(_, l, _)| l.as_str()).collect();
    assert_eq!(out, ["HOME=unset ALLOWED=yes", "stdin-eof"]);
}

#[test]
fn a_stalled_worker_and_its_children_are_ended() {
    let (finished, sink) = run(
        sh("sleep 30 & echo started; sleep 30"),
        limits(20_000, 300, 300),
    );
    assert_eq!(finished.stop, Some(StopReason::Stalled));
    assert!(
        finished.elapsed_ms < 5_000,
        "took {} ms",
        finished.elapsed_ms
    );
    assert!(
        !process::group_alive(sink.pid),
        "no process of the group is left"
    );
}

#[test]
fn sigterm_ignored_means_sigkill_after_the_grace_period() {
    let (finished, sink) = run(
        sh("trap '' TERM; echo armed; while :; do sleep 0.05; done"),
        limits(400, 10_000, 300),
    );
    assert_eq!(finished.stop, Some(StopReason::WallClock));
    assert_eq!(finished.signal, Some(9), "killed by SIGKILL");
    let stop_to_exit = finished.stop_to_exit_ms.unwrap();
    assert!(
        stop_to_exit >= 300,
        "waited the grace period ({stop_to_exit} ms)"
    );
    assert!(!process::group_alive(sink.pid));
}

#[test]
fn a_grandchild_holding_the_pipes_does_not_hang_the_supervisor() {
    // The grandchild leaves the worker's process group, so only the drain window ends the wait.
    // It signals through a marker file once it has left, so the test does not race setsid.
    let marker = tempfile::tempdir().unwrap();
    let flag = marker.path().join("detached");
    let script = format!(
        "setsid sh -c 'touch {f}; exec sleep 5' & while [ ! -f {f} ]; do sleep 0.01; done; echo bye",
        f = flag.display()
    );
    let (finished, _sink) = run(sh(&script), limits(10_000, 10_000, 200));
    assert_eq!(finished.exit_code, Some(0));
    assert!(finished.pipes_abandoned);
    assert!(
        finished.elapsed_ms < 3_000,
        "took {} ms",
        finished.elapsed_ms
    );
}

#[test]
fn a_huge_line_without_newline_is_capped_and_marked() {
    let (finished, sink) = run(
        sh("head -c 8388608 /dev/zero | tr '\\0' x; echo; echo after"),
        limits(20_000, 10_000, 200),
    );
    assert_eq!(finished.exit_code, Some(0));
    assert_eq!(finished.stdout_bytes, 8 * 1024 * 1024 + 1 + 6);
    assert_eq!(finished.lines_truncated, 1);
    let stdout: Vec<(&str, bool)> = sink
        .lines
        .iter()
        .filter(|(s, _, _)| *s == Stream::Stdout)
        .map(|(_, l, t)| (l.as_str(), *t))
        .collect();
    assert_eq!(stdout.len(), 2);
    assert!(stdout[0].1);
    assert_eq!(stdout[1], ("after", false));
}

#[test]
fn a_missing_binary_is_a_spawn_error() {
    let spawn = Spawn {
        argv: vec!["/nonexistent/agent-cli".into()],
        cwd: std::env::temp_dir(),
        env: vec![],
        guard: None,
        confine: None,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let mut sink = Collect::default();
    let err = rt
        .block_on(process::supervise(
            &spawn,
            &limits(1000, 1000, 100),
            &mut sink,
            rx,
        ))
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/agent-cli"), "{err}");
}
