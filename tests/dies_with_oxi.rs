//! Nothing outlives oxi, nothing is lost when it dies: `kill -9` of an `oxi tick` mid-run ends
//! the worker's whole tree (also a grandchild that left the process group with `setsid`)
//! before any next tick, and the next tick's reaper keeps what the run had: its artifacts as
//! far as it printed, and a cost no lower than what it may have spent.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oxi::ledger::{Ledger, RunRow};
use oxi_testkit::mock_model::{MockModelServer, Script, Step};

use crate::support::live::{self, Cli, Scratch};
use crate::support::{OxiToml, Sandbox, Worker, git};

const OXI: &str = env!("CARGO_BIN_EXE_oxi");

/// A repository with one task and a `fake` executor of `kind` running `scenario`; one attempt,
/// so a reaped task fails instead of being dispatched again by the tick that reaps it.
fn repo(kind: &str, model: &str, scenario: &str) -> Sandbox {
    repo_env(kind, model, scenario, &[])
}

/// `repo`, with `extra_env` (name, value) pairs in the worker's `set_env`.
fn repo_env(kind: &str, model: &str, scenario: &str, extra_env: &[(&str, &str)]) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write(
        "roadmap.md",
        "# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi.\n",
    );
    s.write(".gitignore", ".oxi/\n");
    let fake = match kind {
        "codex" => Worker::fake_codex("fake"),
        _ => Worker::fake("fake"),
    }
    .model(model)
    .scenario(scenario)
    .sleep_ms(60000);
    let fake = extra_env.iter().fold(fake, |w, (k, v)| w.set_env(k, v));
    s.config(
        &OxiToml::new()
            .project()
            .raw("[caps]\nmax_attempts = 1\nstall_timeout = \"5m\"\nkill_grace = \"500ms\"\n")
            .worker(fake)
            .routing(&["fake"], &[]),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

fn spawn_tick(s: &Sandbox) -> Child {
    Command::new(OXI)
        .args(["tick", "--format", "json"])
        .current_dir(s.path())
        .env_remove("OXI_CONFIG")
        .env_remove("OXI_RUN_MODE")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn kill_9(child: &mut Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
}

/// Polls `what` every 20 ms for up to `limit`; true as soon as it holds.
fn poll(limit: Duration, mut what: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if what() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Live `oxi-fake-worker` processes whose working directory is under `root` (the worker and
/// everything it started), as `pid (state, pgid)`.
fn fake_workers_under(root: &Path) -> Vec<String> {
    processes_under(root, Some("oxi-fake-worker"))
}

/// Live processes whose working directory is under `root` and whose executable's path
/// contains `exe` (any, when `None`), as `pid (state, pgid)`.
fn processes_under(root: &Path, exe: Option<&str>) -> Vec<String> {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let path = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if exe.is_some_and(|exe| !path.to_string_lossy().contains(exe)) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        if matches!(fields[0], "Z" | "X") {
            continue;
        }
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        if cwd.starts_with(&root) {
            found.push(format!(
                "{pid} ({}, {}, group {})",
                path.display(),
                fields[0],
                fields[2]
            ));
        }
    }
    found
}

/// SIGKILLs what `processes_under` listed, so nothing is left for later tests to trip over.
fn kill_all(listed: &[String]) {
    for p in listed {
        let pid = p.split(' ').next().unwrap().parse::<i32>().unwrap();
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn ledger(s: &Sandbox) -> Ledger {
    Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap()
}

fn the_run(s: &Sandbox) -> RunRow {
    let runs = ledger(s).read().runs_for_task("T0-1").unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    runs.into_iter().next().unwrap()
}

#[test]
fn kill_9_of_a_tick_ends_the_workers_whole_tree_before_any_next_tick() {
    let s = repo("claude", "claude-sonnet-4-5", "hang-escape");
    let mut tick = spawn_tick(&s);
    // The worker, a grandchild in its group and one that left it with setsid.
    let started = poll(Duration::from_secs(30), || {
        fake_workers_under(s.path()).len() >= 3
    });
    let family = fake_workers_under(s.path());
    if !started {
        kill_9(&mut tick);
        panic!("the worker's family never started: {family:?}");
    }
    kill_9(&mut tick);
    let gone = poll(Duration::from_secs(10), || {
        fake_workers_under(s.path()).is_empty()
    });
    let left = fake_workers_under(s.path());
    kill_all(&left);
    assert!(
        gone,
        "10 s after kill -9 of oxi, of {family:?} these still live: {left:?}"
    );
}

#[test]
fn oxi_cancel_ends_a_tree_that_ignores_sigterm_also_what_left_the_group() {
    // Everything ignores SIGTERM: after the grace only a kill reaches them, and a kill of the
    // group would miss the grandchild in its own session.
    let s = repo_env(
        "claude",
        "claude-sonnet-4-5",
        "hang-escape",
        &[("OXI_FAKE_IGNORE_TERM", "1")],
    );
    let mut tick = spawn_tick(&s);
    let started = poll(Duration::from_secs(30), || {
        fake_workers_under(s.path()).len() >= 3
    });
    let family = fake_workers_under(s.path());
    if !started {
        kill_9(&mut tick);
        panic!("the worker's family never started: {family:?}");
    }
    s.oxi(&["cancel", "T0-1"]).ok();
    let gone = poll(Duration::from_secs(10), || {
        fake_workers_under(s.path()).is_empty()
    });
    let left = fake_workers_under(s.path());
    kill_all(&left);
    kill_9(&mut tick);
    assert!(
        gone,
        "10 s after oxi cancel, of {family:?} these still live: {left:?}"
    );
}

/// Waits until `file` of the live run's directory holds at least `lines` lines.
fn wait_for_lines(s: &Sandbox, file: &str, lines: usize) -> Option<PathBuf> {
    let mut dir = None;
    // A liveness bound, not a timing target: the worker prints a line every 250 ms once it
    // runs, but on a machine loaded 10× over its cores the tick took over 30 s to start it.
    poll(Duration::from_secs(120), || {
        let Ok(ledger) = Ledger::open_existing(&s.file(".oxi/ledger.db")) else {
            return false;
        };
        let Some(run) = ledger.read().running_runs().unwrap().into_iter().next() else {
            return false;
        };
        let run_dir = PathBuf::from(run.run_dir.unwrap());
        let n = std::fs::read_to_string(run_dir.join(file))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        dir = Some(run_dir);
        n >= lines
    })
    .then(|| dir.unwrap())
}

/// Kills `oxi tick` once the run has printed `lines` lines, then reaps it with a second tick.
/// Returns the run's directory and its ledger row.
fn reap_mid_run(s: &Sandbox, lines: usize) -> (PathBuf, RunRow) {
    let mut tick = spawn_tick(s);
    let dir = wait_for_lines(s, "raw.jsonl", lines);
    kill_9(&mut tick);
    let dir = dir.unwrap_or_else(|| {
        panic!("raw.jsonl of the live run never held {lines} lines while the worker printed")
    });
    s.oxi(&["tick"]);
    let run = the_run(s);
    assert_eq!(run.classification.as_deref(), Some("reaped"), "{run:#?}");
    (dir, run)
}

#[test]
fn a_reaped_run_keeps_its_artifacts_and_is_charged_what_the_model_reported() {
    // Claude's stream reports usage per message: 10 input and 1 output token each, 45 µ$ at
    // Sonnet's $3 / $15 per million.
    let s = repo("claude", "claude-sonnet-4-5", "slow-edit:60000");
    let (dir, run) = reap_mid_run(&s, 4);
    let raw = std::fs::read_to_string(dir.join("raw.jsonl")).unwrap();
    let messages = raw.lines().filter(|l| l.contains("msg_think_")).count() as i64;
    assert!(messages >= 3, "{raw}");
    for file in ["events.jsonl", "transcript.md", "stderr.log", "prompt.md"] {
        let path = dir.join(file);
        if file != "stderr.log" {
            assert!(
                std::fs::metadata(&path).unwrap().len() > 0,
                "{} is empty",
                path.display()
            );
        }
    }
    assert!(
        run.cost_microusd >= messages * 45,
        "charged {} µ$ for {messages} reported messages",
        run.cost_microusd
    );
    assert!(run.input_tokens >= messages as u64 * 10, "{run:#?}");
    let transcript = std::fs::read_to_string(dir.join("transcript.md")).unwrap();
    assert!(transcript.contains("thinking"), "{transcript}");
    assert!(transcript.contains("■ reaped · $"), "{transcript}");
    let spend = ledger(&s).read().spend_for_run(&run.id).unwrap().unwrap();
    assert!(spend.actual_microusd >= run.cost_microusd, "{spend:?}");
}

#[test]
fn a_reaped_run_whose_cost_is_unknown_is_charged_its_reservation() {
    // Codex reports usage only when a turn completes: mid-turn nothing is known.
    let s = repo("codex", "gpt-5.5", "slow-edit:60000");
    let (dir, run) = reap_mid_run(&s, 4);
    assert!(std::fs::metadata(dir.join("events.jsonl")).unwrap().len() > 0);
    let spend = ledger(&s).read().spend_for_run(&run.id).unwrap().unwrap();
    assert!(spend.reserved_microusd > 0, "{spend:?}");
    assert!(
        run.cost_microusd >= spend.reserved_microusd,
        "charged {} µ$ with {} µ$ reserved",
        run.cost_microusd,
        spend.reserved_microusd
    );
    assert_eq!(spend.actual_microusd, run.cost_microusd, "{spend:?}");
}

/// The live `codex` (a node wrapper that starts the native binary) waiting on a model that
/// never answers: after `kill -9` of `oxi run`, neither process may live on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_oxi_ends_the_live_codex_waiting_on_a_stalled_model() {
    let Some(bin) = live::require(Cli::Codex) else {
        return;
    };
    let scratch = Scratch::new();
    let server = MockModelServer::start(Script::new().fallback(Step::Hang))
        .await
        .unwrap();
    OxiToml::new()
        .worker(live::worker(Cli::Codex, "live", &bin, &server))
        .routing(&["live"], &[])
        .raw("[caps]\nstall_timeout = \"5m\"\n")
        .write_in(&scratch.repo);
    let mut oxi = Command::new(OXI)
        .args(["run", "--format", "json", "--", "create hello.txt"])
        .current_dir(&scratch.repo)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &scratch.home)
        .env("LANG", "C.UTF-8")
        .env("NO_COLOR", "1")
        .env("MOCK_API_KEY", "sk-test-live-key")
        .env("CODEX_HOME", &scratch.codex_home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let root = scratch.repo.parent().unwrap().to_owned();
    // The native binary has sent its request and waits for the answer.
    let waiting = poll(Duration::from_secs(30), || {
        !server.model_requests().is_empty()
    });
    let family = processes_under(&root, None);
    kill_9(&mut oxi);
    assert!(waiting, "codex never called the model: {family:?}");
    let gone = poll(Duration::from_secs(10), || {
        processes_under(&root, None).is_empty()
    });
    let left = processes_under(&root, None);
    kill_all(&left);
    assert!(
        gone,
        "10 s after kill -9 of oxi, of {family:?} these still live: {left:?}"
    );
    server.shutdown().await.unwrap();
}

/// `process::supervise` with the `oxi` binary as the guard, as the runner uses it.
fn supervise_guarded(script: &str, stall_ms: u64) -> oxi::process::Finished {
    use oxi::process::{Control, Limits, LineSink, Spawn, Stream};
    struct Quiet;
    impl LineSink for Quiet {
        fn spawned(&mut self, _pid: u32) -> Result<(), String> {
            Ok(())
        }
        fn line(&mut self, _stream: Stream, _line: &[u8], _truncated: bool) -> Control {
            Control::Continue
        }
    }
    let spawn = Spawn {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        cwd: std::env::temp_dir(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        guard: Some(PathBuf::from(OXI)),
        confine: None,
    };
    let limits = Limits {
        wall: Duration::from_secs(30),
        stall: Duration::from_millis(stall_ms),
        grace: Duration::from_millis(300),
        line_cap: 1024,
        drain: Duration::from_millis(300),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    rt.block_on(oxi::process::supervise(&spawn, &limits, &mut Quiet, rx))
        .unwrap()
}

#[test]
fn the_guard_passes_on_the_workers_exit_code_and_signal() {
    let exited = supervise_guarded("exit 3", 10_000);
    assert_eq!((exited.exit_code, exited.signal), (Some(3), None));
    let killed = supervise_guarded("kill -TERM $$", 10_000);
    assert_eq!((killed.exit_code, killed.signal), (None, Some(15)));
}

#[test]
fn a_stalled_worker_that_ignores_sigterm_is_ended_with_what_left_its_group() {
    // The worker ignores SIGTERM and starts a grandchild in a new session that ignores it too:
    // the group's SIGTERM reaches neither, the guard ends both after the grace.
    let marker = tempfile::tempdir().unwrap();
    let pid_file = marker.path().join("escapee.pid");
    let script = format!(
        "trap '' TERM; setsid sh -c 'trap \"\" TERM; echo $$ > {f}.tmp; mv {f}.tmp {f}; while :; do sleep 0.05; done' & \
         while [ ! -f {f} ]; do sleep 0.01; done; echo started; while :; do sleep 0.05; done",
        f = pid_file.display()
    );
    let finished = supervise_guarded(&script, 500);
    assert_eq!(finished.stop, Some(oxi::process::StopReason::Stalled));
    assert_eq!(finished.signal, Some(9), "{finished:?}");
    let escapee: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = poll(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{escapee}/stat"))
            .map_or(true, |stat| stat.contains(") Z "))
    });
    if !gone {
        let _ = kill(Pid::from_raw(escapee), Signal::SIGKILL);
    }
    assert!(gone, "the grandchild in its own session outlived the run");
}
